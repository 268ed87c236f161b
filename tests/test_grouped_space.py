"""A grouped third-party space with only the required methods: the defaults honour its groups.

``NodeSpace`` declares ``choices``, ``groups``, ``supernet`` and ``build`` and nothing else: one
node sums two of three edges, each from an input of its own (a :class:`~nasplug.core.types.Group`
with k = 2, ``none`` unused), then an activation is chosen. ``sample``, ``derive`` and ``one_hot`` are
``SearchSpace``'s defaults, and it passes the space suite and the strategy suite.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from nasplug.core import registry
from nasplug.core.interfaces import SearchSpace, Weights
from nasplug.core.types import Choice, Genotype, Group, Task
from nasplug.searchlib.polytope import is_vertex
from nasplug.testing import (
    SpaceConformance,
    StrategyConformance,
    TinySoftmax,
    random_suggest,
    tiny_instance,
)

OPS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
ACTS = {"identity": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh}
EDGES = ("edge:0", "edge:1", "edge:2")
HIDDEN = 6


class NodeSpace(SearchSpace):
    """Two of three edges into one node, each with an op; then an activation.

    Args:
        ops: comma-separated edge candidates: relu, tanh, sigmoid and ``none`` (edge unused),
            in any order.
    """

    def __init__(self, ops: str = "relu,none,tanh,sigmoid") -> None:
        self.ops = tuple(o.strip() for o in ops.split(","))

    def choices(self) -> tuple[Choice, ...]:
        return (*(Choice(e, self.ops) for e in EDGES), Choice("activation", tuple(ACTS)))

    def groups(self) -> tuple[Group, ...]:
        return (Group("node", EDGES, 2, "none"),)

    def supernet(self, task: Task) -> nn.Module:
        return NodeSupernet(math.prod(task.input_shape), task.outputs, self.ops)

    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        chosen = genotype.spec["choices"]
        return NodeNetwork(math.prod(task.input_shape), task.outputs, chosen)


def _edge(op: str) -> nn.Module:
    return nn.Sequential(nn.Linear(HIDDEN, HIDDEN), OPS[op]())


class NodeSupernet(nn.Module):
    def __init__(self, features: int, outputs: int, ops: tuple[str, ...]) -> None:
        super().__init__()
        self.skip_zeros = True
        self.ops = ops
        self.inputs = nn.ModuleList(nn.Linear(features, HIDDEN) for _ in EDGES)
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: _edge(op) for op in ops if op != "none"}) for _ in EDGES
        )
        self.acts = nn.ModuleList(act() for act in ACTS.values())
        self.head = nn.Linear(HIDDEN, outputs)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        x = x.flatten(1)
        node = x.new_zeros(len(x), HIDDEN)
        for name, inp, edge in zip(EDGES, self.inputs, self.edges, strict=True):
            h = torch.tanh(inp(x))  # computed whether or not the edge is used: a fixed input
            w = weights[name]
            zero = (w == 0).tolist() if self.skip_zeros else [False] * len(w)
            for k, op in enumerate(self.ops):
                if op == "none" or zero[k]:
                    continue  # none is never computed; a zero weight is skipped
                node = node + w[k] * edge[op](h)
        w = weights["activation"]
        zero = (w == 0).tolist() if self.skip_zeros else [False] * len(w)
        out = torch.zeros_like(node)
        for k, act in enumerate(self.acts):
            if not zero[k]:
                out = out + w[k] * act(node)
        return self.head(out)


class NodeNetwork(nn.Module):
    def __init__(self, features: int, outputs: int, chosen: dict[str, Any]) -> None:
        super().__init__()
        used = [i for i, e in enumerate(EDGES) if chosen[e] != "none"]
        self.inputs = nn.ModuleDict({str(i): nn.Linear(features, HIDDEN) for i in used})
        self.edges = nn.ModuleDict({str(i): _edge(chosen[EDGES[i]]) for i in used})
        self.act = ACTS[chosen["activation"]]()
        self.head = nn.Linear(HIDDEN, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        node = x.new_zeros(len(x), HIDDEN)
        for i, edge in self.edges.items():
            node = node + edge(torch.tanh(self.inputs[i](x)))
        return self.head(self.act(node))


# ---- the defaults honour the group ---------------------------------------------------------------
def test_sample_uses_exactly_k_members_each_with_an_op():
    space = NodeSpace()
    seen = set()
    for seed in range(20):
        calls: list[tuple[str, list[Any]]] = []
        chosen = space.sample(random_suggest(seed, calls)).spec["choices"]
        used = [e for e in EDGES if chosen[e] != "none"]
        assert len(used) == 2, chosen
        assert chosen["activation"] in ACTS
        assert all(chosen[e] in OPS for e in used)
        assert ("node:members", ["0,1", "0,2", "1,2"]) in calls
        assert all("none" not in options for name, options in calls if name in EDGES)
        seen.add(tuple(used))
    assert len(seen) == 3  # every pair of edges is drawn


def test_one_hot_is_the_vertex_with_nothing_on_unused():
    space = NodeSpace()
    genotype = Genotype(
        "NodeSpace",
        {"choices": {"edge:0": "tanh", "edge:1": "none", "edge:2": "relu", "activation": "relu"}},
    )
    hot = space.one_hot(genotype)
    assert hot["edge:0"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert hot["edge:1"].tolist() == [0.0, 0.0, 0.0, 0.0]  # unused: no mass on none
    assert hot["edge:2"].tolist() == [1.0, 0.0, 0.0, 0.0]
    keep = [0, 2, 3]  # the candidates other than none
    assert is_vertex([hot[e][keep] for e in EDGES], 2)
    assert space.derive(hot) == genotype


def test_one_hot_refuses_what_is_not_a_genotype_of_the_space():
    space = NodeSpace()
    three = {"edge:0": "tanh", "edge:1": "relu", "edge:2": "relu", "activation": "relu"}
    with pytest.raises(ValueError, match="uses 3 choices of group 'node'; it uses exactly k=2"):
        space.one_hot(Genotype("NodeSpace", {"choices": three}))
    swish = {**three, "edge:1": "none", "activation": "swish"}
    with pytest.raises(ValueError, match="names 'swish' for choice 'activation'; candidates"):
        space.one_hot(Genotype("NodeSpace", {"choices": swish}))


def test_derive_keeps_the_strongest_members_by_their_best_op_whatever_the_order():
    # none weighs most on every edge; the edges' best other ops rank edge:2, edge:0, edge:1.
    by_op = {
        "edge:0": {"relu": 0.2, "tanh": 0.1, "sigmoid": 0.05, "none": 0.65},
        "edge:1": {"relu": 0.1, "tanh": 0.15, "sigmoid": 0.05, "none": 0.7},
        "edge:2": {"relu": 0.05, "tanh": 0.1, "sigmoid": 0.3, "none": 0.55},
        "activation": {"identity": 0.2, "relu": 0.5, "tanh": 0.3},
    }
    expected = {"edge:0": "relu", "edge:1": "none", "edge:2": "sigmoid", "activation": "relu"}
    for ops in ("none,relu,tanh,sigmoid", "relu,none,tanh,sigmoid", "sigmoid,tanh,relu,none"):
        space = NodeSpace(ops)
        weights = {
            c.name: torch.tensor([by_op[c.name][k] for k in c.candidates]) for c in space.choices()
        }
        assert space.derive(weights).spec["choices"] == expected, ops


# ---- the suites, with nothing but the required methods -------------------------------------------
class TestNodeSpace(SpaceConformance):
    plugin = NodeSpace


STRATEGIES = {
    "darts": ({}, "sparsemax"),
    "random": ({"candidates": 2, "train_epochs": 1}, None),
    "tpe": ({"trials": 2, "train_epochs": 1, "startup_trials": 1}, None),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
class TestStrategiesOnNodeSpace(StrategyConformance):
    @pytest.fixture
    def strategy(self, name):
        return tiny_instance(registry.load("strategy", name), **STRATEGIES[name][0])

    @pytest.fixture
    def space(self):
        return NodeSpace()

    @pytest.fixture
    def relaxation(self, name):
        relax = STRATEGIES[name][1]
        return tiny_instance(registry.load("relaxation", relax)) if relax else TinySoftmax()
