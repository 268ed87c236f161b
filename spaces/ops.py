"""Candidate operations of the DARTS cell space.

``OPS`` maps an op name to a constructor with one signature, ``(C, stride, affine) -> nn.Module``:
``C`` channels in and out, ``stride`` 1 or 2 (2 halves height and width, rounding up), ``affine``
whether BatchNorm learns a scale and shift (False in the supernet, True in discrete networks).
A third party adds an op by adding a constructor to ``OPS``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NONE", "NORMALISED_IN_SUPERNET", "OPS", "DilConv", "FactorizedReduce", "MaxPool2d",
           "PolyphaseConv2d", "ReLUConvBN", "SepConv", "Zero", "drop_path"]

OpConstructor = Callable[[int, int, bool], nn.Module]

#: The op meaning "no connection": it contributes nothing, so it is never computed, never
#: derived and never part of a discrete network.
NONE = "none"


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape. Kept so that ``OPS`` is complete."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, BatchNorm: the cells' input preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


def _pair(v: Any) -> tuple[Any, Any]:
    return (v[0], v[1]) if isinstance(v, (tuple, list)) else (v, v)


def _window_starts(width: int, out_size: Sequence[int], geometry: Sequence[Any],
                   device: torch.device) -> tuple[torch.Tensor, torch.dtype]:
    """Per output pixel, the flat index of its pooling window's first pixel (padding counted);
    and the smallest integer type that holds an offset into the window."""
    kernel, stride, padding, dilation = geometry[:4]
    rows = torch.arange(out_size[0], device=device) * stride[0] - padding[0]
    cols = torch.arange(out_size[1], device=device) * stride[1] - padding[1]
    reach = (kernel[0] - 1) * dilation[0] * width + (kernel[1] - 1) * dilation[1]
    dtype = next(t for t in (torch.uint8, torch.int16, torch.int32, torch.int64)
                 if reach <= torch.iinfo(t).max)
    return rows[:, None] * width + cols[None, :], dtype


class _MaxPool(torch.autograd.Function):
    """2-d max pooling that keeps each argmax as its offset in the window, not as an int64 index.

    With a 3x3 window on maps up to 126 pixels wide the offset fits in one byte, an eighth of the
    index; backward adds the window's start back, so the indices it uses are the very same.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, *geometry: Any) -> torch.Tensor:
        y, indices = torch.ops.aten.max_pool2d_with_indices(x, *geometry)
        starts, dtype = _window_starts(x.shape[-1], y.shape[-2:], geometry, x.device)
        offsets = torch.sub(indices, starts, out=torch.empty_like(indices, dtype=dtype))
        ctx.geometry = geometry
        ctx.save_for_backward(x, offsets)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, offsets = ctx.saved_tensors
        starts, _ = _window_starts(x.shape[-1], offsets.shape[-2:], ctx.geometry, x.device)
        indices = torch.add(offsets, starts, out=torch.empty_like(offsets, dtype=torch.int64))
        # Differentiable in ``grad``: a double backward through it works as through nn.MaxPool2d.
        dx = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *ctx.geometry, indices)
        return (dx,) + (None,) * len(ctx.geometry)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that keeps its argmax for backward in one byte instead of eight.

    ``nn.MaxPool2d`` saves int64 indices, twice the bytes of its float32 output; this one saves
    each index's offset in its window (see :class:`_MaxPool`). Outputs and gradients are exactly
    ``nn.MaxPool2d``'s, ties included.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.return_indices or not (x.requires_grad and torch.is_grad_enabled()):
            return super().forward(x)
        return _MaxPool.apply(x, _pair(self.kernel_size), _pair(self.stride),
                              _pair(self.padding), _pair(self.dilation), self.ceil_mode)


class PolyphaseConv2d(nn.Conv2d):
    """A dilated convolution with "same" padding, computed as an undilated one.

    With dilation ``d``, output pixel ``(h, w)`` only reads input pixels congruent to ``(h, w)``
    modulo ``d``; so the input is split into its ``d * d`` polyphase components, stacked along
    the batch, convolved without dilation and interleaved back (at stride ``d`` only the first
    component is read). Parameters, outputs and gradients are those of ``nn.Conv2d``; the point
    is speed: oneDNN's backward of dilated depthwise convolutions on CPU ran 3-10x slower than
    this (batch 64, 16-64 channels).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, groups: int = 1, bias: bool = False) -> None:
        if kernel % 2 == 0 or padding != dilation * (kernel - 1) // 2 or stride not in (1, dilation):
            raise ValueError(f"PolyphaseConv2d needs an odd kernel, padding dilation*(kernel-1)/2 "
                             f"and stride 1 or the dilation; got kernel {kernel}, padding "
                             f"{padding}, stride {stride}, dilation {dilation}")
        super().__init__(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        pad = (self.kernel_size[0] - 1) // 2
        if self.stride[0] == d:
            return F.conv2d(x[:, :, ::d, ::d], self.weight, self.bias, 1, pad, 1, self.groups)
        return self.convolve_phases(*self.phases(x))

    def phases(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``x``'s polyphase components stacked along the batch, and ``x``'s shape.

        Depends on ``x`` and the dilation only, so layers of equal dilation may share it.
        """
        d = self.dilation[0]
        n, c, h, w = x.shape
        ph, pw = -h % d, -w % d
        if ph or pw:
            # Zero rows past the border are what the convolution's own padding would read.
            x = F.pad(x, (0, pw, 0, ph))
        hd, wd = (h + ph) // d, (w + pw) // d
        # Rearranged through NHWC so that channels_last inputs stay channels_last.
        stacked = (x.permute(0, 2, 3, 1).reshape(n, hd, d, wd, d, c).permute(2, 4, 0, 1, 3, 5)
                   .reshape(d * d * n, hd, wd, c).permute(0, 3, 1, 2))
        return stacked, (n, c, h, w)

    def convolve_phases(self, stacked: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The stride-1 output from :meth:`phases`' result: convolve, then interleave back."""
        d = self.dilation[0]
        pad = (self.kernel_size[0] - 1) // 2
        n, _, h, w = shape
        y = F.conv2d(stacked, self.weight, self.bias, 1, pad, 1, self.groups)
        hd, wd, co = y.shape[2], y.shape[3], y.shape[1]
        y = (y.permute(0, 2, 3, 1).reshape(d, d, n, hd, wd, co).permute(2, 3, 0, 4, 1, 5)
             .reshape(n, hd * d, wd * d, co).permute(0, 3, 1, 2))
        return y[:, :, :h, :w] if hd * d != h or wd * d != w else y


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise convolution, pointwise convolution, BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool) -> None:
        conv = PolyphaseConv2d if dilation > 1 else nn.Conv2d
        super().__init__(
            nn.ReLU(inplace=False),
            conv(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation,
                 groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-free ``DilConv`` blocks, the first carrying the stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halves height and width with two strided 1x1 convolutions offset by one pixel."""

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
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


OPS: dict[str, OpConstructor] = {
    NONE: lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1,
                                                           count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}

#: Parameter-free ops followed by a BatchNorm inside the supernet, so that their outputs are on
#: the scale of the convolutions' when mixed (as in DARTS's search network).
NORMALISED_IN_SUPERNET: frozenset[str] = frozenset({"max_pool_3x3", "avg_pool_3x3"})


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob``, rescaling the others."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep
