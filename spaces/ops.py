"""Candidate operations of the DARTS cell space.

``OPS`` maps an op name to a constructor with one signature, ``(C, stride, affine) -> nn.Module``:
``C`` channels in and out, ``stride`` 1 or 2 (2 halves height and width, rounding up), ``affine``
whether BatchNorm learns a scale and shift (False in the supernet, True in discrete networks).
A third party adds an op by adding a constructor to ``OPS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NONE",
    "NORMALISED_IN_SUPERNET",
    "OPS",
    "DepthwiseConv2d",
    "DilConv",
    "FactorizedReduce",
    "MaxPool2d",
    "PolyphaseConv2d",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "drop_path",
]

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


def _pair(v: Any) -> tuple[Any, Any]:
    return (v[0], v[1]) if isinstance(v, (tuple, list)) else (v, v)


def _window_starts(
    width: int, out_size: Sequence[int], geometry: Sequence[Any], device: torch.device
) -> tuple[torch.Tensor, torch.dtype]:
    """Per output pixel, the flat index of its pooling window's first pixel (padding counted);
    and the smallest integer type that holds an offset into the window."""
    kernel, stride, padding, dilation = geometry[:4]
    rows = torch.arange(out_size[0], device=device) * stride[0] - padding[0]
    cols = torch.arange(out_size[1], device=device) * stride[1] - padding[1]
    reach = (kernel[0] - 1) * dilation[0] * width + (kernel[1] - 1) * dilation[1]
    dtype = next(
        t
        for t in (torch.uint8, torch.int16, torch.int32, torch.int64)
        if reach <= torch.iinfo(t).max
    )
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
        return _MaxPool.apply(
            x,
            _pair(self.kernel_size),
            _pair(self.stride),
            _pair(self.padding),
            _pair(self.dilation),
            self.ceil_mode,
        )


def _depthwise_weight_grad(
    grad: torch.Tensor,
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """The weight gradient of a depthwise convolution, from windows of at most 3 kernel columns.

    Each window is a convolution without padding on the columns of the padded input it reads: a
    shape whose weight gradient oneDNN computes with its depthwise kernel (see
    :class:`_DepthwiseConv`).
    """
    kh, kw = kernel
    c, width = x.shape[1], min(3, kw)
    span = (grad.shape[-1] - 1) * stride[1] + width  # padded columns one window reads
    shape_only = x.new_zeros(c, 1, kh, width)  # the weight's values do not enter its gradient
    parts, done = [], 0
    for start in range(0, kw, 3):
        start = min(start, kw - width)  # the last window ends at the kernel's edge
        # Columns start .. start + span - 1 of the padded input (a negative pad crops).
        left = padding[1] - start
        window = F.pad(x, (left, span - left - x.shape[-1], padding[0], padding[0]))
        part = torch.ops.aten.convolution_backward(
            grad,
            window,
            shape_only,
            None,
            stride,
            (0, 0),
            (1, 1),
            False,
            (0, 0),
            c,
            (False, True, False),
        )[1]
        parts.append(part[..., done - start :])
        done = start + width
    return torch.cat(parts, dim=-1)


class _DepthwiseConv(torch.autograd.Function):
    """A depthwise convolution whose weight gradient comes from :func:`_depthwise_weight_grad`.

    oneDNN computes a depthwise weight gradient with its depthwise kernel only when the kernel is
    at most 3 wide and the map at least as large as the kernel; otherwise it falls back to a
    generic one. For a 5x5 kernel on 4x4 maps (the polyphase components of an 8x8 map in
    ``dil_conv_5x5``) that made a forward and backward 2.5-4.7x slower than with the windows
    (``benchmarks/test_depthwise.py``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> torch.Tensor:
        ctx.geometry = (stride, padding)
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding = ctx.geometry
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                None,
                stride,
                padding,
                (1, 1),
                False,
                (0, 0),
                weight.shape[0],
                (True, False, False),
            )[0]
        if ctx.needs_input_grad[1]:
            dw = _depthwise_weight_grad(grad, x, tuple(weight.shape[-2:]), stride, padding)
        return dx, dw, None, None


