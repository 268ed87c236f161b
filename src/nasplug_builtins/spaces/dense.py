"""The ``dense`` search space: blocks of dense layers wired by DAGs over shared weights.

A network is an input projection, ``blocks`` DAG blocks side by side and a linear head. Every
block wires the same ``layers`` dense layers its own way; the blocks' outputs are mixed by the
weights of one choice, ``"block"``, so the search compares wirings rather than operations.

Vertices of a block's DAG are numbered ``0`` (the block input: the projected network input),
``1 .. layers`` (the dense layers) and ``layers + 1`` (the block output). An edge ``(i, j)``
has ``i < j`` and a skip depth ``j - i`` of at most ``max_skip``; this one rule covers the
connections to the input and the output too. A DAG is *valid* when every vertex lies on a path
from the input to the output: every layer is used, none dangles. Drawn edge sets are repaired
into valid ones (see :func:`repair_dag`), so no draw is rejected.

Example:
    >>> from nasplug.core.types import Task
    >>> space = DenseSpace(blocks=3, layers=3, width=16)
    >>> net = space.supernet(Task("classification", (10,), 2))
    >>> w = {"block": torch.tensor([0.5, 0.5, 0.0])}
    >>> net(torch.randn(4, 10), w).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import networkx as nx
import torch
from torch import nn

from nasplug.core.interfaces import SearchSpace, Suggest, Weights
from nasplug.core.types import Choice, Genotype, Task
from nasplug.engine.stats import spearman

__all__ = [
    "ACTIVATIONS",
    "PROPERTIES",
    "DenseNet",
    "DenseSpace",
    "DenseSupernet",
    "band_edges",
    "dag_properties",
    "property_correlations",
    "repair_dag",
    "validate_dag",
]

Edge = tuple[int, int]

#: Activation constructors, by the name the ``activation`` option accepts.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}
MODES: tuple[str, ...] = ("fixed", "sampling")
#: Structural properties of a block, as columns of :meth:`DenseSpace.candidate_table`.
PROPERTIES: tuple[str, ...] = (
    "depth",
    "edges",
    "longest_skip",
    "mean_in_degree",
    "max_in_degree",
    "mean_out_degree",
    "max_out_degree",
)
CHOICE = "block"
SPACE = "dense"
_P_MIN, _P_MAX = 0.05, 0.95
# Draws per new block before a duplicate of a current block is accepted (tiny spaces have few DAGs).
_DISTINCT_TRIES = 64


# ---- DAGs ----------------------------------------------------------------------------------------


def band_edges(layers: int, max_skip: int) -> list[Edge]:
    """Every possible edge ``(i, j)``, ``0 <= i < j <= layers + 1``, ``j - i <= max_skip``, sorted."""
    out = layers + 1
    return [(i, j) for i in range(out) for j in range(i + 1, min(i + max_skip, out) + 1)]


def repair_dag(edges: Iterable[Edge], layers: int) -> list[Edge]:
    """The smallest deterministic completion of ``edges`` into a valid DAG, sorted.

    Going up, a vertex without an incoming edge gets one from the vertex below it; going down,
    a vertex without an outgoing edge gets one to the vertex above it. By induction every
    vertex is then reachable from the input and reaches the output, and the added edges have
    skip depth 1, so no ``max_skip`` is violated.
    """
    out = layers + 1
    chosen = set(edges)
    has_in = {j for _, j in chosen}
    for j in range(1, out + 1):
        if j not in has_in:
            chosen.add((j - 1, j))
    has_out = {i for i, _ in chosen}
    for i in range(out - 1, -1, -1):
        if i not in has_out:
            chosen.add((i, i + 1))
    return sorted(chosen)


def validate_dag(edges: Iterable[Sequence[int]], layers: int, max_skip: int) -> nx.DiGraph:
    """The DAG of ``edges`` as a networkx graph; ValueError if it breaks a rule of the space."""
    out = layers + 1
    g = nx.DiGraph()
    g.add_nodes_from(range(out + 1))
    for edge in edges:
        if len(edge) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in edge):
            raise ValueError(
                f"a dense DAG edge is a pair of vertex numbers [i, j], got {list(edge)!r}"
            )
        i, j = edge
        if not 0 <= i < j <= out:
            raise ValueError(
                f"dense DAG edge [{i}, {j}] is out of range; accepted: 0 <= i < j <= {out} "
                f"(0 is the input, {out} the output)"
            )
        if j - i > max_skip:
            raise ValueError(f"dense DAG edge [{i}, {j}] skips {j - i} > max_skip={max_skip}")
        if g.has_edge(i, j):
            raise ValueError(f"dense DAG edge [{i}, {j}] is listed twice")
        g.add_edge(i, j)
    reached = nx.descendants(g, 0) | {0}
    reaching = nx.ancestors(g, out) | {out}
    loose = sorted(v for v in g if v not in reached or v not in reaching)
    if loose:
        raise ValueError(
            f"dense DAG vertices {loose} are not on a path from the input (0) to the "
            f"output ({out}); every layer must be used"
        )
    return g


def dag_properties(edges: Iterable[Sequence[int]], layers: int) -> dict[str, float]:
    """Depth (longest input-output path, in edges), edge count, longest skip and degree stats.

    Degrees are taken over the ``layers`` dense layers only (the input has no incoming and the
    output no outgoing edges, which would blur the statistics).
    """
    pairs = [(int(i), int(j)) for i, j in edges]
    g = nx.DiGraph()
    g.add_nodes_from(range(layers + 2))
    g.add_edges_from(pairs)
    ins = [g.in_degree(v) for v in range(1, layers + 1)]
    outs = [g.out_degree(v) for v in range(1, layers + 1)]
    return {
        "depth": nx.dag_longest_path_length(g),
        "edges": len(pairs),
        "longest_skip": max(j - i for i, j in pairs),
        "mean_in_degree": sum(ins) / layers,
        "max_in_degree": max(ins),
        "mean_out_degree": sum(outs) / layers,
        "max_out_degree": max(outs),
    }


def _key(edge: Edge) -> str:
    return f"{edge[0]}-{edge[1]}"


# ---- networks ------------------------------------------------------------------------------------


def _propagate(
    h: torch.Tensor,
    incoming: Sequence[Sequence[tuple[int, str]]],
    edge_ops: nn.ModuleDict,
    norms: nn.ModuleList,
    act: nn.Module,
) -> torch.Tensor:
    """Run one DAG: ``incoming[j]`` lists ``(i, key)`` of the edges into vertex ``j``.

    A layer sums its incoming edges' linear maps, then normalises and activates; the output
    vertex sums its incoming layers' activations as they are.
    """
    out = len(incoming) - 1
    values: list[torch.Tensor | None] = [h] + [None] * out
    for j in range(1, out + 1):
        total: torch.Tensor | None = None
        for i, key in incoming[j]:
            v = values[i]
            assert v is not None, "a valid DAG reaches a vertex before it leaves it (i < j)"
            t = v if j == out else edge_ops[key](v)
            total = t if total is None else total + t
        if total is not None:
            values[j] = total if j == out else act(norms[j - 1](total))
    result = values[out]
    assert result is not None, "a valid DAG reaches its output"
    return result


class _Base(nn.Module):
    """Shared parameters: input projection, one linear per edge into a layer, norms and head.

    Parameter names are the same in the supernet and in a discrete network, so a discrete
    network can load the supernet's weights of its edges (``load_state_dict(strict=False)``).
    """

    def __init__(
        self,
        in_features: int,
        outputs: int,
        edges: Sequence[Edge],
        layers: int,
        width: int,
        activation: str,
    ) -> None:
        super().__init__()
        self.layers, self.width = layers, width
        self.stem = nn.Linear(in_features, width)
        # Bias-free edges: the LayerNorm's shift is the layer's one bias, whatever its in-degree.
        self.edge_ops = nn.ModuleDict(
            {_key(e): nn.Linear(width, width, bias=False) for e in edges if e[1] <= layers}
        )
        # LayerNorm keeps a layer's scale independent of how many edges a block feeds into it,
        # and, unlike BatchNorm, keeps no running statistics that blocks would have to share.
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
        self.act = ACTIVATIONS[activation]()
        self.head = nn.Linear(width, outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.stem(x.flatten(1)))


class DenseSupernet(_Base):
    """All blocks over one set of weights; the mask buffer says which edges a block uses.

    ``mask[b, e]`` is True when block ``b`` uses edge ``edges[e]`` (see :func:`band_edges`).
    A masked edge is not computed at all, which is what multiplying its weights by zero would
    give, forward and backward, at no cost. ``skip_zeros`` (default True) skips blocks whose
    mixing weight is exactly 0.0; False computes every block (a dense reference).
    """

    mask: torch.Tensor  # a registered buffer: (blocks, edges) booleans

    def __init__(
        self,
        in_features: int,
        outputs: int,
        dags: Sequence[Sequence[Edge]],
        layers: int,
        width: int,
        max_skip: int,
        activation: str,
    ) -> None:
        edges = band_edges(layers, max_skip)
        super().__init__(in_features, outputs, edges, layers, width, activation)
        self.edges = edges
        self.skip_zeros = True
        self._incoming: list[list[tuple[int, int, str]]] = [[] for _ in range(layers + 2)]
        for e, (i, j) in enumerate(self.edges):
            self._incoming[j].append((e, i, _key((i, j))))
        self._max_skip = max_skip
        self.register_buffer("mask", torch.zeros(len(dags), len(self.edges), dtype=torch.bool))
        for b, dag in enumerate(dags):
            self.set_block(b, dag)

    def set_block(self, b: int, dag: Sequence[Sequence[int]]) -> None:
        """Rewire block ``b`` in place (parameters and optimiser state stay valid)."""
        validate_dag(dag, self.layers, self._max_skip)
        used = {(int(i), int(j)) for i, j in dag}
        row = torch.tensor([e in used for e in self.edges], dtype=torch.bool)
        with torch.no_grad():
            self.mask[b].copy_(row)

    def block_dag(self, b: int) -> list[Edge]:
        """The edges block ``b`` uses, sorted."""
        return [e for e, on in zip(self.edges, self.mask[b].tolist(), strict=True) if on]

    def block_output(self, h: torch.Tensor, row: Sequence[bool]) -> torch.Tensor:
        """One block's output for the embedded input ``h``; ``row`` is its mask row."""
        incoming = [[(i, key) for e, i, key in into if row[e]] for into in self._incoming]
        return _propagate(h, incoming, self.edge_ops, self.norms, self.act)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        w = weights[CHOICE]
        if w.shape != (self.mask.shape[0],):
            raise ValueError(
                f"weights[{CHOICE!r}] must have shape ({self.mask.shape[0]},), got {tuple(w.shape)}"
            )
        h = self.embed(x)
        compute = (w != 0).tolist() if self.skip_zeros else [True] * len(w)
        mixed = None
        for b, (on, row) in enumerate(zip(compute, self.mask.tolist(), strict=True)):
            if not on:
                continue
            y = w[b] * self.block_output(h, row)
            mixed = y if mixed is None else mixed + y
        return self.head(mixed if mixed is not None else torch.zeros_like(h))


