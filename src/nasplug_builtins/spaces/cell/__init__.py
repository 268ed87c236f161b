"""The DARTS cell search space: a normal and a reduction cell, each a small DAG of mixed ops.

A cell has two inputs (the outputs of the two previous cells, numbered 0 and 1) and ``nodes``
intermediate nodes (numbered from 2); node ``i`` sums one mixed op on every earlier state, and
the cell outputs the concatenation of its intermediate nodes. Every edge is a
:class:`~nasplug.core.types.Choice` named ``"<cell>:<node><-<input>"``, e.g. ``normal:2<-0``.

Example:
    >>> from nasplug.core.types import Task
    >>> space = CellSpace(channels=4, layers=3)
    >>> [c.name for c in space.choices()][:3]
    ['normal:2<-0', 'normal:2<-1', 'normal:3<-0']
    >>> net = space.supernet(Task("classification", (1, 28, 28), 10))
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nasplug.core.interfaces import SearchSpace, Suggest, Weights, restricted_candidates
from nasplug.core.types import Choice, Genotype, Group, Task
from nasplug.engine.batchnorm import running_stats_kept

from . import fast
from .ops import (
    NONE,
    NORMALISED_IN_SUPERNET,
    OPS,
    FactorizedReduce,
    ReLUConvBN,
    drop_path,
    has_parameters,
)

__all__ = ["CellSpace", "CellNetwork", "CellSupernet"]

CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
SPACE_NAME = "cell"
DEFAULT_OPS = (
    "none,max_pool_3x3,avg_pool_3x3,skip_connect,sep_conv_3x3,sep_conv_5x5,"
    "dil_conv_3x3,dil_conv_5x5"
)

#: Per edge choice name, the candidate op names of that edge.
EdgeOps = Mapping[str, tuple[str, ...]]


def edge_name(cell: str, node: int, source: int) -> str:
    """The choice name of the edge from state ``source`` into node ``node`` of ``cell``."""
    return f"{cell}:{node}<-{source}"


def _edges(cell: str, nodes: int) -> list[tuple[str, int, int]]:
    """``(name, node, source)`` of every edge of a cell, in node then source order."""
    return [
        (edge_name(cell, node, source), node, source)
        for node in range(2, nodes + 2)
        for source in range(node)
    ]


def _parse_ops(ops: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in ops.split(","))
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise ValueError(f"unknown op {unknown[0]!r} in ops {ops!r}; known ops: {', '.join(OPS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"ops {ops!r} names an op twice")
    if all(name == NONE for name in names):
        raise ValueError(f"ops {ops!r} needs at least one op other than {NONE!r}")
    return names


def _reduction_layers(layers: int) -> frozenset[int]:
    # DARTS places the two reduction cells at one and two thirds of the depth.
    return frozenset({layers // 3, 2 * layers // 3})


def min_image_side(layers: int) -> int:
    """The smallest image side the space takes with ``layers`` cells: each reduction cell
    halves the feature map, and a map of one pixel halved is half padding (the offset path of
    :class:`~nasplug_builtins.spaces.cell.ops.FactorizedReduce` reads only zeros)."""
    return 2 ** len(_reduction_layers(layers))


def _check_image_side(task: Task, layers: int) -> None:
    _image_channels(task)
    h, w = (int(v) for v in task.input_shape[1:])
    side = min_image_side(layers)
    if min(h, w) < side:
        cells = len(_reduction_layers(layers))
        raise ValueError(
            f"images of {h}x{w} pixels are too small for the cell space: its {cells} "
            f"reduction cell(s) halve them {cells} time(s), and a one-pixel map halved is half "
            f"zero padding; accepted: images of at least {side}x{side} pixels"
        )


def _image_channels(task: Task) -> int:
    if len(task.input_shape) != 3:
        raise ValueError(
            f"the cell space needs image input (C, H, W); got input_shape {tuple(task.input_shape)}"
        )
    return int(task.input_shape[0])


def _gather(weights: Weights, choices: Sequence[Choice]) -> list[torch.Tensor]:
    """The weight tensor of every choice, in order, checked against its candidates."""
    tensors = []
    for choice in choices:
        try:
            w = weights[choice.name]
        except KeyError:
            raise ValueError(f"weights lack choice {choice.name!r}") from None
        if w.shape != (len(choice.candidates),):
            raise ValueError(
                f"weights of {choice.name!r} have shape {tuple(w.shape)}; expected "
                f"({len(choice.candidates)},) for {', '.join(choice.candidates)}"
            )
        tensors.append(w)
    return tensors


def _as_floats(tensors: Sequence[torch.Tensor]) -> list[list[float]]:
    """``tensors`` as lists of Python floats, with one host transfer for all of them."""
    flat = torch.cat([t.detach() for t in tensors]).tolist()
    rows, start = [], 0
    for t in tensors:
        rows.append(flat[start : start + len(t)])
        start += len(t)
    return rows


# --- the supernet ------------------------------------------------------------------------------

#: The supernet's implementations: ``reference`` is DARTS's plain computation
#: (:meth:`MixedOp.reference`, :meth:`SearchCell.reference`) with torch's own layers; ``fast``
#: switches on :mod:`nasplug_builtins.spaces.cell.fast`, the same results sooner.
IMPLS: tuple[str, ...] = ("fast", "reference")


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")


class MixedOp(nn.Module):
    """DARTS's mixed op: ``sum(w[k] * op_k(x))`` over an edge's candidates.

    ``none`` is never built nor computed, and an op whose weight is exactly zero is skipped.
    ``impl="reference"`` computes exactly that (:meth:`reference`) with the ops as ``OPS``
    builds them, from torch's own layers. ``impl="fast"`` switches on the speed-ups: the ops'
    layers made fast (:func:`~nasplug_builtins.spaces.cell.fast.accelerated`) and the edge
    computed through :func:`~nasplug_builtins.spaces.cell.fast.mixed_op_forward`, with the same
    results up to rounding.
    """

    def __init__(
        self, candidates: Sequence[str], channels: int, stride: int, impl: str = "fast"
    ) -> None:
        super().__init__()
        _check_impl(impl)
        ops, positions = [], []
        for k, name in enumerate(candidates):
            if name == NONE:
                continue
            op = OPS[name](channels, stride, False)
            if name in NORMALISED_IN_SUPERNET:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            ops.append(fast.accelerated(op) if impl == "fast" else op)
            positions.append(k)
        self.impl = impl
        self.candidates = tuple(candidates)
        self.ops = nn.ModuleList(ops)
        self.positions = tuple(positions)  # index in ``candidates`` of each of ``ops``

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        row: Sequence[float] | None,
        dropout: Mapping[str, float] | None = None,
        shared: dict[tuple[str, ...], Any] | None = None,
    ) -> torch.Tensor | None:
        """Mix the ops on ``x``; ``row`` (``w`` as floats) marks which ops to skip, None: none.

        ``dropout`` maps candidate names to a dropout probability for their outputs. ``shared``
        is the fast path's store of work shared between edges on ``x``. Returns None when no
        op is computed.
        """
        if self.impl == "fast":
            return fast.mixed_op_forward(self, x, w, row, dropout, shared)
        return self.reference(x, w, row, dropout)

    def reference(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        row: Sequence[float] | None,
        dropout: Mapping[str, float] | None = None,
    ) -> torch.Tensor | None:
        """``sum(w[k] * op_k(x))`` over :meth:`computed` ops, each op called as a module."""
        terms = []
        for i in self.computed(row):
            k = self.positions[i]
            y = self.ops[i](x)
            p = dropout.get(self.candidates[k], 0.0) if dropout else 0.0
            terms.append(w[k] * (F.dropout(y, p) if p > 0 else y))
        return sum(terms[1:], terms[0]) if terms else None

    def computed(self, row: Sequence[float] | None) -> list[int]:
        """Indices into ``ops`` of the ops to compute: those whose weight in ``row`` is not
        exactly zero (they contribute nothing, forward or backward); all when ``row`` is None."""
        return [i for i, k in enumerate(self.positions) if row is None or row[k] != 0.0]


class SearchCell(nn.Module):
    """A supernet cell: every intermediate node sums a mixed op on each earlier state."""

    def __init__(
        self,
        kind: str,
        edge_ops: EdgeOps,
        nodes: int,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        _check_impl(impl)
        self.impl = impl
        self.kind = kind
        self.nodes = nodes
        self.reduction = reduction
        self.channels = channels
        self.pre0 = (
            FactorizedReduce(c_prev_prev, channels, False)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, False)
        )
        self.pre1 = ReLUConvBN(c_prev, channels, 1, 1, 0, False)
        edges = _edges(kind, nodes)
        self.edge_names = tuple(name for name, _, _ in edges)
        self.edges = nn.ModuleList(
            MixedOp(edge_ops[name], channels, 2 if reduction and source < 2 else 1, impl)
            for name, _, source in edges
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: Sequence[torch.Tensor],
        rows: Sequence[Sequence[float] | None],
        dropout: Mapping[str, float] | None = None,
        inputs_shared: tuple[dict[tuple[str, ...], Any], dict[tuple[str, ...], Any]] | None = None,
    ) -> torch.Tensor:
        """The cell's output on the previous cells' ``s0`` and ``s1``; ``weights`` and ``rows``
        per edge, as :meth:`MixedOp.forward` takes them. ``inputs_shared`` is the fast path's
        store of work shared with the other cell that reads ``s0`` or ``s1``."""
        if self.impl == "fast":
            return fast.cell_forward(self, s0, s1, weights, rows, dropout, inputs_shared)
        return self.reference(s0, s1, weights, rows, dropout)

    def reference(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: Sequence[torch.Tensor],
        rows: Sequence[Sequence[float] | None],
        dropout: Mapping[str, float] | None = None,
    ) -> torch.Tensor:
        """DARTS's cell: node ``i`` sums a mixed op on every earlier state; the output
        concatenates the intermediate nodes."""
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for _ in range(self.nodes):
            terms = []
            for h in list(states):
                y = cast(MixedOp, self.edges[e]).reference(h, weights[e], rows[e], dropout)
                e += 1
                if y is not None:
                    terms.append(y)
            states.append(sum(terms[1:], terms[0]) if terms else self.zeros(states[1]))
        return torch.cat(states[2:], dim=1)

    def zeros(self, s1: torch.Tensor) -> torch.Tensor:
        """The output of a node without any computed input."""
        n, _, h, w = s1.shape
        if self.reduction:
            h, w = (h + 1) // 2, (w + 1) // 2
        return s1.new_zeros(n, self.channels, h, w).contiguous(memory_format=torch.channels_last)


class CellSupernet(nn.Module):
    """DARTS's search network: stem, cells sharing the weights of their type, pooling, head.

    ``forward(x, weights)`` takes the mixing weights of every choice of the space. With
    ``skip_zeros`` (the default) an op whose weight is exactly zero is not computed; which ops
    run is read with one host transfer per forward, shared by every cell.

    With ``checkpoint_cells`` (the memory saver) a training forward keeps only each cell's
    inputs and recomputes the cell's inside during backward (``torch.utils.checkpoint``,
    non-reentrant): activation memory falls to about one cell's worth, for roughly one more
    forward pass of time. The recomputation sees the very same skip decisions (they are
    arguments of the cell, read once per forward) and the same dropout masks (the RNG state is
    restored); the BatchNorm running statistics, which the recomputation updates once more, are
    put back as the first pass left them. Gradients and running statistics equal those without
    the saver.

    ``impl`` picks how the cells compute (see :class:`MixedOp`): ``reference``, DARTS's plain
    computation, or ``fast`` (the default), its speed-ups switched on; both give the same
    results.
    """

    def __init__(
        self,
        task: Task,
        choices: Sequence[Choice],
        channels: int,
        layers: int,
        nodes: int,
        stem_multiplier: int,
        checkpoint_cells: bool = False,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        _check_impl(impl)
        self.impl = impl
        self.skip_zeros = True
        self.checkpoint_cells = checkpoint_cells
        #: Candidate name -> dropout probability of its output in training (progressive search).
        self.candidate_dropout: dict[str, float] = {}
        self.choices = tuple(choices)
        edge_ops = {c.name: c.candidates for c in self.choices}
        self._type_edges = {
            kind: [i for i, c in enumerate(self.choices) if c.name.startswith(f"{kind}:")]
            for kind in CELL_TYPES
        }
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(_image_channels(task), c_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_stem, affine=False),
        )
        c_prev_prev, c_prev, c = c_stem, c_stem, channels
        reductions = _reduction_layers(layers)
        cells, reduction_prev = [], False
        for i in range(layers):
            reduction = i in reductions
            c = 2 * c if reduction else c
            kind = "reduce" if reduction else "normal"
            cells.append(
                SearchCell(
                    kind, edge_ops, nodes, c_prev_prev, c_prev, c, reduction, reduction_prev, impl
                )
            )
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, nodes * c
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, task.outputs)
        # channels_last: the layout oneDNN's CPU convolutions and pools run in without reordering.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        ws = _gather(weights, self.choices)
        rows: list[list[float] | None] = (
            list(_as_floats(ws)) if self.skip_zeros else [None] * len(ws)
        )
        per_type = {
            kind: ([ws[i] for i in idx], [rows[i] for i in idx])
            for kind, idx in self._type_edges.items()
        }
        dropout = self.candidate_dropout if self.training else None
        s0 = s1 = self.stem(x)
        # Prefixes computed on s0 and s1 (the stem's output is both), shared by the two cells
        # that read each state; not across checkpointed cells, whose recomputation must redo them.
        shared0: dict[tuple[str, ...], Any] = {}
        shared1 = shared0
        saver = self.checkpoint_cells and self.training and torch.is_grad_enabled()
        for cell in cast(Sequence[SearchCell], self.cells):
            if saver:
                s0, s1 = (
                    s1,
                    checkpoint(
                        cell,
                        s0,
                        s1,
                        *per_type[cell.kind],
                        dropout,
                        use_reentrant=False,
                        context_fn=lambda cell=cell: (
                            contextlib.nullcontext(),
                            running_stats_kept(cell),
                        ),
                    ),
                )
            else:
                out = cell(s0, s1, *per_type[cell.kind], dropout, (shared0, shared1))
                s0, s1, shared0, shared1 = s1, out, shared1, {}
        return self.classifier(self.pool(s1).flatten(1))


# --- the discrete network ----------------------------------------------------------------------


class Cell(nn.Module):
    """A discrete cell: node ``i`` sums ``inputs`` ops of the genotype on earlier states.

    Its ops' layers are the fast ones (:func:`~nasplug_builtins.spaces.cell.fast.accelerated`).
    """

    def __init__(
        self,
        pairs: Sequence[Sequence[Any]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        inputs: int = 2,
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.pre0 = (
            FactorizedReduce(c_prev_prev, channels, True)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, True)
        )
        self.pre1 = ReLUConvBN(c_prev, channels, 1, 1, 0, True)
        self.ops = nn.ModuleList(
            fast.accelerated(OPS[op](channels, 2 if reduction and source < 2 else 1, True))
            for op, source in pairs
        )
        self.sources = tuple(int(source) for _, source in pairs)
        self.concat = tuple(concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(0, len(self.ops), self.inputs):
            node = None
            for e in range(i, i + self.inputs):
                op = self.ops[e]
                y = op(states[self.sources[e]])
                # Identity paths are never dropped, as in DARTS.
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    y = drop_path(y, drop_prob)
                node = y if node is None else node + y
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Sequential):
    """DARTS's auxiliary classifier, pooling to 2x2 first so that any map size works."""

    def __init__(self, channels: int, outputs: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(768, outputs),
        )


class CellNetwork(nn.Module):
    """The evaluation network of a cell genotype (DARTS's ``NetworkCIFAR``).

    ``drop_path_prob`` is read at every forward (a trainer may change it each epoch). With an
    auxiliary head, a training forward stores the head's outputs in ``aux_logits``; otherwise
    ``aux_logits`` is None.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        task: Task,
        channels: int,
        layers: int,
        stem_multiplier: int,
        auxiliary: bool,
        drop_path_prob: float,
        inputs: int = 2,
    ) -> None:
        super().__init__()
        self.drop_path_prob = drop_path_prob
        self.aux_logits: torch.Tensor | None = None
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(_image_channels(task), c_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_stem),
        )
        c_prev_prev, c_prev, c = c_stem, c_stem, channels
        reductions = _reduction_layers(layers)
        self._aux_after = 2 * layers // 3
        cells, reduction_prev, c_aux = [], False, c_prev
        for i in range(layers):
            reduction = i in reductions
            c = 2 * c if reduction else c
            kind = "reduce" if reduction else "normal"
            concat = spec[f"{kind}_concat"]
            cells.append(
                Cell(spec[kind], concat, c_prev_prev, c_prev, c, reduction, reduction_prev, inputs)
            )
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, len(concat) * c
            if i == self._aux_after:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = AuxiliaryHead(c_aux, task.outputs) if auxiliary else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, task.outputs)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        self.aux_logits = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_after and self.auxiliary_head is not None and self.training:
                self.aux_logits = self.auxiliary_head(s1)
        return self.classifier(self.pool(s1).flatten(1))


# --- the space ---------------------------------------------------------------------------------


class CellSpace(SearchSpace):
    """DARTS's CNN cell space.

    Args:
        ops: comma-separated candidate ops of every edge (names of ``nasplug_builtins.spaces.cell.ops.OPS``).
        channels: channels of the first cells (doubled at each reduction); even.
        layers: number of cells; reductions sit at ``layers // 3`` and ``2 * layers // 3``.
        nodes: intermediate nodes per cell.
        stem_multiplier: the stem outputs ``stem_multiplier * channels`` channels.
        drop_path: initial drop-path probability of built networks (``drop_path_prob``).
        auxiliary: whether built networks carry an auxiliary head at two thirds of the depth.
        checkpoint_cells: the memory saver: recompute each supernet cell in backward instead
            of keeping its activations (same gradients, about one more forward of time).
        node_inputs: the incoming edges every node keeps (DARTS: 2). Each node's incoming
            edges form a :class:`~nasplug.core.types.Group` with ``k = node_inputs`` and ``none``
            as the unused candidate, so a group-aware relaxation gives a node in the supernet
            the mass it has in the derived network.
        impl: how the supernet computes: ``fast`` switches on exact speed-ups (the default);
            ``reference`` is DARTS's plain ``sum(w * op(x))`` with torch's own layers (slower,
            the same results, for checking). Discrete networks always run the fast layers.
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``); 3 layers hold
    #: both cell types.
    test_options: ClassVar[Mapping[str, Any]] = {"channels": 4, "layers": 3, "nodes": 2}

    def __init__(
        self,
        ops: str = DEFAULT_OPS,
        channels: int = 8,
        layers: int = 5,
        nodes: int = 4,
        stem_multiplier: int = 3,
        drop_path: float = 0.0,
        auxiliary: bool = False,
        checkpoint_cells: bool = False,
        node_inputs: int = 2,
        impl: str = "fast",
    ) -> None:
        names = _parse_ops(ops)
        _check_impl(impl)
        if channels < 2 or channels % 2:
            raise ValueError(f"channels must be a positive even number, got {channels}")
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {nodes}")
        if not 1 <= node_inputs <= 2:
            raise ValueError(
                f"node_inputs must be 1 or 2 (the first node has two possible "
                f"inputs), got {node_inputs}"
            )
        if stem_multiplier < 1:
            raise ValueError(f"stem_multiplier must be at least 1, got {stem_multiplier}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self.channels = channels
        self.layers = layers
        self.nodes = nodes
        self.stem_multiplier = stem_multiplier
        self.drop_path = drop_path
        self.auxiliary = auxiliary
        self.checkpoint_cells = checkpoint_cells
        self.node_inputs = node_inputs
        self.impl = impl
        self._edge_ops: dict[str, tuple[str, ...]] = {
            name: names for kind in CELL_TYPES for name, _, _ in _edges(kind, nodes)
        }

    # -- choices and networks

    def choices(self) -> tuple[Choice, ...]:
        return tuple(Choice(name, ops) for name, ops in self._edge_ops.items())

    def groups(self) -> tuple[Group, ...]:
        """One group per intermediate node of each cell type: its incoming edges, ``node_inputs``
        of them used, ``none`` standing for an unused edge."""
        return tuple(
            Group(
                f"{kind}:{node}",
                tuple(edge_name(kind, node, s) for s in range(node)),
                self.node_inputs,
                NONE,
            )
            for kind in CELL_TYPES
            for node in range(2, self.nodes + 2)
        )

    def parameter_free(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Per cell type, its (edge, op) pairs whose op holds no parameters on that edge (see
        :class:`~nasplug.core.interfaces.DeclaresParameterFree`): the pools, and ``skip_connect``
        except on a reduction cell's stride-2 edges, where it is a factorized reduction with
        convolutions. ``none`` is left out: it is the unused candidate, no op of the network."""
        return {
            kind: tuple(
                (name, op)
                for name, _, source in _edges(kind, self.nodes)
                for op in self._edge_ops[name]
                if op != NONE
                and not has_parameters(op, 2 if kind == "reduce" and source < 2 else 1)
            )
            for kind in CELL_TYPES
        }

    def cost_sites(
        self, task: Task
    ) -> dict[tuple[str, str], list[tuple[nn.Module, tuple[int, ...]]]]:
        """Per (edge, op), the op as :meth:`build` builds it in every cell of the edge's type,
        with its input shape there (see :class:`~nasplug.core.interfaces.ReportsCosts`).

        The shapes are read from a built network. A reduction cell's edges from its inputs have
        stride 2 (``skip_connect`` is then a factorized reduction); its other edges see the
        halved map. The ops are the discrete network's whatever the supernet's ``impl`` (so a
        dilated convolution's FLOPs are its polyphase computation's, which on odd-sized maps
        pads to even ones). Exact
        for genotypes that concatenate every intermediate node, as :meth:`derive` and
        :meth:`sample` make them: a shorter ``*_concat`` narrows the next cells' inputs, which
        no edge's cost accounts for.
        """
        shapes: list[tuple[int, ...]] = []
        net = self.build(_first_genotype(self), task).eval()
        cells = cast(Sequence[Cell], net.cells)
        hooks = [c.pre1.register_forward_hook(_record_shape(shapes)) for c in cells]
        with torch.no_grad():
            net(torch.zeros(1, *task.input_shape))
        for hook in hooks:
            hook.remove()
        sites: dict[tuple[str, str], list[tuple[nn.Module, tuple[int, ...]]]] = {}
        reductions = _reduction_layers(self.layers)
        for i, (_, c, h, w) in enumerate(shapes):
            reduction = i in reductions
            kind = "reduce" if reduction else "normal"
            halved = (1, c, (h + 1) // 2, (w + 1) // 2) if reduction else (1, c, h, w)
            for name, _, source in _edges(kind, self.nodes):
                stride = 2 if reduction and source < 2 else 1
                for op in self._edge_ops[name]:
                    if op == NONE:
                        continue
                    module = fast.accelerated(OPS[op](c, stride, True))
                    module = module.to(memory_format=torch.channels_last)
                    shape = (1, c, h, w) if source < 2 else halved
                    sites.setdefault((name, op), []).append((module, shape))
        return sites

    def supernet(self, task: Task) -> CellSupernet:
        _check_image_side(task, self.layers)
        return CellSupernet(
            task,
            self.choices(),
            self.channels,
            self.layers,
            self.nodes,
            self.stem_multiplier,
            self.checkpoint_cells,
            self.impl,
        )

    def build(self, genotype: Genotype, task: Task) -> CellNetwork:
        _validate(genotype, self.node_inputs)
        _check_image_side(task, self.layers)
        return CellNetwork(
            genotype.spec,
            task,
            self.channels,
            self.layers,
            self.stem_multiplier,
            self.auxiliary,
            self.drop_path,
            self.node_inputs,
        )

    # -- genotypes

    def derive(self, weights: Weights) -> Genotype:
        """DARTS's rule: each node keeps the ``node_inputs`` (two) incoming edges whose
        strongest op other than ``none`` weighs most, each with that op."""
        choices = self.choices()
        rows = dict(zip(self._edge_ops, _as_floats(_gather(weights, choices)), strict=True))
        spec: dict[str, Any] = {}
        for kind in CELL_TYPES:
            pairs: list[list[Any]] = []
            for node in range(2, self.nodes + 2):
                best = []  # (weight, source, op) of each edge's strongest op other than none
                for source in range(node):
                    name = edge_name(kind, node, source)
                    ranked = [
                        (w, op)
                        for op, w in zip(self._edge_ops[name], rows[name], strict=True)
                        if op != NONE
                    ]
                    if ranked:
                        w, op = max(ranked, key=lambda t: t[0])  # first of equals wins
                        best.append((w, source, op))
                if len(best) < self.node_inputs:
                    raise ValueError(
                        f"{kind} node {node} has fewer than {self.node_inputs} "
                        f"edges with an op other than {NONE!r}; cannot derive a "
                        f"genotype"
                    )
                best.sort(key=lambda t: -t[0])  # stable: the lower input wins a tie
                pairs += [[op, source] for _, source, op in best[: self.node_inputs]]
            spec[kind] = pairs
            spec[f"{kind}_concat"] = list(range(2, self.nodes + 2))
        return Genotype(SPACE_NAME, spec)

    def sample(self, suggest: Suggest) -> Genotype:
        """A random genotype: per node, ``suggest(f"{cell}:{node}:inputs", ["0,1", ...])`` picks
        ``node_inputs`` distinct inputs, then ``suggest(edge_name, ops)`` an op other than
        ``none`` for each."""
        spec: dict[str, Any] = {}
        for kind in CELL_TYPES:
            pairs: list[list[Any]] = []
            for node in range(2, self.nodes + 2):
                usable = [
                    s
                    for s in range(node)
                    if any(op != NONE for op in self._edge_ops[edge_name(kind, node, s)])
                ]
                options = [
                    ",".join(map(str, c)) for c in itertools.combinations(usable, self.node_inputs)
                ]
                if not options:
                    raise ValueError(
                        f"{kind} node {node} has fewer than {self.node_inputs} "
                        f"edges with an op other than {NONE!r}; cannot sample a "
                        f"genotype"
                    )
                picked = suggest(f"{kind}:{node}:inputs", options)
                for source in (int(s) for s in str(picked).split(",")):
                    name = edge_name(kind, node, source)
                    ops = [op for op in self._edge_ops[name] if op != NONE]
                    pairs.append([suggest(name, ops), source])
            spec[kind] = pairs
            spec[f"{kind}_concat"] = list(range(2, self.nodes + 2))
        return Genotype(SPACE_NAME, spec)

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """Weights selecting ``genotype`` in the supernet; edges it does not use are all zeros."""
        _validate(genotype, self.node_inputs)
        k = self.node_inputs
        weights = {name: torch.zeros(len(ops)) for name, ops in self._edge_ops.items()}
        for kind in CELL_TYPES:
            pairs = genotype.spec[kind]
            if len(pairs) != k * self.nodes:
                raise ValueError(
                    f"genotype's {kind} cell has {len(pairs) // k} nodes; this "
                    f"space has {self.nodes}"
                )
            for i, (op, source) in enumerate(pairs):
                name = edge_name(kind, 2 + i // k, source)
                if op not in self._edge_ops[name]:
                    raise ValueError(
                        f"op {op!r} is not a candidate of edge {name!r}; candidates: "
                        f"{', '.join(self._edge_ops[name])}"
                    )
                weights[name][self._edge_ops[name].index(op)] = 1.0
        return weights

    def describe(self, genotype: Genotype) -> str:
        """Two lines, e.g. ``normal: 2 <- sep_conv_3x3(0) + sep_conv_3x3(1); ... | concat 2,3,4,5``."""
        _validate(genotype, self.node_inputs)
        k = self.node_inputs
        lines = []
        for kind in CELL_TYPES:
            pairs = genotype.spec[kind]
            nodes = [
                f"{2 + i // k} <- " + " + ".join(f"{op}({s})" for op, s in pairs[i : i + k])
                for i in range(0, len(pairs), k)
            ]
            concat = ",".join(str(i) for i in genotype.spec[f"{kind}_concat"])
            lines.append(f"{kind}: {'; '.join(nodes)} | concat {concat}")
        return "\n".join(lines)

    # -- variants

    def restrict(self, keep: Mapping[str, Sequence[str]]) -> CellSpace:
        """A copy whose named edges keep only the given ops (others keep all of theirs)."""
        edge_ops = restricted_candidates(
            self._edge_ops, keep, f"choices are named like {edge_name('normal', 2, 0)!r}"
        )
        space = copy.copy(self)
        space._edge_ops = edge_ops
        return space

    def with_depth(self, depth: int) -> CellSpace:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        space = copy.copy(self)
        space.layers = depth
        return space

    def state_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "edge_ops": {k: list(v) for k, v in self._edge_ops.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        edge_ops = {k: tuple(v) for k, v in state["edge_ops"].items()}
        if set(edge_ops) != set(self._edge_ops):
            raise ValueError(
                "cell space state has other edges than this space; were nodes changed?"
            )
        self.layers = int(state["layers"])
        self._edge_ops = {k: edge_ops[k] for k in self._edge_ops}


def _first_genotype(space: CellSpace) -> Genotype:
    """Any genotype of ``space``: every decision takes its first option."""
    return space.sample(lambda name, options: options[0])


def _record_shape(shapes: list[tuple[int, ...]]) -> Any:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        shapes.append(tuple(output.shape))

    return hook


def _validate(genotype: Genotype, inputs: int = 2) -> None:
    """Raise a one-line ValueError unless ``genotype`` is a well-formed cell genotype."""
    if genotype.space != SPACE_NAME:
        raise ValueError(f"genotype is for space {genotype.space!r}; expected {SPACE_NAME!r}")
    spec = genotype.spec
    for kind in CELL_TYPES:
        for key in (kind, f"{kind}_concat"):
            if key not in spec:
                raise ValueError(
                    f"cell genotype lacks {key!r}; needs normal, normal_concat, "
                    f"reduce, reduce_concat"
                )
        pairs = spec[kind]
        if not pairs or len(pairs) % inputs:
            raise ValueError(
                f"genotype's {kind!r} must list {('one', 'two')[inputs - 1]} "
                f"(op, input) pairs per node, got {len(pairs)} pairs"
            )
        nodes = len(pairs) // inputs
        for i, pair in enumerate(pairs):
            node = 2 + i // inputs
            if not (
                isinstance(pair, (list, tuple))
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], int)
                and not isinstance(pair[1], bool)
            ):
                raise ValueError(
                    f"genotype's {kind!r} entry {i} is not an (op, input) pair: {pair!r}"
                )
            op, source = pair
            if op not in OPS or op == NONE:
                known = ", ".join(name for name in OPS if name != NONE)
                raise ValueError(
                    f"unknown op {op!r} in genotype's {kind!r} cell; known ops: {known}"
                )
            if not 0 <= source < node:
                raise ValueError(
                    f"node {node} of genotype's {kind!r} cell takes input {source}; "
                    f"accepted inputs: 0..{node - 1}"
                )
        concat = spec[f"{kind}_concat"]
        valid = range(2, nodes + 2)
        if (
            not concat
            or len(set(concat)) != len(concat)
            or not all(isinstance(i, int) and i in valid for i in concat)
        ):
            raise ValueError(
                f"genotype's {kind}_concat {list(concat)} must name distinct "
                f"intermediate nodes among {list(valid)}"
            )
