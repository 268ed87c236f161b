"""The NAS-Bench-201 search space (Dong & Yang, ICLR 2020): one cell of six edges, 15,625 genotypes.

The cell has four nodes: node 0 is the cell's input, node ``j`` sums ``op_ij(node i)`` over every
``i < j``, and node 3 is its output. Each of the six edges is a :class:`~nasplug.core.types.Choice` of
its own, named ``"<j><-<i>"`` (``1<-0``, ``2<-0``, ``2<-1``, ``3<-0``, ``3<-1``, ``3<-2``), among
``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` and ``avg_pool_3x3``
(``nor_conv`` is ReLU, convolution, BatchNorm). ``none`` is a real candidate: a derived cell may
drop an edge. One genotype is shared by every cell of the network.

The network is NAS-Bench-201's: a 3x3 convolution with BatchNorm as stem, three stages of
``cells`` cells with ``channels``, twice and four times as many channels, a ResNet basic block of
stride 2 between stages, then BatchNorm and ReLU, global average pooling and a linear head.

Genotypes print and parse as NAS-Bench-201's arch strings (see :func:`parse_arch` and
:func:`arch_string`). The space offers a benchmark table of CIFAR-10 accuracies
(:meth:`Nb201Space.benchmark`, from the optional ``analog-nasbench`` package).

Example:
    >>> g = parse_arch("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|"
    ...                "+|skip_connect~0|none~1|nor_conv_3x3~2|")
    >>> g.spec["choices"]["2<-1"]
    'skip_connect'
    >>> arch_string(g) == Nb201Space().describe(g)
    True
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from nasplug.core.interfaces import SearchSpace, Weights, restricted_candidates
from nasplug.core.types import Choice, Genotype, Task

if TYPE_CHECKING:
    from .table import Nb201Table

__all__ = [
    "CANDIDATES",
    "EDGES",
    "EDGE_NAMES",
    "OPS",
    "SPACE_NAME",
    "Nb201Network",
    "Nb201Space",
    "Nb201Supernet",
    "arch_string",
    "cell_ops",
    "edge_name",
    "parse_arch",
]

SPACE_NAME = "nb201"
NONE = "none"
NODES = 4
#: The edges ``(node, source)`` in NAS-Bench-201's order: ``1<-0 | 2<-0, 2<-1 | 3<-0, 3<-1, 3<-2``.
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NODES) for i in range(j))

OpConstructor = Callable[[int, bool], nn.Module]


def _nor_conv(kernel: int) -> OpConstructor:
    def make(c: int, affine: bool) -> nn.Module:
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )

    return make


#: The candidate ops of every edge, ``(C, affine) -> module`` keeping C channels and the map size
#: (``affine``: whether BatchNorm learns a scale and shift; False in the supernet). ``none`` has
#: no module: it contributes nothing and is never computed.
OPS: dict[str, OpConstructor | None] = {
    NONE: None,
    "skip_connect": lambda c, affine: nn.Identity(),
    "nor_conv_1x1": _nor_conv(1),
    "nor_conv_3x3": _nor_conv(3),
    "avg_pool_3x3": lambda c, affine: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
}
CANDIDATES: tuple[str, ...] = tuple(OPS)


def has_parameters(op: str) -> bool:
    """Whether ``op`` holds trainable parameters in a discrete network, found by building it
    (``none`` builds nothing and holds none)."""
    make = OPS[op]
    return make is not None and any(True for _ in make(2, True).parameters())


def edge_name(node: int, source: int) -> str:
    """The choice name of the edge from node ``source`` into node ``node``, e.g. ``2<-1``."""
    return f"{node}<-{source}"


EDGE_NAMES: tuple[str, ...] = tuple(edge_name(j, i) for j, i in EDGES)


# --- arch strings ------------------------------------------------------------------------------


def parse_arch(text: str) -> Genotype:
    """The genotype of a NAS-Bench-201 arch string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

    Raises a one-line ValueError naming what is wrong.
    """
    if not isinstance(text, str):
        raise ValueError(f"an nb201 arch string is text, got {type(text).__name__}")
    shape = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
    nodes = text.strip().split("+")
    if len(nodes) != NODES - 1:
        raise ValueError(
            f"nb201 arch string {text.strip()!r} has {len(nodes)} node(s) between '+'; "
            f"expected {NODES - 1}, like {shape}"
        )
    choices: dict[str, str] = {}
    for j, part in enumerate(nodes, start=1):
        if not (part.startswith("|") and part.endswith("|") and len(part) > 1):
            raise ValueError(
                f"node {j} of nb201 arch string is {part!r}; each node is '|op~i|...|', like {shape}"
            )
        edges = part[1:-1].split("|")
        if len(edges) != j:
            raise ValueError(
                f"node {j} of nb201 arch string lists {len(edges)} edge(s); it takes one from "
                f"each earlier node: {j}"
            )
        for i, edge in enumerate(edges):
            op, sep, source = edge.partition("~")
            if not sep or source != str(i):
                raise ValueError(
                    f"edge {edge!r} of node {j} in nb201 arch string must read 'op~{i}' "
                    f"(edges are listed by source node, 0 first)"
                )
            if op not in OPS:
                raise ValueError(
                    f"unknown op {op!r} in nb201 arch string; accepted: {', '.join(CANDIDATES)}"
                )
            choices[edge_name(j, i)] = op
    return Genotype(SPACE_NAME, {"choices": choices})


def arch_string(genotype: Genotype) -> str:
    """NAS-Bench-201's arch string of ``genotype`` (checked: a ValueError names what is wrong)."""
    ops = cell_ops(genotype)
    return "+".join(
        "|" + "|".join(f"{ops[edge_name(j, i)]}~{i}" for i in range(j)) + "|"
        for j in range(1, NODES)
    )


