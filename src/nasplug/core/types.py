"""Small frozen types that the four plugin axes exchange.

A strategy, a space, a relaxation and a dataset never import each other: they only see the
types in this module.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.utils.data

__all__ = [
    "Choice",
    "Costs",
    "Data",
    "Genotype",
    "Group",
    "LinearConstraint",
    "SearchResult",
    "Task",
    "TaskKind",
]

TaskKind = Literal["classification", "regression", "multilabel"]
TASK_KINDS: tuple[str, ...] = ("classification", "regression", "multilabel")


@dataclass(frozen=True)
class Choice:
    """One mixing point of a supernet: a decision among named candidates.

    The trainer keeps one architecture logit per candidate; a relaxation turns the logits of
    a choice into mixing weights, in the order of ``candidates``.
    """

    name: str
    candidates: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError(f"choice {self.name!r} has no candidates")


@dataclass(frozen=True)
class Group:
    """Choices of which exactly ``k`` are used, each with one candidate; the others go unused.

    The DARTS cell declares one group per intermediate node: its incoming edges, of which the
    derive rule keeps two. ``unused`` names the candidate that stands for "this choice is not
    used" (the cell's ``none``); it carries no mass of its own, since a member's unused share is
    one minus the sum of its other weights. A relaxation that knows groups gives every group
    ``k`` units of mass in all; one that does not weighs each choice on its own.

    Attributes:
        name: the group's own name (a cell's node, ``"normal:3"``).
        choices: the names of the member choices (``Choice.name``), each in one group at most.
        k: how many members a genotype uses.
        unused: the candidate that means "not used"; ``""``: none named.
    """

    name: str
    choices: tuple[str, ...]
    k: int
    unused: str = ""

    def __post_init__(self) -> None:
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"group {self.name!r} names a choice twice")
        if not 1 <= self.k <= len(self.choices):
            raise ValueError(
                f"group {self.name!r} uses k={self.k} of {len(self.choices)} "
                f"choices; k must be between 1 and {len(self.choices)}"
            )


@dataclass(frozen=True)
class LinearConstraint:
    """``sum(coefficient * weight)`` over the named (choice, candidate) entries is at most ``bound``.

    A relaxation that knows constraints weighs every group a constraint touches together, so
    that the mixing weights, and the genotype derived from them, meet it. "A cell's mass on
    parameter-free candidates is at most M" is the case of 0/1 coefficients (see
    :func:`nasplug.searchlib.polytope.cap_constraints`); a cost budget would carry each candidate's cost.
    Entries on a group's ``unused`` candidate cost nothing: that candidate carries no mass.

    Example:
        >>> LinearConstraint("normal:parameter-free", (("normal:2<-0", "skip_connect", 1.0),), 2)
        LinearConstraint(name='normal:parameter-free', terms=(('normal:2<-0', 'skip_connect', 1.0),), bound=2)
    """

    name: str
    terms: tuple[tuple[str, str, float], ...]
    bound: float

    def __post_init__(self) -> None:
        entries = [(c, k) for c, k, _ in self.terms]
        if len(set(entries)) != len(entries):
            raise ValueError(f"constraint {self.name!r} names an entry twice")
        bad = [a for _, _, a in self.terms if not (math.isfinite(a) and a >= 0)]
        if bad or not (math.isfinite(self.bound) and self.bound >= 0):
            raise ValueError(
                f"constraint {self.name!r} needs finite coefficients and bound >= 0, got "
                f"{bad[0] if bad else self.bound}"
            )

    def on(self, choices: Sequence[Choice]) -> LinearConstraint:
        """The constraint on ``choices`` only: terms naming a choice or candidate they do not
        have (a space restricted since the constraint was made) left out."""
        have = {(c.name, k) for c in choices for k in c.candidates}
        return LinearConstraint(
            self.name, tuple(t for t in self.terms if (t[0], t[1]) in have), self.bound
        )


@dataclass(frozen=True)
class Costs:
    """What each candidate of a space costs where it sits in the network, for one resource.

    The whole network of a genotype costs ``fixed`` plus the entries of its candidates (see
    :func:`nasplug.searchlib.costs.genotype_cost`); an entry sums every place the network uses that
    candidate (every cell of a type), and a missing entry costs nothing.

    Attributes:
        resource: ``"params"``, ``"flops"`` or ``"latency"``.
        unit: ``""`` for params and FLOPs, ``"ms"`` for latency.
        fixed: what no choice changes (stem, preprocessing, head).
        entries: ``(choice, candidate) -> cost``.
        source: how the costs were made (for latency: device, batch, threads, torch version,
            cache file, built or reused).

    Example:
        >>> c = Costs("params", "", 10.0, {("edge", "conv"): 4.0})
        >>> Costs.from_dict(c.to_dict()) == c
        True
    """

    resource: str
    unit: str
    fixed: float
    entries: Mapping[tuple[str, str], float]
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "entries", {(str(c), str(k)): float(v) for (c, k), v in self.entries.items()}
        )
        object.__setattr__(self, "source", dict(self.source))

    def to_dict(self) -> dict[str, Any]:
        """JSON data: the entries as ``[choice, candidate, cost]`` rows."""
        return {
            "resource": self.resource,
            "unit": self.unit,
            "fixed": self.fixed,
            "entries": [[c, k, v] for (c, k), v in self.entries.items()],
            "source": json.loads(json.dumps(self.source)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Costs:
        """The inverse of :meth:`to_dict`; a KeyError, TypeError or ValueError if malformed."""
        return cls(
            resource=str(d["resource"]),
            unit=str(d["unit"]),
            fixed=float(d["fixed"]),
            entries={(str(c), str(k)): float(v) for c, k, v in d["entries"]},
            source=dict(d.get("source", {})),
        )


@dataclass(frozen=True)
class Task:
    """What the network must map: input shape, number of outputs and the kind of task.

    ``outputs`` is the number of classes (classification), targets (regression) or labels
    (multi-label). ``labels`` optionally names the classes or labels.
    """

    kind: TaskKind
    input_shape: tuple[int, ...]
    outputs: int
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; accepted: {', '.join(TASK_KINDS)}")
        if self.outputs < 1:
            raise ValueError(f"a task needs at least one output, got {self.outputs}")

    @property
    def metric(self) -> str:
        """The headline validation metric of this task kind."""
        return {"classification": "accuracy", "regression": "r2", "multilabel": "bce"}[self.kind]

    @property
    def higher_is_better(self) -> bool:
        return self.kind != "multilabel"

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "outputs": self.outputs,
            "labels": list(self.labels),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        return cls(
            kind=d["kind"],
            input_shape=tuple(d["input_shape"]),
            outputs=int(d["outputs"]),
            labels=tuple(d.get("labels", ())),
        )


@dataclass(frozen=True)
class Data:
    """What a dataset plugin returns: the task and its splits.

    ``train`` is the search data (the trainer halves it into weight and architecture halves
    unless ``val`` gives an explicit architecture split); ``test`` is never used in search.

    A split is either an ``(x, y)`` pair of tensors, with inputs already normalised with train
    statistics (the resident form), or a ``torch.utils.data.Dataset`` whose items are raw
    ``(x, y)`` pairs of arrays or tensors (the streaming form, for data larger than memory).
    The trainer normalises a Dataset's inputs with ``mean`` and ``std`` (per channel for images,
    per input element otherwise), or, when they are None, with statistics it computes in one
    pass over ``train``; it streams Datasets from disk, or loads them into memory when they are
    small (see :class:`nasplug.engine.trainer.Trainer`'s ``stream``).

    Targets: int64 class indices (classification), float (regression, shape [N, outputs]),
    float 0/1 (multi-label, shape [N, outputs]); a Dataset's items hold one such row each.

    For resident splits, ``mean`` and ``std`` record the statistics the inputs were normalised
    with (None when unknown); :meth:`nasplug.SearchRun.prepare` applies them to new inputs.

    ``augment`` is the augmentation this data suits (``standard``, ``no-flip`` or ``off``),
    used when the user gives none; None means ``standard``. ``note`` is one line on what was
    done to the source to make the inputs (e.g. images resized), said when a run starts.
    """

    task: Task
    train: tuple[torch.Tensor, torch.Tensor] | torch.utils.data.Dataset
    test: tuple[torch.Tensor, torch.Tensor] | torch.utils.data.Dataset
    val: tuple[torch.Tensor, torch.Tensor] | torch.utils.data.Dataset | None = None
    name: str = ""
    mean: Sequence[float] | torch.Tensor | None = None
    std: Sequence[float] | torch.Tensor | None = None
    augment: str | None = None
    note: str = ""

    @property
    def streams(self) -> bool:
        """Whether any split is a Dataset read item by item (rather than resident tensors)."""
        splits = (self.train, self.test, self.val)
        return any(isinstance(s, torch.utils.data.Dataset) for s in splits)


@dataclass(frozen=True)
class Genotype:
    """A discrete architecture: which space it belongs to and a JSON-able spec the space reads.

    The ``cell`` space uses DARTS's shape: ``{"normal": [[op, input], ...], "normal_concat":
    [...], "reduce": [...], "reduce_concat": [...]}``. Spaces without a shape of their own use
    ``{"choices": {choice_name: candidate}}``.

    Example:
        >>> g = Genotype("cell", {"normal": [["sep_conv_3x3", 0]], "normal_concat": [2]})
        >>> Genotype.from_json(g.to_json()) == g
        True
    """

    space: str
    spec: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Store a canonical, hashable copy so that genotypes compare and hash by value.
        object.__setattr__(self, "spec", _canonical(self.spec))

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "spec": json.loads(json.dumps(self.spec))}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Genotype:
        if (
            not isinstance(d, Mapping)
            or "space" not in d
            or not isinstance(d.get("spec", {}), Mapping)
        ):
            raise ValueError("a genotype is a JSON object with keys 'space' and 'spec'")
        return cls(str(d["space"]), d.get("spec", {}))

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"genotype is not valid JSON: {e}") from e
        except RecursionError:
            raise ValueError("genotype JSON is nested too deeply") from None
        try:
            return cls.from_dict(d)
        except RecursionError:
            raise ValueError("genotype JSON is nested too deeply") from None

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Read a genotype from JSON or from a DARTS-published string, without ``eval``.

        Accepts ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6),
        reduce=[...], reduce_concat=[2, 3, 4, 5])`` as in DARTS's ``genotypes.py``, optionally
        prefixed by a name (``DARTS_V2 = Genotype(...)``).
        """
        text = text.strip()
        if text.startswith("{"):
            return cls.from_json(text)
        return cls("cell", _parse_darts(text))

    def __str__(self) -> str:
        return json.dumps(self.to_dict()["spec"], sort_keys=True)


class _Spec(dict):
    """A read-only, hashable dict used for ``Genotype.spec``."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(self, sort_keys=True))

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a genotype spec is read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _readonly  # type: ignore[assignment]


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Spec({str(k): _canonical(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"genotype values must be JSON data, got {type(value).__name__}")


_DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_MAX_RANGE = 1024  # a cell's concat lists its nodes: a handful


def _parse_darts(text: str) -> dict[str, Any]:
    m = re.fullmatch(r"(?:[A-Za-z_]\w*\s*=\s*)?Genotype\s*\((.*)\)\s*", text, flags=re.S)
    if not m:
        raise ValueError("not a genotype: expected JSON or DARTS's 'Genotype(normal=[...], ...)'")
    try:
        call = ast.parse(f"f({m.group(1)})", mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"genotype string does not parse: {e.msg}") from e
    except (RecursionError, MemoryError):
        raise ValueError("genotype string is nested too deeply") from None
    assert isinstance(call, ast.Call)
    spec: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg not in _DARTS_FIELDS:
            raise ValueError(
                f"unknown genotype field {kw.arg!r}; accepted: {', '.join(_DARTS_FIELDS)}"
            )
        spec[kw.arg] = _literal(kw.value, kw.arg)
    for name, node in zip(_DARTS_FIELDS, call.args, strict=False):  # positional fields first
        spec[name] = _literal(node, name)
    missing = [f for f in _DARTS_FIELDS if f not in spec]
    if missing:
        raise ValueError(f"genotype string lacks {', '.join(missing)}")
    for cell in ("normal", "reduce"):
        edges = spec[cell]
        if not isinstance(edges, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], int)
            for e in edges
        ):
            raise ValueError(f"genotype field {cell!r} must be a list of (op, input) pairs")
    return spec


def _literal(node: ast.expr, name: str) -> Any:
    """Literal data, plus ``range(a, b)``, which DARTS uses for the concat fields."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
        and 1 <= len(node.args) <= 3
    ):
        bounds = [_literal(a, name) for a in node.args]
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            raise ValueError(f"genotype field {name!r}: range() takes integers")
        if len(bounds) == 3 and bounds[2] == 0:
            raise ValueError(f"genotype field {name!r}: range() step must not be zero")
        r = range(*bounds)
        if len(r) > _MAX_RANGE:
            raise ValueError(
                f"genotype field {name!r}: {r} has {len(r)} elements; at most {_MAX_RANGE} accepted"
            )
        return list(r)
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"genotype field {name!r} is not literal data") from e
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError, RecursionError) as e:  # sets, bytes, complex numbers
        raise ValueError(
            f"genotype field {name!r} holds {type(value).__name__} data; accepted: "
            f"lists, strings and numbers"
        ) from e


@dataclass(frozen=True)
class SearchResult:
    """What a strategy returns: the chosen genotype, final metrics and per-epoch history.

    A strategy that trained a supernet also returns it (``supernet(x, weights)``) with its final
    evaluation ``weights``, for users who look inside it.
    """

    genotype: Genotype
    metrics: Mapping[str, float] = field(default_factory=dict)
    history: Sequence[Mapping[str, Any]] = ()
    candidates: Sequence[Mapping[str, Any]] = ()
    supernet: Any = None
    weights: Mapping[str, Any] | None = None
