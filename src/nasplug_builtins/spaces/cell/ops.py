"""Candidate operations of the DARTS cell space.

``OPS`` maps an op name to a constructor with one signature, ``(C, stride, affine) -> nn.Module``:
``C`` channels in and out, ``stride`` 1 or 2 (2 halves height and width, rounding up), ``affine``
whether BatchNorm learns a scale and shift (False in the supernet, True in discrete networks).
A third party adds an op by adding a constructor to ``OPS``.

The ops are DARTS's, built from torch's own layers. The cell space runs them through
:func:`nasplug_builtins.spaces.cell.fast.accelerated` (its ``impl="fast"``, the default, and its
discrete networks), which computes three of their layers faster with the same parameters,
outputs and gradients: the max pooling (``nn.MaxPool2d``) and the depthwise and dilated
convolutions (``nn.Conv2d``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NONE",
    "NORMALISED_IN_SUPERNET",
    "OPS",
    "DilConv",
    "FactorizedReduce",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "drop_path",
    "has_parameters",
]

OpConstructor = Callable[[int, int, bool], nn.Module]

#: The op meaning "no connection": it contributes nothing, so it is never computed, never
#: derived and never part of a discrete network.
NONE = "none"

OPS: dict[str, OpConstructor] = {
    NONE: lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "skip_connect": lambda c, stride, affine: _skip(c, stride, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}

#: Parameter-free ops followed by a BatchNorm inside the supernet, so that their outputs are on
#: the scale of the convolutions' when mixed (as in DARTS's search network).
NORMALISED_IN_SUPERNET: frozenset[str] = frozenset({"max_pool_3x3", "avg_pool_3x3"})


@functools.cache
def has_parameters(op: str, stride: int) -> bool:
    """Whether ``op`` at ``stride`` holds trainable parameters in a discrete network, found by
    building it: pools never do, ``skip_connect`` only at stride 2 (a :class:`FactorizedReduce`)."""
    return any(True for _ in OPS[op](2, stride, True).parameters())


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape. Kept so that ``OPS`` is complete."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, BatchNorm: the cells' input preprocessing."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise convolution, pointwise convolution, BatchNorm."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in,
                c_in,
                kernel,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=c_in,
                bias=False,
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-free ``DilConv`` blocks, the first carrying the stride."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halves height and width with two strided 1x1 convolutions offset by one pixel.

    Each strided 1x1 convolution runs as a 1x1 convolution of every other pixel: the same
    outputs, and on the CPU it avoids oneDNN's strided 1x1 weight-gradient kernel, which with
    channels_last inputs corrupts memory for some shapes (maps of 48 pixels and more with few
    channels, or odd batches behind a ``torch.cat``) and kills the process.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            # Odd sizes: pad the shifted view so both paths give ceil(size / 2) pixels.
            shifted = F.pad(shifted, (0, w % 2, 0, h % 2))
        halves = [
            F.conv2d(x[:, :, ::2, ::2], self.conv_1.weight),
            F.conv2d(shifted[:, :, ::2, ::2], self.conv_2.weight),
        ]
        return self.bn(torch.cat(halves, dim=1))


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob``, rescaling the others."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep
