"""A multi-layer perceptron space: one choice of width and one of activation per layer.

It keeps nasplug's default ``derive`` (the strongest candidate of every choice), ``sample``
and ``one_hot``, so its genotypes have the shape ``{"choices": {choice: candidate}}``.

Example:
    >>> from nasplug.core.types import Task
    >>> space = MlpSpace(layers=2, widths="8,16")
    >>> [c.name for c in space.choices()]
    ['width:layer1', 'activation:layer1', 'width:layer2', 'activation:layer2']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nasplug.core.interfaces import SearchSpace, Weights
from nasplug.core.types import Choice, Genotype, Task

__all__ = ["ACTIVATIONS", "MlpSpace"]

#: Activation constructors by candidate name.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def _names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{what} must be distinct comma-separated names, got {text!r}")
    return names


class MlpSpace(SearchSpace):
    """``layers`` hidden layers, each choosing its width and its activation.

    The supernet computes every width candidate of a layer as its own linear map (zero-padded
    to the widest), mixes them with the layer's width weights, then mixes the activations.
    Candidates whose weight is exactly zero are not computed.

    Args:
        layers: number of hidden layers.
        widths: comma-separated candidate widths.
        activations: comma-separated candidate activations (relu, gelu, tanh, silu, identity).
    """

    #: Options of a tiny instance, for the conformance suites (``nasplug.testing``).
    test_options: ClassVar[dict[str, Any]] = {"layers": 2, "widths": "4,8"}

    def __init__(
        self,
        layers: int = 2,
        widths: str = "16,32,64",
        activations: str = "relu,tanh,gelu,identity",
    ) -> None:
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        self.layers = layers
        self.widths = _names(widths, "widths")
        if not all(w.isdigit() and int(w) > 0 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {widths!r}")
        self.activations = _names(activations, "activations")
        unknown = [a for a in self.activations if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(
                f"unknown activation {unknown[0]!r}; accepted: {', '.join(ACTIVATIONS)}"
            )

    def choices(self) -> tuple[Choice, ...]:
        out = []
        for i in range(1, self.layers + 1):
            out += [
                Choice(f"width:layer{i}", self.widths),
                Choice(f"activation:layer{i}", self.activations),
            ]
        return tuple(out)

    def supernet(self, task: Task) -> nn.Module:
        return MlpSupernet(
            math.prod(task.input_shape),
            task.outputs,
            self.layers,
            [int(w) for w in self.widths],
            self.activations,
        )

    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        chosen = genotype.spec.get("choices")
        names = [c.name for c in self.choices()]
        if not isinstance(chosen, dict) or sorted(chosen) != sorted(names):
            raise ValueError(
                f"not an mlp genotype of {self.layers} layers: it needs choices {', '.join(names)}"
            )
        modules: list[nn.Module] = [nn.Flatten()]
        features = math.prod(task.input_shape)
        for i in range(1, self.layers + 1):
            width, act = chosen[f"width:layer{i}"], chosen[f"activation:layer{i}"]
            if width not in self.widths or act not in self.activations:
                raise ValueError(f"layer {i} of the genotype ({width}, {act}) is not in this space")
            modules += [nn.Linear(features, int(width)), ACTIVATIONS[act]()]
            features = int(width)
        modules.append(nn.Linear(features, task.outputs))
        return nn.Sequential(*modules)

    def describe(self, genotype: Genotype) -> str:
        chosen = genotype.spec.get("choices", {})
        layers = [
            f"{chosen.get(f'width:layer{i}')} {chosen.get(f'activation:layer{i}')}"
            for i in range(1, self.layers + 1)
        ]
        return "mlp: " + " -> ".join(layers)


class MlpSupernet(nn.Module):
    """Every layer mixes its width candidates, then its activation candidates."""

    def __init__(
        self,
        features: int,
        outputs: int,
        layers: int,
        widths: Sequence[int],
        activations: Sequence[str],
    ) -> None:
        super().__init__()
        self.skip_zeros = True
        self.hidden = max(widths)
        self.names = [(f"width:layer{i}", f"activation:layer{i}") for i in range(1, layers + 1)]
        self.linears = nn.ModuleList(
            nn.ModuleList(nn.Linear(features if i == 0 else self.hidden, w) for w in widths)
            for i in range(layers)
        )
        self.acts = nn.ModuleList(
            nn.ModuleList(ACTIVATIONS[a]() for a in activations) for _ in range(layers)
        )
        self.head = nn.Linear(self.hidden, outputs)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        h = x.flatten(1)
        order = [name for pair in self.names for name in pair]
        # One host transfer per forward tells which candidates to skip.
        zero = (torch.cat([weights[n] for n in order]) == 0).tolist() if self.skip_zeros else None
        at = 0
        for (wn, an), linears, acts in zip(self.names, self.linears, self.acts, strict=True):
            skip_w = zero[at : at + len(linears)] if zero else None
            at += len(linears)
            skip_a = zero[at : at + len(acts)] if zero else None
            at += len(acts)
            inp = h
            h = _mix(
                linears,
                weights[wn],
                skip_w,
                lambda lin, inp=inp: F.pad(lin(inp), (0, self.hidden - lin.out_features)),
            )
            h = inp.new_zeros(len(inp), self.hidden) if h is None else h
            mid = h
            h = _mix(acts, weights[an], skip_a, lambda act, mid=mid: act(mid))
            h = mid.new_zeros(mid.shape) if h is None else h
        return self.head(h)


def _mix(
    ops: nn.ModuleList,
    w: torch.Tensor,
    skip: Sequence[bool] | None,
    apply: Callable[[nn.Module], torch.Tensor],
) -> torch.Tensor | None:
    out = None
    for k, op in enumerate(ops):
        if skip is not None and skip[k]:
            continue  # weight exactly zero: not computed, forward or backward
        y = w[k] * apply(op)
        out = y if out is None else out + y
    return out