def _conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Any,
    padding: Any,
    groups: int,
) -> torch.Tensor:
    """``F.conv2d`` without dilation; a depthwise one on a CPU map smaller than its kernel takes
    its weight gradient from :class:`_DepthwiseConv`."""
    if (
        bias is None
        and groups == x.shape[1] == weight.shape[0]
        and weight.shape[1] == 1
        and x.device.type == "cpu"
        and weight.requires_grad
        and torch.is_grad_enabled()
        and not isinstance(padding, str)
        and (x.shape[-2] < weight.shape[-2] or x.shape[-1] < weight.shape[-1])
    ):
        return _DepthwiseConv.apply(x, weight, _pair(stride), _pair(padding))
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` for depthwise convolutions, with a faster weight gradient on small maps
    (see :class:`_DepthwiseConv`). Parameters, outputs and gradients are ``nn.Conv2d``'s."""

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if self.padding_mode != "zeros" or self.dilation != (1, 1):
            return super()._conv_forward(x, weight, bias)
        return _conv2d(x, weight, bias, self.stride, self.padding, self.groups)


class PolyphaseConv2d(nn.Conv2d):
    """A dilated convolution with "same" padding, computed as an undilated one.

    With dilation ``d``, output pixel ``(h, w)`` only reads input pixels congruent to ``(h, w)``
    modulo ``d``; so the input is split into its ``d * d`` polyphase components, stacked along
    the batch, convolved without dilation and interleaved back (at stride ``d`` only the first
    component is read). Parameters, outputs and gradients are those of ``nn.Conv2d``; the point
    is speed: oneDNN's backward of dilated depthwise convolutions on CPU ran 3-10x slower than
    this (batch 64, 16-64 channels).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        if (
            kernel % 2 == 0
            or padding != dilation * (kernel - 1) // 2
            or stride not in (1, dilation)
        ):
            raise ValueError(
                f"PolyphaseConv2d needs an odd kernel, padding dilation*(kernel-1)/2 "
                f"and stride 1 or the dilation; got kernel {kernel}, padding "
                f"{padding}, stride {stride}, dilation {dilation}"
            )
        super().__init__(
            c_in,
            c_out,
            kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        pad = (self.kernel_size[0] - 1) // 2
        if self.stride[0] == d:
            return _conv2d(x[:, :, ::d, ::d], self.weight, self.bias, 1, pad, self.groups)
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
        stacked = (
            x.permute(0, 2, 3, 1)
            .reshape(n, hd, d, wd, d, c)
            .permute(2, 4, 0, 1, 3, 5)
            .reshape(d * d * n, hd, wd, c)
            .permute(0, 3, 1, 2)
        )
        return stacked, (n, c, h, w)

    def convolve_phases(self, stacked: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The stride-1 output from :meth:`phases`' result: convolve, then interleave back."""
        d = self.dilation[0]
        pad = (self.kernel_size[0] - 1) // 2
        n, _, h, w = shape
        y = _conv2d(stacked, self.weight, self.bias, 1, pad, self.groups)
        hd, wd, co = y.shape[2], y.shape[3], y.shape[1]
        y = (
            y.permute(0, 2, 3, 1)
            .reshape(d, d, n, hd, wd, co)
            .permute(2, 3, 0, 4, 1, 5)
            .reshape(n, hd * d, wd * d, co)
            .permute(0, 3, 1, 2)
        )
        return y[:, :, :h, :w] if hd * d != h or wd * d != w else y


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
        conv = PolyphaseConv2d if dilation > 1 else DepthwiseConv2d
        super().__init__(
            nn.ReLU(inplace=False),
            conv(
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
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
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