def cell_ops(genotype: Genotype) -> dict[str, str]:
    """``{edge name: op}`` of an nb201 genotype; a one-line ValueError unless it is one."""
    if genotype.space != SPACE_NAME:
        raise ValueError(f"genotype is for space {genotype.space!r}; expected {SPACE_NAME!r}")
    choices = genotype.spec.get("choices")
    if not isinstance(choices, Mapping):
        raise ValueError(
            "nb201 genotype needs 'choices': {edge: op} for the edges " + ", ".join(EDGE_NAMES)
        )
    missing = [n for n in EDGE_NAMES if n not in choices]
    extra = sorted(set(choices) - set(EDGE_NAMES))
    if missing or extra:
        what = f"lacks edge {missing[0]!r}" if missing else f"names unknown edge {extra[0]!r}"
        raise ValueError(f"nb201 genotype {what}; its edges are {', '.join(EDGE_NAMES)}")
    for name in EDGE_NAMES:
        if choices[name] not in OPS:
            raise ValueError(
                f"unknown op {choices[name]!r} on nb201 edge {name!r}; accepted: "
                f"{', '.join(CANDIDATES)}"
            )
    return {name: str(choices[name]) for name in EDGE_NAMES}


# --- networks ----------------------------------------------------------------------------------


def _image_channels(task: Task) -> int:
    if len(task.input_shape) != 3:
        raise ValueError(
            f"the nb201 space needs image input (C, H, W); got input_shape {tuple(task.input_shape)}"
        )
    return int(task.input_shape[0])


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction between stages: two ReLU-Conv-BN 3x3 (the first of stride 2)
    plus a shortcut of 2x2 average pooling and a 1x1 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.conv_b = _nor_conv(3)(c_out, True)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class _Macro(nn.Module):
    """Stem, three stages of cells with a basic block between them, BN-ReLU, pooling, head."""

    def __init__(
        self, task: Task, channels: int, cells: int, make_cell: Callable[[int], nn.Module]
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(_image_channels(task), channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResNetBasicBlock(c, 2 * c))
                c *= 2
            layers += [make_cell(c) for _ in range(cells)]
        self.layers = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, task.outputs)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.lastact(x)).flatten(1))


class SearchCell(nn.Module):
    """A supernet cell: every edge mixes its candidates, ``sum(w[k] * op_k(x))``."""

    def __init__(self, edge_ops: Mapping[str, Sequence[str]], c: int) -> None:
        super().__init__()
        self.candidates = tuple(tuple(edge_ops[name]) for name in EDGE_NAMES)
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: make(c, False) for op in ops if (make := OPS[op]) is not None})
            for ops in self.candidates
        )

    def forward(
        self,
        x: torch.Tensor,
        weights: Sequence[torch.Tensor],
        rows: Sequence[Sequence[float] | None],
    ) -> torch.Tensor:
        nodes = [x]
        e = 0
        for j in range(1, NODES):
            terms = []
            nones = []
            for i in range(j):
                ops = cast(nn.ModuleDict, self.edges[e])
                w, row = weights[e], rows[e]
                for k, name in enumerate(self.candidates[e]):
                    # A zero weight adds nothing: not computed.
                    if row is not None and row[k] == 0.0:
                        continue
                    if name == NONE:  # adds nothing, but its weight stays in the graph
                        nones.append(w[k])
                        continue
                    terms.append(w[k] * ops[name](nodes[i]))
                e += 1
            node = sum(terms[1:], terms[0]) if terms else torch.zeros_like(x)
            if nones:
                # ``w * 0``: the value is unchanged and the gradient of ``none``'s weight is the
                # exact zero, but a cell whose sampled path is all ``none`` still depends on the
                # weights, so an architecture step has a graph to differentiate.
                node = node + torch.stack(nones).sum() * 0.0
            nodes.append(node)
        return nodes[-1]