class DenseNet(_Base):
    """A discrete MLP wired by one DAG (the network a dense genotype describes)."""

    def __init__(
        self,
        in_features: int,
        outputs: int,
        dag: Sequence[Edge],
        layers: int,
        width: int,
        activation: str,
    ) -> None:
        super().__init__(in_features, outputs, dag, layers, width, activation)
        self.dag = [tuple(e) for e in dag]
        self._incoming: list[list[tuple[int, str]]] = [[] for _ in range(layers + 2)]
        for i, j in self.dag:
            self._incoming[j].append((i, _key((i, j))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(
            _propagate(self.embed(x), self._incoming, self.edge_ops, self.norms, self.act)
        )


class _Block(nn.Module):
    """The DAG part of a :class:`DenseNet` (its edges, norms and activation), from the
    embedded input to the block output: what the choice ``"block"`` picks."""

    def __init__(self, net: DenseNet) -> None:
        super().__init__()
        self.edge_ops, self.norms, self.act = net.edge_ops, net.norms, net.act
        self._incoming = net._incoming

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return _propagate(h, self._incoming, self.edge_ops, self.norms, self.act)


# ---- the space -----------------------------------------------------------------------------------


class DenseSpace(SearchSpace):
    """``blocks`` DAG blocks of ``layers`` dense layers over shared weights, mixed by one choice.

    The weights of edge ``(i, j)`` are one ``nn.Linear`` shared by every block; a block's use
    of it is a mask, so the ``blocks`` blocks cost one set of weights. The choice ``"block"``
    has candidates ``"b0" .. "b{blocks-1}"``; a block whose mixing weight is exactly zero is not
    computed. ``derive`` returns the DAG of the strongest block.

    Graph sampling. A DAG is drawn by keeping each possible edge ``e`` (skip depth at most
    ``max_skip``) with probability ``p_e``, then repaired into a valid DAG (:func:`repair_dag`);
    a draw equal to a current block is redrawn (up to 64 times, for tiny spaces). At the start
    ``p_e = edge_prob`` and the ``blocks`` DAGs are drawn from ``seed``. In mode ``"fixed"``
    they stay. In mode ``"sampling"``, ``on_epoch_end`` (after each evaluation phase) first
    moves every edge probability toward the edges of strong blocks,

        p_e <- clip((1 - learning_rate) * p_e + learning_rate * sum_b s_b * [e in block b],
                    0.05, 0.95),   s_b = max(w_b, 0) / sum_c max(w_c, 0)

    (uniform ``s_b`` if every weight is zero), then replaces the ``replace`` blocks with the
    lowest weights (ties: lower index first) by new draws. Replaced blocks are rewired in
    place, so the supernet and its optimiser stay valid; their names are in ``replaced`` until
    the next call, so a strategy may reset their logits. Every candidate ever wired into a
    block stays in the history that :meth:`candidate_table` reports.

    Args:
        blocks: number of blocks k (candidates of the choice ``"block"``).
        layers: dense layers per block l.
        width: features of every dense layer.
        max_skip: the longest skip ``j - i`` an edge may have (input and output edges included).
        edge_prob: initial probability of every possible edge.
        mode: ``"fixed"`` or ``"sampling"``.
        replace: blocks replaced per sampling round (at most ``blocks``).
        learning_rate: how fast edge probabilities follow the architecture weights, in [0, 1].
        seed: seed of the DAG draws.
        activation: one of ``ACTIVATIONS``.
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {"blocks": 3, "layers": 2, "width": 8}

    def __init__(
        self,
        blocks: int = 8,
        layers: int = 4,
        width: int = 64,
        max_skip: int = 2,
        edge_prob: float = 0.5,
        mode: str = "fixed",
        replace: int = 2,
        learning_rate: float = 0.5,
        seed: int = 0,
        activation: str = "relu",
    ) -> None:
        _require_int("blocks", blocks, 1)
        _require_int("layers", layers, 1)
        _require_int("width", width, 1)
        _require_int("max_skip", max_skip, 1)
        _require_int("seed", seed, None)
        _require_int("replace", replace, 0)
        _require_unit("edge_prob", edge_prob)
        _require_unit("learning_rate", learning_rate)
        if mode not in MODES:
            raise ValueError(f"unknown dense space mode {mode!r}; accepted: {', '.join(MODES)}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; accepted: {', '.join(ACTIVATIONS)}"
            )
        self.layers, self.width, self.max_skip = layers, width, max_skip
        self.edge_prob, self.mode, self.replace = float(edge_prob), mode, min(replace, blocks)
        self.learning_rate, self.seed, self.activation = float(learning_rate), seed, activation
        self.replaced: tuple[str, ...] = ()
        self._edges = band_edges(layers, max_skip)
        self._probs = [self.edge_prob] * len(self._edges)
        self._rng = random.Random(seed)
        self._round = 0
        self._names = [f"b{b}" for b in range(blocks)]
        self._dags: list[list[Edge]] = []
        self._slots: list[int] = []  # history index of the candidate in each block
        self._history: list[dict[str, Any]] = []
        for b in range(blocks):
            self._dags.append(self._draw())
            self._slots.append(self._record(b, self._dags[b]))

    @property
    def blocks(self) -> int:
        return len(self._names)

    # ---- the contract ----------------------------------------------------------------------------
    def choices(self) -> tuple[Choice, ...]:
        return (Choice(CHOICE, tuple(self._names)),)

    def supernet(self, task: Task) -> DenseSupernet:
        return DenseSupernet(
            math.prod(task.input_shape),
            task.outputs,
            self._dags,
            self.layers,
            self.width,
            self.max_skip,
            self.activation,
        )

    def build(self, genotype: Genotype, task: Task) -> DenseNet:
        spec = _read_genotype(genotype)
        return DenseNet(
            math.prod(task.input_shape),
            task.outputs,
            spec["edges"],
            spec["layers"],
            spec["width"],
            spec["activation"],
        )

    def cost_sites(
        self, task: Task
    ) -> dict[tuple[str, str], list[tuple[nn.Module, tuple[int, ...]]]]:
        """Per block, the whole block as :meth:`build` builds it for the block's DAG: its edges'
        linear maps, its layers' norms and activations, on the embedded input ``(1, width)``
        (see :class:`~nasplug.core.interfaces.ReportsCosts`). The input projection and the head are
        what no choice changes. Exact for genotypes of this space's ``width`` and
        ``activation``, which :meth:`derive` gives; :meth:`one_hot` takes no other DAG than a
        current block's. In mode ``"sampling"`` a replaced block costs what its new DAG costs:
        ask again after :meth:`on_epoch_end` replaces blocks.
        """
        sites: dict[tuple[str, str], list[tuple[nn.Module, tuple[int, ...]]]] = {}
        for name, dag in zip(self._names, self._dags, strict=True):
            net = self.build(self._genotype(dag), task)
            sites[(CHOICE, name)] = [(_Block(net), (1, self.width))]
        return sites

    def derive(self, weights: Weights) -> Genotype:
        """The DAG of the block with the largest weight (the first one on ties)."""
        w = self._weights(weights)
        return self._genotype(self._dags[max(range(len(w)), key=lambda b: (w[b], -b))])

    def sample(self, suggest: Suggest) -> Genotype:
        """Each possible edge ``"edge:i-j"`` is ``suggest``-ed from ``[0, 1]``, then repaired."""
        chosen = [e for e in self._edges if suggest(f"edge:{_key(e)}", [0, 1])]
        return self._genotype(repair_dag(chosen, self.layers))

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """Weights selecting the current block whose DAG is the genotype's."""
        spec = _read_genotype(genotype)
        if spec["layers"] == self.layers and spec["edges"] in self._dags:
            b = self._dags.index(spec["edges"])
            return self.block_weights(self._names[b])
        raise ValueError(
            f"the genotype's DAG is none of the current blocks "
            f"({', '.join(self._names)}) of this {self.layers}-layer dense space"
        )

    def restrict(self, keep: Mapping[str, Sequence[str]]) -> DenseSpace:
        """A copy keeping only the blocks named in ``keep["block"]`` (names and DAGs unchanged)."""
        unknown = sorted(set(keep) - {CHOICE})
        if unknown:
            raise ValueError(f"unknown choice {unknown[0]!r} in restrict; accepted: {CHOICE}")
        names = list(keep.get(CHOICE, self._names))
        bad = [n for n in names if n not in self._names]
        if bad or not names or len(set(names)) != len(names):
            raise ValueError(
                f"restrict needs distinct current block names; got {names}, "
                f"accepted: {', '.join(self._names)}"
            )
        new = copy.deepcopy(self)
        kept = [b for b, n in enumerate(self._names) if n in names]
        for b, cid in enumerate(self._slots):
            if b not in kept:
                new._retire(cid, "dropped", None)
        new._names = [self._names[b] for b in kept]
        new._dags = [self._dags[b] for b in kept]
        new._slots = [self._slots[b] for b in kept]
        new.replace = min(self.replace, len(kept))
        new.replaced = ()
        return new

    def with_depth(self, depth: int) -> DenseSpace:
        """A copy with ``layers=depth``; a new depth needs new DAGs, drawn from ``seed``."""
        if depth == self.layers:
            return copy.deepcopy(self)
        new = DenseSpace(
            blocks=self.blocks,
            layers=depth,
            width=self.width,
            max_skip=self.max_skip,
            edge_prob=self.edge_prob,
            mode=self.mode,
            replace=self.replace,
            learning_rate=self.learning_rate,
            seed=self.seed,
            activation=self.activation,
        )
        new._names = list(self._names)
        for b, cid in enumerate(new._slots):
            new._history[cid]["block"] = new._names[b]
        return new

    def on_epoch_end(self, supernet: nn.Module, weights: Weights) -> dict[str, list[str]]:
        """Record the blocks' weights; in mode ``"sampling"`` update and resample (see class doc)."""
        w = self._weights(weights)
        for b, cid in enumerate(self._slots):
            self._history[cid]["weight"] = w[b]
        self.replaced = ()
        if self.mode != "sampling" or self.replace == 0:
            return {}
        net = _find_supernet(supernet, self.blocks)
        self._round += 1
        self._update_probs(w)
        weakest = sorted(sorted(range(len(w)), key=lambda b: (w[b], b))[: self.replace])
        for b in weakest:
            self._retire(self._slots[b], "replaced", w[b])
            self._dags[b] = self._draw()
            self._slots[b] = self._record(b, self._dags[b])
            net.set_block(b, self._dags[b])
        self.replaced = tuple(self._names[b] for b in weakest)
        return {"block": list(self.replaced)}

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            "layers": self.layers,
            "max_skip": self.max_skip,
            "names": list(self._names),
            "dags": [[list(e) for e in dag] for dag in self._dags],
            "slots": list(self._slots),
            "probs": list(self._probs),
            "rng": [version, list(internal), gauss],
            "round": self._round,
            "replaced": list(self.replaced),
            "history": copy.deepcopy(self._history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("layers") != self.layers or state.get("max_skip") != self.max_skip:
            raise ValueError(
                f"dense space state is for layers={state.get('layers')}, "
                f"max_skip={state.get('max_skip')}; this space has layers={self.layers}, "
                f"max_skip={self.max_skip}"
            )
        dags = [[(int(i), int(j)) for i, j in dag] for dag in state["dags"]]
        for dag in dags:
            validate_dag(dag, self.layers, self.max_skip)
        if len(state["probs"]) != len(self._edges) or len(dags) != len(state["names"]):
            raise ValueError("dense space state does not match this space's edges or blocks")
        version, internal, gauss = state["rng"]
        self._rng.setstate((int(version), tuple(int(v) for v in internal), gauss))
        self._names, self._dags = [str(n) for n in state["names"]], dags
        self._slots = [int(c) for c in state["slots"]]
        self._probs = [float(p) for p in state["probs"]]
        self._round = int(state["round"])
        self.replaced = tuple(state.get("replaced", ()))
        self._history = copy.deepcopy([dict(h) for h in state["history"]])
        self.replace = min(self.replace, len(self._names))

    def describe(self, genotype: Genotype) -> str:
        spec = _read_genotype(genotype)
        out = spec["layers"] + 1
        name = {0: "in", out: "out"}
        wiring = " ".join(f"{name.get(i, i)}->{name.get(j, j)}" for i, j in spec["edges"])
        depth = dag_properties(spec["edges"], spec["layers"])["depth"]
        return (
            f"dense: {spec['layers']} layers x {spec['width']} {spec['activation']}, "
            f"depth {depth}: {wiring}"
        )

    # ---- inspection ------------------------------------------------------------------------------
    def block_weights(self, name: str) -> dict[str, torch.Tensor]:
        """One-hot weights computing only block ``name`` (to score each block on its own)."""
        if name not in self._names:
            raise ValueError(f"unknown block {name!r}; accepted: {', '.join(self._names)}")
        return {CHOICE: torch.tensor([float(n == name) for n in self._names])}

    def block_dags(self) -> dict[str, list[list[int]]]:
        """The current DAG of every block, by name."""
        return {n: [list(e) for e in dag] for n, dag in zip(self._names, self._dags, strict=True)}

    def edge_probabilities(self) -> dict[str, float]:
        """The sampling probability of every possible edge, keyed ``"i-j"``."""
        return {_key(e): p for e, p in zip(self._edges, self._probs, strict=True)}

    def record_metrics(self, metrics_by_block: Mapping[str, float]) -> None:
        """Remember a validation metric per current block, kept once the block is replaced."""
        for name, value in metrics_by_block.items():
            if name not in self._names:
                raise ValueError(f"unknown block {name!r}; accepted: {', '.join(self._names)}")
            self._history[self._slots[self._names.index(name)]]["metric"] = float(value)

    def candidates(self, weights: Weights) -> list[dict[str, Any]]:
        """Every candidate block with its DAG properties and weight (see :meth:`candidate_table`)."""
        return self.candidate_table(weights)

    def score_candidates(
        self, weights: Weights, score: Callable[[Weights], float]
    ) -> list[dict[str, Any]]:
        """:meth:`candidates`, each current block scored alone: the supernet with its one-hot
        weights. The scores are kept (:meth:`record_metrics`), so they fill the metric column
        and its rank correlations with the DAG properties."""
        self.record_metrics({name: score(self.block_weights(name)) for name in self._names})
        return self.candidate_table(weights)

    def candidate_table(
        self, weights: Weights | None = None, metrics_by_block: Mapping[str, float] | None = None
    ) -> list[dict[str, Any]]:
        """One row per candidate ever wired into a block: its properties, weight and metric.

        Current blocks take their weight from ``weights`` and metric from ``metrics_by_block``
        when given, else the last recorded ones; removed candidates keep the weight they had
        when replaced (``status`` ``"replaced"``) or dropped by :meth:`restrict` (``"dropped"``).
        """
        current_w = self._weights(weights) if weights is not None else None
        metrics = dict(metrics_by_block or {})
        rows = []
        for cid, rec in enumerate(self._history):
            weight, metric = rec["weight"], rec["metric"]
            if rec["status"] == "current" and cid in self._slots:
                b = self._slots.index(cid)
                weight = current_w[b] if current_w is not None else weight
                metric = float(metrics[rec["block"]]) if rec["block"] in metrics else metric
            rows.append(
                {
                    "candidate": cid,
                    "block": rec["block"],
                    "status": rec["status"],
                    "round_added": rec["round_added"],
                    "round_removed": rec["round_removed"],
                    **dag_properties(rec["edges"], self.layers),
                    "weight": weight,
                    "metric": metric,
                    "dag": [list(e) for e in rec["edges"]],
                }
            )
        return rows

    def candidate_correlations(
        self, weights: Weights | None = None, metrics_by_block: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, float | None]]:
        """Spearman correlation of each block property with weight and metric over all candidates."""
        return property_correlations(self.candidate_table(weights, metrics_by_block))

    # ---- internals -------------------------------------------------------------------------------
    def _genotype(self, dag: Sequence[Edge]) -> Genotype:
        return Genotype(
            SPACE,
            {
                "edges": [list(e) for e in dag],
                "layers": self.layers,
                "width": self.width,
                "max_skip": self.max_skip,
                "activation": self.activation,
            },
        )

    def _draw(self) -> list[Edge]:
        """A valid DAG from the edge probabilities, distinct from the current blocks if possible."""
        for _ in range(_DISTINCT_TRIES):
            dag = repair_dag(
                [
                    e
                    for e, p in zip(self._edges, self._probs, strict=True)
                    if self._rng.random() < p
                ],
                self.layers,
            )
            if dag not in self._dags:
                break
        validate_dag(dag, self.layers, self.max_skip)
        return dag

    def _update_probs(self, w: Sequence[float]) -> None:
        pos = [max(v, 0.0) for v in w]
        total = sum(pos)
        shares = [v / total for v in pos] if total > 0 else [1.0 / len(w)] * len(w)
        lr = self.learning_rate
        for e, edge in enumerate(self._edges):
            used = sum(s for s, dag in zip(shares, self._dags, strict=True) if edge in dag)
            self._probs[e] = min(_P_MAX, max(_P_MIN, (1 - lr) * self._probs[e] + lr * used))

    def _record(self, b: int, dag: Sequence[Edge]) -> int:
        self._history.append(
            {
                "block": self._names[b],
                "edges": [list(e) for e in dag],
                "status": "current",
                "round_added": self._round,
                "round_removed": None,
                "weight": None,
                "metric": None,
            }
        )
        return len(self._history) - 1

    def _retire(self, cid: int, status: str, weight: float | None) -> None:
        rec = self._history[cid]
        rec["status"], rec["round_removed"] = status, self._round
        if weight is not None:
            rec["weight"] = weight

    def _weights(self, weights: Weights) -> list[float]:
        if CHOICE not in weights:
            raise ValueError(
                f"dense space weights need the choice {CHOICE!r}; got {sorted(weights)}"
            )
        w = weights[CHOICE].detach().float().cpu().flatten().tolist()
        if len(w) != self.blocks:
            raise ValueError(
                f"weights[{CHOICE!r}] has {len(w)} values; this space has {self.blocks} blocks"
            )
        return w


def _find_supernet(module: nn.Module, blocks: int) -> DenseSupernet:
    # Wrappers (DDP, torch.compile) hold the supernet as a submodule.
    net = next((m for m in module.modules() if isinstance(m, DenseSupernet)), None)
    if net is None or net.mask.shape[0] != blocks:
        raise ValueError(
            f"on_epoch_end needs this dense space's supernet ({blocks} blocks), "
            f"got {type(module).__name__}"
        )
    return net


def _read_genotype(genotype: Genotype) -> dict[str, Any]:
    """The checked fields of a dense genotype; ValueError naming what is wrong."""
    if genotype.space != SPACE:
        raise ValueError(
            f"genotype is for space {genotype.space!r}; the dense space accepts space {SPACE!r}"
        )
    spec = genotype.spec
    missing = [k for k in ("edges", "layers", "width") if k not in spec]
    if missing:
        raise ValueError(
            f"dense genotype lacks {', '.join(missing)}; accepted keys: edges, layers, "
            f"width, max_skip, activation"
        )
    layers, width = spec["layers"], spec["width"]
    _require_int("genotype layers", layers, 1)
    _require_int("genotype width", width, 1)
    activation = spec.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; accepted: {', '.join(ACTIVATIONS)}")
    edges = spec["edges"]
    if not isinstance(edges, Sequence) or isinstance(edges, str) or not edges:
        raise ValueError("dense genotype edges must be a non-empty list of [i, j] pairs")
    pairs = [
        tuple(e) if isinstance(e, Sequence) and not isinstance(e, str) else (e,) for e in edges
    ]
    max_skip = spec.get("max_skip", layers + 1)
    _require_int("genotype max_skip", max_skip, 1)
    validate_dag(pairs, layers, max_skip)
    return {"edges": sorted(pairs), "layers": layers, "width": width, "activation": activation}


def _require_int(name: str, value: Any, low: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        accepted = "an integer" if low is None else f"an integer >= {low}"
        raise ValueError(f"dense space option {name}={value!r} is invalid; accepted: {accepted}")


def _require_unit(name: str, value: Any) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(
            f"dense space option {name}={value!r} is invalid; accepted: a number in [0, 1]"
        )


# ---- correlations --------------------------------------------------------------------------------


def property_correlations(
    rows: Sequence[Mapping[str, Any]],
    properties: Sequence[str] = PROPERTIES,
    targets: Sequence[str] = ("weight", "metric"),
) -> dict[str, dict[str, float | None]]:
    """``{property: {target: rho}}`` over ``rows`` of :meth:`DenseSpace.candidate_table`."""
    return {
        p: {t: spearman([r[p] for r in rows], [r.get(t) for r in rows]) for t in targets}
        for p in properties
    }
