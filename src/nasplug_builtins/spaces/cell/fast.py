"""Exact speed-ups of the cell space: the plain DARTS computation's results, sooner.

:mod:`nasplug_builtins.spaces.cell` states what the supernet computes, ``sum(w[k] * op_k(x))`` on every
edge (:meth:`~nasplug_builtins.spaces.cell.MixedOp.reference`); this module computes it faster on the
CPU, changing nothing but floating-point rounding: outputs, gradients and BatchNorm running
statistics are those of the plain computation (``tests/spaces/test_cell.py`` checks both
paths equal).

- :func:`mixed_op_forward` and :func:`cell_forward`: a cell's edges computed through
  plans (:class:`Plan`). The leading ReLU, pooling or polyphase split of a candidate is computed
  once per input state and shared by every candidate (of any edge) on it; a trailing BatchNorm
  without affine takes the mixing weight as its scale (:func:`scaled_batch_norm`); candidates
  are summed in place; the cell's concatenation hands back dense gradients (:class:`Concat`).
- Ops: :class:`MaxPool2d` keeps one-byte argmaxes, :class:`DepthwiseConv2d` a faster weight
  gradient on small maps, :class:`PolyphaseConv2d` computes a dilated convolution undilated.
  Each has the parameters, outputs and gradients of the torch module it subclasses;
  :func:`accelerated` puts them in place of those modules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # the cell module imports this one: names for annotations only
    from . import MixedOp, SearchCell

__all__ = [
    "Concat",
    "DepthwiseConv2d",
    "MaxPool2d",
    "Plan",
    "PolyphaseConv2d",
    "accelerated",
    "cell_forward",
    "mixed_op_forward",
    "plans",
    "scaled_batch_norm",
]

#: Prefixes already computed on one input state, keyed by :attr:`Plan.key` prefixes.
Shared = dict[tuple[str, ...], Any]


# --- the fast forward of a mixed op and of a cell ------------------------------------------------


def mixed_op_forward(
    mixed: MixedOp,
    x: torch.Tensor,
    w: torch.Tensor,
    row: Sequence[float] | None,
    dropout: Mapping[str, float] | None = None,
    shared: Shared | None = None,
) -> torch.Tensor | None:
    """``mixed``'s output on ``x``, as :meth:`MixedOp.reference` computes it; None when no
    candidate is computed. ``shared`` holds the prefixes already computed on ``x`` (by other
    edges) and takes the ones computed here."""
    shared = {} if shared is None else shared
    ops_plans = plans(mixed, mixed.ops)
    out = None
    for i in mixed.computed(row):
        k = mixed.positions[i]
        p = dropout.get(mixed.candidates[k], 0.0) if dropout else 0.0
        y = _candidate(ops_plans[i], x, w[k], shared, p)
        # In place: the sum is saved by no backward function, so this is autograd-safe.
        out = y if out is None else out.add_(y)
    return out


def cell_forward(
    cell: SearchCell,
    s0: torch.Tensor,
    s1: torch.Tensor,
    weights: Sequence[torch.Tensor],
    rows: Sequence[Sequence[float] | None],
    dropout: Mapping[str, float] | None = None,
    inputs_shared: tuple[Shared, Shared] | None = None,
) -> torch.Tensor:
    """``cell``'s output, as :meth:`SearchCell.reference` computes it.

    ``inputs_shared`` holds the prefixes already computed on ``s0`` and ``s1`` and takes the
    ones computed here: the ReLU that starts the preprocessing of a cell's output is computed
    once for the two cells that read it.
    """
    inputs_shared = inputs_shared or ({}, {})
    pre_plans = plans(cell, (cell.pre0, cell.pre1))
    states = []
    for plan, x, computed in zip(pre_plans, (s0, s1), inputs_shared, strict=True):
        h = _body(x, plan, computed)
        states.append(h if plan.norm is None else plan.norm(h))
    # Per state, the candidate prefixes computed on it, shared by every edge leaving it.
    shared: list[Shared] = [{}, {}]
    e = 0
    for _ in range(cell.nodes):
        node = None
        for h, computed in zip(states, shared, strict=True):
            y = cell.edges[e](h, weights[e], rows[e], dropout, computed)
            e += 1
            if y is not None:
                node = y if node is None else node.add_(y)
        states.append(cell.zeros(states[1]) if node is None else node)
        shared.append({})
    return Concat.apply(*states[2:])


def _candidate(plan: Plan, x: torch.Tensor, w: torch.Tensor, shared: Shared, p: float) -> Any:
    """``w`` times the planned candidate's output on ``x``, dropped with probability ``p``."""
    h = _body(x, plan, shared)
    if plan.norm is not None and p == 0:
        return scaled_batch_norm(plan.norm, h, w)
    if plan.norm is not None:
        h = plan.norm(h)
    if p > 0:
        h = F.dropout(h, p)
    return w * h


# --- plans ---------------------------------------------------------------------------------------


#: Parameter-free, deterministic modules whose output depends on their input alone: when several
#: candidates on the same input start with the same ones, they are computed once and shared.
_SHAREABLE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Identity)


class Plan(NamedTuple):
    """How a module is computed: ``norm(body(prefix(x)))``; in a mixed op, scaled by its weight.

    ``prefix`` (callables, named by ``key``) is shared with every candidate on the same input
    that starts the same way: a ReLU, a pooling, the polyphase split of a dilated convolution.
    ``norm``, a trailing BatchNorm without affine, takes the mixing weight as its scale, so
    weighting costs no kernel of its own; None: the output is multiplied.
    """

    prefix: tuple[Callable[[Any], Any], ...]
    key: tuple[str, ...]
    body: tuple[Callable[[Any], Any], ...]
    norm: nn.BatchNorm2d | None


#: Bumped whenever a module is assigned into another anywhere (see :func:`plans`).
_structure_version = 0


def _module_assigned(parent: nn.Module, name: str, child: nn.Module) -> None:
    global _structure_version
    _structure_version += 1


nn.modules.module.register_module_module_registration_hook(_module_assigned)


def plans(owner: nn.Module, modules: Iterable[nn.Module]) -> list[Plan]:
    """The plan of each of ``modules``, kept on ``owner`` and made again only when some module
    was assigned into another since (a replaced ReLU, say), anywhere in the process.

    A forward thus walks no module tree. ``.to()``, ``channels_last`` or loading a state dict
    keep the modules and the plans; a module tree edited without assignment (``del``, or
    ``_modules`` itself) is not noticed.
    """
    cached = owner.__dict__.get("_fast_plans")
    if cached is None or cached[0] != _structure_version:
        cached = (_structure_version, [_plan(_leaves(m)) for m in modules])
        owner.__dict__["_fast_plans"] = cached
    return cached[1]


def _leaves(module: nn.Module) -> list[nn.Module]:
    """``module``'s modules in call order, through plain ``nn.Sequential`` containers."""
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _shareable(module: nn.Module) -> bool:
    return (
        isinstance(module, _SHAREABLE)
        and not getattr(module, "inplace", False)
        and not getattr(module, "return_indices", False)
    )


def _plan(leaves: Sequence[nn.Module]) -> Plan:
    n = 0
    while n < len(leaves) and _shareable(leaves[n]):
        n += 1
    prefix: list[Callable[[Any], Any]] = list(leaves[:n])
    key = [repr(m) for m in prefix]
    body: list[Callable[[Any], Any]] = list(leaves[n:])
    first = body[0] if body else None
    if isinstance(first, PolyphaseConv2d) and first.stride[0] == 1:
        # The split into polyphase components depends on the dilation alone: shared too.
        prefix.append(first.phases)
        key.append(f"polyphase({first.dilation[0]})")
        body[0] = functools.partial(_convolve_split, first)
    norm = None
    last = body[-1] if body else None
    if isinstance(last, nn.BatchNorm2d) and type(last) is nn.BatchNorm2d and not last.affine:
        body.pop()
        norm = last
    return Plan(tuple(prefix), tuple(key), tuple(body), norm)


def _convolve_split(
    conv: PolyphaseConv2d, split: tuple[torch.Tensor, tuple[int, ...]]
) -> torch.Tensor:
    return conv.convolve_phases(*split)


def _body(x: torch.Tensor, plan: Plan, shared: Shared) -> torch.Tensor:
    """``plan``'s prefix (shared) and body on ``x``: everything but its trailing BatchNorm."""
    h = _prefix(x, plan, shared)
    for module in plan.body:
        h = module(h)
    return h


def _prefix(x: torch.Tensor, plan: Plan, shared: Shared) -> Any:
    """``plan``'s prefix on ``x``, each step computed once per input and kept in ``shared``."""
    h = x
    for i, module in enumerate(plan.prefix):
        key = plan.key[: i + 1]
        if key not in shared:
            shared[key] = module(h)
        h = shared[key]
    return h


# --- fused mixing weight and concatenation -------------------------------------------------------


def scaled_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * bn(x)`` for a BatchNorm without affine, in one kernel: ``scale`` is its weight.

    Running statistics and ``num_batches_tracked`` are updated as ``bn(x)`` would.
    """
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative average
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or bn.running_mean is None
    keep = not bn.training or bn.track_running_stats
    # The scale takes the statistics' dtype: float32 beside a bfloat16 input under autocast.
    # Its per-channel copy is made contiguous: with a stride-0 weight, the CPU backward of
    # channels_last inputs read memory it should not (non-finite gradients, torch 2.14).
    dtype = x.dtype if bn.running_mean is None else bn.running_mean.dtype
    weight = scale.to(dtype).expand(x.shape[1]).contiguous()
    return F.batch_norm(
        x,
        bn.running_mean if keep else None,
        bn.running_var if keep else None,
        weight,
        None,
        use_batch_stats,
        momentum,
        bn.eps,
    )


class Concat(torch.autograd.Function):
    """``torch.cat(states, dim=1)`` whose backward hands every state a dense gradient.

    ``torch.cat``'s backward gives channel slices of the output's gradient; in channels_last
    those are strided views, and BatchNorm's CPU backward ran 4-20x slower on them than on a
    dense copy (16-64 x 16 x 32 x 32).
    """

    @staticmethod
    def forward(ctx: Any, *states: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [s.shape[1] for s in states]
        return torch.cat(states, dim=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(
            g.clone(memory_format=torch.preserve_format) for g in grad.split(ctx.sizes, dim=1)
        )


# --- ops -----------------------------------------------------------------------------------------


def accelerated(module: nn.Module) -> nn.Module:
    """``module`` with every torch layer that this module computes faster replaced by its fast
    twin, sharing its parameters; ``module`` itself if it is one such layer.

    The twins: :class:`MaxPool2d` for ``nn.MaxPool2d``; for a depthwise ``nn.Conv2d``
    (``groups`` equal to its input and output channels, zero padding),
    :class:`DepthwiseConv2d` when undilated and :class:`PolyphaseConv2d` when dilated with
    "same" padding. Other layers, subclasses of these included, are kept. No random numbers
    are drawn. The cell space builds its ops from torch's layers and turns them fast with this.
    """
    twin = _fast_twin(module)
    if twin is not None:
        return twin
    for name, child in list(module.named_children()):
        replaced = accelerated(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def _fast_twin(module: nn.Module) -> nn.Module | None:
    """The fast layer that stands for ``module``, or None if there is none."""
    if type(module) is nn.MaxPool2d:
        pool = MaxPool2d(
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.return_indices,
            module.ceil_mode,
        )
        return pool.train(module.training)
    if not (
        type(module) is nn.Conv2d
        and module.groups == module.in_channels == module.out_channels
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return None
    if module.dilation == (1, 1):
        return _conv_twin(module, DepthwiseConv2d)
    (kh, kw), (dh, dw) = module.kernel_size, module.dilation
    same = module.padding == (dh * (kh - 1) // 2,) * 2
    if kh == kw and kh % 2 and dh == dw and same and module.stride in ((1, 1), (dh, dh)):
        return _conv_twin(module, PolyphaseConv2d)
    return None


def _conv_twin(conv: nn.Conv2d, cls: type[nn.Conv2d]) -> nn.Conv2d:
    """A ``cls`` with ``conv``'s geometry (zero padding, given in pixels) and parameters, made
    on the meta device, so that building it draws no random numbers."""
    padding = (int(conv.padding[0]), int(conv.padding[1]))
    twin: nn.Conv2d
    if cls is PolyphaseConv2d:
        twin = PolyphaseConv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size[0],
            conv.stride[0],
            padding[0],
            conv.dilation[0],
            groups=conv.groups,
            bias=conv.bias is not None,
            device="meta",
        )
    else:
        twin = cls(
            conv.in_channels,
            conv.out_channels,
            (conv.kernel_size[0], conv.kernel_size[1]),
            stride=(conv.stride[0], conv.stride[1]),
            padding=padding,
            dilation=(conv.dilation[0], conv.dilation[1]),
            groups=conv.groups,
            bias=conv.bias is not None,
            device="meta",
        )
    twin.weight = conv.weight
    if conv.bias is not None:
        twin.bias = conv.bias
    return twin.train(conv.training)


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
        device: torch.device | str | None = None,
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
            device=device,
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