class Nb201Supernet(_Macro):
    """The weight-sharing network: every cell mixes every candidate of its six edges.

    ``forward(x, weights)`` takes a tensor per edge; with ``skip_zeros`` (the default) a candidate
    whose weight is exactly zero is not computed (read with one host transfer per forward). Cells
    share the mixing weights, as they share the genotype. BatchNorm inside the cells learns no
    scale or shift, as in DARTS's and NAS-Bench-201's search networks.
    """

    def __init__(
        self, task: Task, channels: int, cells: int, edge_ops: Mapping[str, Sequence[str]]
    ) -> None:
        super().__init__(task, channels, cells, lambda c: SearchCell(edge_ops, c))
        self.edge_ops = {name: tuple(edge_ops[name]) for name in EDGE_NAMES}
        self.skip_zeros = True
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        ws = []
        for name, ops in self.edge_ops.items():
            try:
                w = weights[name]
            except KeyError:
                raise ValueError(f"weights lack choice {name!r}") from None
            if w.shape != (len(ops),):
                raise ValueError(
                    f"weights of {name!r} have shape {tuple(w.shape)}; expected "
                    f"({len(ops)},) for {', '.join(ops)}"
                )
            ws.append(w)
        rows: list[list[float] | None] = [None] * len(ws)
        if self.skip_zeros:  # one host transfer for every edge of every cell
            flat = torch.cat([w.detach() for w in ws]).tolist()
            start = 0
            for e, w in enumerate(ws):
                rows[e] = flat[start : start + len(w)]
                start += len(w)
        h = self.stem(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            h = layer(h, ws, rows) if isinstance(layer, SearchCell) else layer(h)
        return self.head(h)


class Cell(nn.Module):
    """A discrete cell: each edge's op of the genotype; ``none`` edges are not built."""

    def __init__(self, ops: Mapping[str, str], c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict()
        for name in EDGE_NAMES:
            make = OPS[ops[name]]
            if make is not None:
                self.edges[name] = make(c, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NODES):
            terms = [
                self.edges[edge_name(j, i)](nodes[i])
                for i in range(j)
                if edge_name(j, i) in self.edges
            ]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[-1]


class Nb201Network(_Macro):
    """The discrete network of a genotype, as NAS-Bench-201 trains it (BatchNorm affine)."""

    def __init__(self, task: Task, ops: Mapping[str, str], channels: int, cells: int) -> None:
        super().__init__(task, channels, cells, lambda c: Cell(ops, c))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


# --- the space ---------------------------------------------------------------------------------


class Nb201Space(SearchSpace):
    """NAS-Bench-201's cell space.

    Args:
        cells: cells per stage (NAS-Bench-201: 5).
        channels: channels of the first stage, doubled at each of the two reductions
            (NAS-Bench-201: 16).
    """

    test_options: ClassVar[Mapping[str, Any]] = {"cells": 1, "channels": 4}

    def __init__(self, cells: int = 5, channels: int = 16) -> None:
        if isinstance(cells, bool) or not isinstance(cells, int) or cells < 1:
            raise ValueError(f"cells must be an integer >= 1, got {cells!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
        self.cells = cells
        self.channels = channels
        #: The candidates of every edge: all of them, unless :meth:`restrict` kept fewer.
        self._edge_ops: dict[str, tuple[str, ...]] = dict.fromkeys(EDGE_NAMES, CANDIDATES)

    def choices(self) -> tuple[Choice, ...]:
        return tuple(Choice(name, ops) for name, ops in self._edge_ops.items())

    def parameter_free(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """The cell's (edge, op) pairs whose op holds no parameters (see
        :class:`~nasplug.core.interfaces.DeclaresParameterFree`): ``none``, ``skip_connect`` and
        ``avg_pool_3x3``. ``none`` is a real candidate here (a cell may cut an edge), so it
        counts: ``--relax-opt cap=M`` keeps at most ``M`` of the 6 edges without a convolution."""
        return {
            "cell": tuple(
                (name, op)
                for name, ops in self._edge_ops.items()
                for op in ops
                if not has_parameters(op)
            )
        }

    def cost_sites(
        self, task: Task
    ) -> dict[tuple[str, str], list[tuple[nn.Module, tuple[int, ...]]]]:
        """Per (edge, op), the op as :meth:`build` builds it in every cell, with the cell's input
        shape, read from a built network (see :class:`~nasplug.core.interfaces.ReportsCosts`).
        ``none`` builds nothing and is left out: it costs nothing."""
        shapes: list[tuple[int, ...]] = []
        net = self.build(Genotype(SPACE_NAME, {"choices": dict.fromkeys(EDGE_NAMES, NONE)}), task)
        hooks = [
            layer.register_forward_pre_hook(
                lambda module, inputs: shapes.append(tuple(inputs[0].shape))
            )
            for layer in net.layers
            if isinstance(layer, Cell)
        ]
        with torch.no_grad():
            net.eval()(torch.zeros(1, *task.input_shape))
        for hook in hooks:
            hook.remove()
        sites: dict[tuple[str, str], list[tuple[nn.Module, tuple[int, ...]]]] = {}
        for shape in shapes:
            for name, ops in self._edge_ops.items():
                for op in ops:
                    make = OPS[op]
                    if make is not None:
                        module = make(shape[1], True).to(memory_format=torch.channels_last)
                        sites.setdefault((name, op), []).append((module, shape))
        return sites

    def supernet(self, task: Task) -> Nb201Supernet:
        return Nb201Supernet(task, self.channels, self.cells, self._edge_ops)

    def build(self, genotype: Genotype, task: Task) -> Nb201Network:
        return Nb201Network(task, cell_ops(genotype), self.channels, self.cells)

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        ops = cell_ops(genotype)
        for name, op in ops.items():
            if op not in self._edge_ops[name]:
                raise ValueError(
                    f"op {op!r} is not a candidate of edge {name!r}; candidates: "
                    f"{', '.join(self._edge_ops[name])}"
                )
        return {
            name: torch.tensor([float(k == ops[name]) for k in cands])
            for name, cands in self._edge_ops.items()
        }

    def restrict(self, keep: Mapping[str, Sequence[str]]) -> Nb201Space:
        """A copy whose named edges keep only the given candidates (progressive search)."""
        edge_ops = restricted_candidates(
            self._edge_ops, keep, f"the edges are {', '.join(EDGE_NAMES)}"
        )
        space = copy.copy(self)
        space._edge_ops = edge_ops
        return space

    def with_depth(self, depth: int) -> Nb201Space:
        """A copy with ``depth`` cells per stage."""
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        space = copy.copy(self)
        space.cells = depth
        return space

    def state_dict(self) -> dict[str, Any]:
        return {"cells": self.cells, "edge_ops": {k: list(v) for k, v in self._edge_ops.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        edge_ops = {str(k): tuple(str(op) for op in v) for k, v in state["edge_ops"].items()}
        if set(edge_ops) != set(EDGE_NAMES) or any(
            not ops or not set(ops) <= set(CANDIDATES) for ops in edge_ops.values()
        ):
            raise ValueError("nb201 space state names other edges or ops than this space has")
        self.cells = int(state["cells"])
        self._edge_ops = {name: edge_ops[name] for name in EDGE_NAMES}

    def parse_genotype(self, text: str) -> Genotype:
        """The genotype of a NAS-Bench-201 arch string (see :func:`parse_arch`)."""
        return parse_arch(text)

    def describe(self, genotype: Genotype) -> str:
        """NAS-Bench-201's arch string, e.g. ``|nor_conv_3x3~0|+|...~0|...~1|+|...~0|...~1|...~2|``."""
        return arch_string(genotype)

    def benchmark(self) -> Nb201Table:
        """The CIFAR-10 accuracy of every cell, from the ``analog-nasbench`` package's table.

        Raises :class:`~nasplug.core.options.OptionError` (one line, saying how to install it) when
        the package is missing or its file is damaged.
        """
        from .table import installed_table

        return installed_table()
