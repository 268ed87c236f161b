"""Conformance suites for plugins: base test classes whose fixtures a plugin author overrides.

Each suite is a class of pytest tests that checks the contract of one plugin axis. A plugin is
tested by subclassing the suite in a test module and overriding the fixture that builds the
plugin; every other fixture has a default that may be overridden too:

    import pytest
    from nasplug.testing import RelaxationConformance, SpaceConformance

    class TestMyRelaxation(RelaxationConformance):
        @pytest.fixture
        def relaxation(self):
            return MyRelaxation(tau=0.5)

    class TestMySpace(SpaceConformance):
        @pytest.fixture
        def space(self):
            return MySpace(width=4)  # keep it tiny: every check builds a supernet

A plugin that declares its tiny test options (see :func:`tiny_instance`) needs no fixture at
all: set the suite's class attribute ``plugin`` to the plugin class:

    class TestMySpace(SpaceConformance):
        plugin = MySpace  # built as MySpace(**MySpace.test_options)

- :class:`SpaceConformance`: override ``space``; also ``task``, ``inputs``, ``device`` and the
  class attribute ``relaxations``.
- :class:`RelaxationConformance`: override ``relaxation``; also ``device``.
- :class:`StrategyConformance`: override ``strategy``; also ``space``, ``relaxation``, ``task``,
  ``tiny_data``, ``trainer``, ``context``, ``epochs``, ``batch_size``, ``device``.
- :class:`DatasetConformance`: override ``dataset``; also ``data``.

Tests run on the CPU unless the environment variable ``NASPLUG_TEST_DEVICE`` names another
device (``cuda``, ``mps``). The helpers :func:`tiny_data`, :func:`random_suggest`,
:func:`tiny_instance`, :func:`plugin_test_options` and :class:`TinySpace` are usable on their
own.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from nasplug.core import registry
from nasplug.core.interfaces import (
    Constrains,
    Dataset,
    DeclaresParameterFree,
    Relaxation,
    ReportsCosts,
    SearchSpace,
    Strategy,
    Suggest,
    Weights,
)
from nasplug.core.types import Choice, Data, Genotype, Group, SearchResult, Task
from nasplug.engine.streaming import resident
from nasplug.searchlib.costs import candidate_costs, genotype_cost, module_cost
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.polytope import (
    cap_constraints,
    constrained_vertex,
    constraint_layout,
    group_layout,
    nearest_vertex,
)

__all__ = [
    "DatasetConformance",
    "RelaxationConformance",
    "SpaceConformance",
    "StrategyConformance",
    "TinySoftmax",
    "TinySpace",
    "WritesTestFiles",
    "count_module_calls",
    "default_device",
    "random_suggest",
    "plugin_test_options",
    "tiny_data",
    "tiny_instance",
    "zero_every_other",
]

#: The default task of the suites: small single-channel images, three classes.
TINY_TASK = Task("classification", (1, 8, 8), 3)
_BATCH = 4


# ---- helpers ---------------------------------------------------------------------------------
def default_device() -> torch.device:
    """The device the suites run on: ``NASPLUG_TEST_DEVICE``, default ``cpu``."""
    return torch.device(os.environ.get("NASPLUG_TEST_DEVICE", "") or "cpu")


def tiny_data(task: Task = TINY_TASK, n_train: int = 48, n_test: int = 24, seed: int = 0) -> Data:
    """Synthetic, learnable data of ``task``, already normalised like a dataset plugin's.

    Inputs are standard normal; targets depend on the inputs through a fixed random projection,
    so a network can fit them.
    """
    g = torch.Generator().manual_seed(seed)
    dim = math.prod(task.input_shape)
    proj = torch.randn(dim, task.outputs, generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, *task.input_shape, generator=g)
        score = x.reshape(n, dim) @ proj / math.sqrt(dim)
        if task.kind == "classification":
            y = score.argmax(1)
            y[: task.outputs] = torch.arange(task.outputs)  # every class present in every split
            return x, y
        if task.kind == "regression":
            return x, score
        return x, (score > 0).float()

    return Data(task=task, train=split(n_train), test=split(n_test), name="tiny")


def random_suggest(seed: int = 0, calls: list[tuple[str, list[Any]]] | None = None) -> Suggest:
    """A seeded ``suggest(name, options)``; ``calls`` (if given) records every question asked."""
    rng = random.Random(seed)

    def suggest(name: str, options: Sequence[Any]) -> Any:
        options = list(options)
        if calls is not None:
            calls.append((name, options))
        return rng.choice(options)

    return suggest


def zero_every_other(
    choices: Sequence[Choice], device: torch.device | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Positive random weights with exact zeros at every odd candidate index (leaf tensors)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for c in choices:
        w = torch.rand(len(c.candidates), generator=g) + 0.1
        w[1::2] = 0.0
        out[c.name] = (w / w.sum()).to(device).requires_grad_(True)
    return out


def count_module_calls(module: nn.Module, fn: Callable[[], Any]) -> tuple[Any, Counter]:
    """Run ``fn()`` and count the forward calls of every submodule of ``module``, by name."""
    with _counting(module) as calls:
        result = fn()
    return result, calls


@contextlib.contextmanager
def _counting(module: nn.Module) -> Iterator[Counter]:
    """A counter of the forward calls of every submodule of ``module``, by name, while open."""
    calls: Counter = Counter()
    handles = [
        sub.register_forward_hook(lambda *_args, _name=name: calls.update([_name]))
        for name, sub in module.named_modules()
        if name
    ]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _softmax_weights(
    choices: Sequence[Choice], device: torch.device, seed: int
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        c.name: torch.softmax(torch.randn(len(c.candidates), generator=g), 0).to(device)
        for c in choices
    }


def _keep_one(choice: Choice, keep: int, device: torch.device) -> torch.Tensor:
    """Weights of ``choice`` that are exactly zero on every candidate but ``keep``."""
    w = torch.zeros(len(choice.candidates), device=device)
    w[keep % len(w)] = 1.0
    return w


def _scripted(answers: Sequence[int], calls: list[tuple[str, list[Any]]] | None = None) -> Suggest:
    """A ``suggest`` that answers its i-th question with option ``answers[i]`` (modulo)."""
    asked = 0

    def suggest(name: str, options: Sequence[Any]) -> Any:
        nonlocal asked
        options = list(options)
        if calls is not None:
            calls.append((name, options))
        answer = options[answers[asked % len(answers)] % len(options)]
        asked += 1
        return answer

    return suggest


def _network(
    space: SearchSpace, genotype: Genotype, task: Task, inputs: torch.Tensor, device: torch.device
) -> tuple[str, torch.Tensor]:
    """What tells two built networks apart: their module structure, and their outputs on
    ``inputs`` when built from the same seed (in eval mode)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = space.build(genotype, task).to(device).eval()
    with torch.no_grad():
        out = model(inputs)
    return repr(model), out.detach().float().cpu()


def _same_network(a: tuple[str, torch.Tensor], b: tuple[str, torch.Tensor]) -> bool:
    return a[0] == b[0] and a[1].shape == b[1].shape and torch.allclose(a[1], b[1])


def _check_outputs(out: Any, task: Task, n: int) -> None:
    assert isinstance(out, torch.Tensor), f"forward returned {type(out).__name__}, not a tensor"
    assert tuple(out.shape) == (n, task.outputs), (
        f"outputs have shape {tuple(out.shape)}; expected ({n}, {task.outputs})"
    )
    assert torch.isfinite(out).all(), "outputs are not finite"


def _loss(out: torch.Tensor, task: Task) -> torch.Tensor:
    """A loss that reaches every output (targets are irrelevant to the checks)."""
    if task.kind == "classification":
        target = torch.arange(len(out), device=out.device) % task.outputs
        return F.cross_entropy(out.float(), target)
    return out.float().pow(2).mean()


def _check_candidates_named(space: SearchSpace, genotype: Genotype, what: str) -> None:
    """In a genotype of the ``{"choices": {...}}`` shape, every choice names one of its
    candidates (a group member may name the group's ``unused``); ``build`` may be lenient."""
    chosen = genotype.spec.get("choices")
    if not isinstance(chosen, Mapping):
        return  # a spec shape of the space's own: one_hot checks it
    unused = {name: g.unused for g in space.groups() for name in g.choices}
    for c in space.choices():
        if c.name not in chosen:
            continue
        name = chosen[c.name]
        assert name in c.candidates or (c.name in unused and name == unused[c.name]), (
            f"{what} names {name!r} for choice {c.name!r}, which is not among its candidates "
            f"({', '.join(c.candidates)})"
        )


def _row_keys(x: torch.Tensor) -> list[bytes]:
    """One key per row of ``x``: its bytes, so that equal rows have equal keys."""
    return [row.tobytes() for row in x.detach().cpu().contiguous().reshape(len(x), -1).numpy()]


def _saved(state: Any) -> Any:
    """``state`` after a checkpoint round trip (saved, then loaded with ``weights_only=True``)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@runtime_checkable
class WritesTestFiles(Protocol):
    """A plugin capability for tests: its tiny instance reads files, which it writes itself.

    ``write_test_files(folder)``, a classmethod, writes tiny files into the empty ``folder``
    and returns the options that name them; they update the plugin's ``test_options``. The
    suites pass a temporary folder (pytest's ``tmp_path``).
    """

    @classmethod
    def write_test_files(cls, folder: Path) -> Mapping[str, Any]: ...


def plugin_test_options(plugin: type, folder: Path | None = None) -> dict[str, Any]:
    """The options that make a tiny instance of ``plugin``, as the plugin declares them.

    A plugin declares them as a class attribute ``test_options: ClassVar[Mapping[str, Any]]``
    (constructor keyword arguments, typed like ``--*-opt`` values; the axes' base classes
    declare ``{}``, the defaults); a plugin that reads files also has
    :class:`WritesTestFiles`, and its files are written into ``folder``. The conformance
    suites and nasplug's own tests build the plugin with them.
    """
    opts = _options_mapping(plugin, "test_options", getattr(plugin, "test_options", {}))
    if isinstance(plugin, WritesTestFiles):
        if folder is None:
            raise TypeError(
                f"{plugin.__name__} writes the files of its test options: pass a folder for them"
            )
        written = plugin.write_test_files(Path(folder))
        opts.update(_options_mapping(plugin, "write_test_files()", written))
    return opts


def _options_mapping(plugin: type, what: str, opts: Any) -> dict[str, Any]:
    if not isinstance(opts, Mapping) or not all(isinstance(k, str) for k in opts):
        raise TypeError(
            f"{plugin.__name__}.{what} must be a dict of option name to value, "
            f"got {type(opts).__name__}"
        )
    return dict(opts)


def tiny_instance(plugin: type, folder: Path | None = None, /, **overrides: Any) -> Any:
    """``plugin`` built with its :func:`plugin_test_options`, updated by ``overrides``.

    ``folder`` receives the files of a plugin with :class:`WritesTestFiles`. Options are
    checked against the constructor as the CLI checks them: an unknown name or a value of the
    wrong type is a one-line :class:`~nasplug.core.options.OptionError`.
    """
    from nasplug.core.options import instantiate

    name = registry.registered_name(plugin) or plugin.__name__
    options = {**plugin_test_options(plugin, folder), **overrides}
    return instantiate(plugin, options, f"plugin {name!r}")


def _suite_plugin(plugin: type | None, fixture: str, folder: Path) -> Any:
    """The default plugin fixture of a suite: its ``plugin`` class, tiny."""
    if plugin is None:
        raise NotImplementedError(
            f"set the suite's class attribute `plugin` to your {fixture} class, or override "
            f"the `{fixture}` fixture with a tiny instance of it"
        )
    return tiny_instance(plugin, folder)


def _instantiate(axis: str, name: str) -> Any:
    """The registered plugin ``name`` of ``axis``, built with its test options."""
    return tiny_instance(registry.load(axis, name))


# ---- a tiny space and relaxation of the suites' own ------------------------------------------
class TinySpace(SearchSpace):
    """Two choices on flattened inputs: a hidden width and an activation; for quick strategy tests.

    Every candidate is a module of its own, so a zero weight visibly skips it. Genotypes use the
    base class's ``{"choices": {...}}`` shape.

    Args:
        widths: comma-separated hidden widths, the candidates of choice ``"width"``.
        activations: comma-separated names among relu, tanh, sigmoid, identity.
    """

    _ACTS: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "identity": nn.Identity,
    }

    def __init__(self, widths: str = "4,8", activations: str = "relu,tanh,identity") -> None:
        self.widths = tuple(w.strip() for w in widths.split(","))
        if not all(w.isdigit() and int(w) > 0 for w in self.widths):
            raise ValueError(f"widths must be comma-separated positive integers, got {widths!r}")
        self.activations = tuple(a.strip() for a in activations.split(","))
        unknown = [a for a in self.activations if a not in self._ACTS]
        if unknown:
            raise ValueError(
                f"unknown activation {unknown[0]!r}; accepted: {', '.join(self._ACTS)}"
            )

    def choices(self) -> tuple[Choice, ...]:
        return (Choice("width", self.widths), Choice("activation", self.activations))

    def supernet(self, task: Task) -> nn.Module:
        return _TinySupernet(
            math.prod(task.input_shape),
            task.outputs,
            [int(w) for w in self.widths],
            self.activations,
        )

    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        chosen = genotype.spec.get("choices", {})
        if (
            chosen.get("width") not in self.widths
            or chosen.get("activation") not in self.activations
        ):
            raise ValueError(f"not a genotype of this space: {genotype}")
        width = int(chosen["width"])
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(task.input_shape), width),
            self._ACTS[chosen["activation"]](),
            nn.Linear(width, task.outputs),
        )

    def restrict(self, keep: Mapping[str, Sequence[str]]) -> TinySpace:
        space = copy.copy(self)
        for name, attr in (("width", "widths"), ("activation", "activations")):
            if name in keep:
                kept = tuple(k for k in getattr(self, attr) if k in set(keep[name]))
                if not kept:
                    raise ValueError(f"restricting {name!r} to no candidates; keep at least one")
                setattr(space, attr, kept)
        return space


class _TinySupernet(nn.Module):
    def __init__(
        self, features: int, outputs: int, widths: Sequence[int], activations: Sequence[str]
    ) -> None:
        super().__init__()
        self.skip_zeros = True
        self.hidden = max(widths)
        self.widths = nn.ModuleList(nn.Linear(features, w) for w in widths)
        self.acts = nn.ModuleList(TinySpace._ACTS[a]() for a in activations)
        self.head = nn.Linear(self.hidden, outputs)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        x = x.flatten(1)
        shape = (len(x), self.hidden)
        h = self._mix(
            self.widths,
            weights["width"],
            lambda lin: _pad_width(lin(x), self.hidden),
            shape,
        )
        return self.head(self._mix(self.acts, weights["activation"], lambda act: act(h), shape))

    def _mix(
        self,
        ops: nn.ModuleList,
        w: torch.Tensor,
        apply: Callable[[nn.Module], torch.Tensor],
        shape: tuple[int, int],
    ) -> torch.Tensor:
        skip = (w == 0).tolist() if self.skip_zeros else [False] * len(w)
        out: torch.Tensor | None = None
        for k, op in enumerate(ops):
            if skip[k]:
                continue  # exactly zero: not computed, forward or backward
            y = w[k] * apply(op)
            out = y if out is None else out + y
        return w.new_zeros(shape) if out is None else out


def _pad_width(y: torch.Tensor, width: int) -> torch.Tensor:
    """``y`` zero-padded on the right to ``width`` features, so that every width can be mixed."""
    return F.pad(y, (0, width - y.shape[-1]))


class TinySoftmax(Relaxation):
    """``softmax(logits)``: the suites' default relaxation, so they depend on no plugin."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)


class _SkipProbe(nn.Module):
    """The suites' own supernet for the exact-skip check of a relaxation.

    One node sums three edges from a shared hidden layer, of which the derive rule would keep
    two (a :class:`~nasplug.core.types.Group` with ``none`` unused, as in a DARTS cell), then an
    activation is chosen. Every candidate but ``none`` is computed unless its weight is exactly
    zero and ``skip_zeros`` is set; ``none`` is never computed. Edges have parameters, so the
    check covers the gradients of the weights as well as those of the logits.
    """

    EDGES = ("edge:0", "edge:1", "edge:2")
    EDGE_OPS: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
    }
    ACTS: dict[str, Callable[[], nn.Module]] = {
        "identity": nn.Identity,
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
    }
    HIDDEN = 6

    def __init__(self, features: int, outputs: int) -> None:
        super().__init__()
        self.skip_zeros = True
        self.stem = nn.Linear(features, self.HIDDEN)
        self.edges = nn.ModuleList(
            nn.ModuleList(
                nn.Sequential(nn.Linear(self.HIDDEN, self.HIDDEN), op())
                for op in self.EDGE_OPS.values()
            )
            for _ in self.EDGES
        )
        self.acts = nn.ModuleList(act() for act in self.ACTS.values())
        self.head = nn.Linear(self.HIDDEN, outputs)

    @classmethod
    def choices(cls) -> tuple[Choice, ...]:
        return (
            *(Choice(name, ("none", *cls.EDGE_OPS)) for name in cls.EDGES),
            Choice("activation", tuple(cls.ACTS)),
        )

    @classmethod
    def groups(cls) -> tuple[Group, ...]:
        return (Group("node", cls.EDGES, 2, "none"),)

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        h = torch.tanh(self.stem(x.flatten(1)))
        node = h.new_zeros(h.shape)
        for name, ops in zip(self.EDGES, self.edges, strict=True):
            assert isinstance(ops, nn.ModuleList), "each edge holds the list of its candidates"
            w = weights[name]  # w[0] is "none": never computed
            node = node + self._mix(ops, w[1:], h)
        return self.head(self._mix(self.acts, weights["activation"], node))

    def _mix(self, ops: nn.ModuleList, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        skip = (w == 0).tolist() if self.skip_zeros else [False] * len(w)
        out = h.new_zeros(h.shape)
        for k, op in enumerate(ops):
            if not skip[k]:
                out = out + w[k] * op(h)
        return out


def _skip_message(
    key: str, clock: tuple[int, int, int, int], weights: Mapping[str, list[float]]
) -> Callable[[str], str]:
    """The failure message of the exact-skip check for gradient ``key``, given torch's own
    message ``m`` (a function, so the arguments are bound now and formatted only on failure)."""

    def message(m: str) -> str:
        return (
            f"skipping zero weights changed the gradient of {key} at (epoch, epochs, step, "
            f"steps) = {clock}, weights {weights}: set skip_is_exact = False, or give zero "
            f"weights a zero Jacobian\n{m}"
        )

    return message


def _probe_gradients(
    relaxation: Relaxation, seed: int, skip_zeros: bool, device: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, list[float]]]:
    """Gradients of the logits and weights of a :class:`_SkipProbe` under ``relaxation``, in
    float64 (a tensor no computed path reaches counts as a zero gradient), and the weights."""
    task = TINY_TASK
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # seeds every device: a random relaxation draws alike twice
        net = _SkipProbe(math.prod(task.input_shape), task.outputs).to(device, torch.float64)
        net.skip_zeros = skip_zeros
        arch = ArchLogits(_SkipProbe.choices(), groups=_SkipProbe.groups()).to(
            device, torch.float64
        )
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for i, p in enumerate(arch.parameters()):
                # Spread logits, led by another candidate on each choice: sparse relaxations
                # leave some exact zeros and several survivors.
                spread = torch.linspace(1.0, -1.0, len(p), dtype=torch.float64).roll(i)
                p.copy_(spread + 0.3 * torch.randn(len(p), generator=g, dtype=torch.float64))
        x = torch.randn(_BATCH, *task.input_shape, generator=g, dtype=torch.float64).to(device)
        weights = arch.weights(relaxation)
        for name, w in weights.items():
            _no_nan(w, f"the weights of {name}")
        target = torch.arange(_BATCH, device=device) % task.outputs
        F.cross_entropy(net(x, weights), target).backward()  # in float64, unlike _loss
    tensors = {f"logits {n}": t for n, t in arch.items()} | {
        f"parameter {n}": t for n, t in net.named_parameters()
    }
    grads = {k: torch.zeros_like(t) if t.grad is None else t.grad for k, t in tensors.items()}
    return grads, {k: [round(v, 4) for v in w.tolist()] for k, w in weights.items()}


def _no_nan(w: torch.Tensor, what: str) -> None:
    """Fail plainly on NaN weights, before any comparison (NaN != NaN would blame another fault)."""
    assert not bool(torch.isnan(w.detach()).any()), (
        f"weights contain NaN: {what} gave {[round(v, 4) for v in w.detach().flatten().tolist()]}"
    )


def _drive(relax: Relaxation, epochs: int, steps: int) -> Iterator[tuple[int, int, int, int]]:
    """Drive ``relax``'s clock through a whole search as the trainer does (``on_epoch`` before
    each epoch, ``on_step`` before each step), yielding ``(epoch, epochs, step, steps)`` at each
    step."""
    for epoch in range(epochs):
        relax.on_epoch(epoch, epochs)
        for step in range(steps):
            relax.on_step(step, steps)
            yield epoch, epochs, step, steps


def _probe_arch(grouped: bool, device: torch.device) -> ArchLogits:
    """Logits of the exact-skip probe's choices (three edges in a group of which two are used,
    with ``none`` unused, and an activation), spread so that every row and every group has one
    clear maximum; with ``grouped`` the relaxation sees the group."""
    choices = _SkipProbe.choices()
    arch = ArchLogits(choices, groups=_SkipProbe.groups() if grouped else ()).to(device)
    with torch.no_grad():
        for i, p in enumerate(arch.parameters()):
            p.copy_(torch.linspace(1.0, -1.0, len(p)).roll(i) + 0.1 * i)
    return arch


def _observe(relax: Relaxation, device: torch.device) -> dict[str, Any]:
    """What a relaxation gives at its current clock, by name: training weights (seeded) and their
    gradients, evaluation weights, per choice and by group, the penalties and ``frozen()``."""
    seen: dict[str, Any] = {"frozen()": bool(relax.frozen())}
    for grouped in (True, False):
        how = "by group" if grouped else "per choice"
        arch = _probe_arch(grouped, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            train = arch.weights(relax)
        evaluation = arch.eval_weights(relax)
        for name, w in train.items():
            _no_nan(w, f"weights() {how} ({name})")
            _no_nan(evaluation[name], f"eval_weights() {how} ({name})")
            seen[f"weights {how} ({name})"] = w.detach().clone()
            seen[f"evaluation weights {how} ({name})"] = evaluation[name].clone()
        ws = [w for w in train.values() if w.requires_grad]
        if ws:
            torch.stack(
                [(w * torch.arange(1.0, len(w) + 1, device=device)).sum() for w in ws]
            ).sum().backward()
        for name, p in arch.items():
            seen[f"gradient {how} ({name})"] = None if p.grad is None else p.grad.clone()
        for phase in ("arch", "weight"):
            pen = relax.penalty(arch.as_dict(), phase)
            seen[f"{phase} penalty {how}"] = None if pen is None else float(pen.detach())
    return seen


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The names whose values differ between two observations (tensors compared exactly)."""
    out = []
    for key in a:
        x, y = a[key], b.get(key)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            same = x.shape == y.shape and torch.equal(x, y)
        else:
            same = x == y
        if not same:
            out.append(key)
    return out


def _plain(state: Any) -> Any:
    """``state`` with tensors as lists, so that two states compare with ``==``."""
    if isinstance(state, torch.Tensor):
        return state.tolist()
    if isinstance(state, Mapping):
        return {k: _plain(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_plain(v) for v in state]
    return state


def _off_vertex(
    weights: Mapping[str, torch.Tensor], choices: Sequence[Choice], groups: Sequence[Group]
) -> str | None:
    """Why ``weights`` are not a vertex of every group (k members one-hot on candidates they
    keep, the others all zero; a choice outside groups one-hot), or None when they are."""
    for name, k, members in group_layout(choices, groups):
        used = 0
        for member, keep in members:
            w = weights[member].detach().float().cpu()
            row = w[keep]
            rest = torch.ones(len(w), dtype=torch.bool)
            rest[keep] = False
            if bool((w[rest] != 0).any()) or not (
                bool((row == 0).all()) or (int((row == 1).sum()) == 1 and float(row.sum()) == 1)
            ):
                return f"{member} has {[round(v, 4) for v in w.tolist()]}"
            used += int((row == 1).sum())
        if used != k:
            return f"{name} uses {used} member(s), not k={k}"
    return None


def _constant_tiny(ws: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor]) -> list[float]:
    """The entries of ``ws`` in (0, 1e-6] whose gradient with respect to every tensor of
    ``inputs`` is zero: zeros that are not exact (a candidate is skipped only at exactly 0.0)."""
    found = []
    for w in ws:
        for i in ((w.detach() > 0) & (w.detach() <= 1e-6)).nonzero().flatten().tolist():
            grads = (
                torch.autograd.grad(w[i], list(inputs), retain_graph=True, allow_unused=True)
                if w.requires_grad
                else (None,)
            )
            if all(g is None or not bool((g != 0).any()) for g in grads):
                found.append(float(w[i].detach()))
    return found


# ---- suites ----------------------------------------------------------------------------------
class SpaceConformance:
    """The contract of a :class:`~nasplug.core.interfaces.SearchSpace`.

    Override ``space`` (at a tiny size: every check builds a supernet). ``task`` defaults to
    1x8x8 images with three classes; a space for vectors overrides it. The supernet is run under
    every registered relaxation, or those named in the class attribute ``relaxations``.
    """

    #: Relaxation names to run the supernet under; None: every registered relaxation.
    relaxations: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "relaxation_name" in metafunc.fixturenames:
            names = (
                self.relaxations if self.relaxations is not None else registry.names("relaxation")
            )
            metafunc.parametrize("relaxation_name", list(names))

    #: The space class, built with its ``test_options`` (see :func:`tiny_instance`) unless the
    #: ``space`` fixture is overridden.
    plugin: type[SearchSpace] | None = None

    @pytest.fixture
    def space(self, tmp_path: Path) -> SearchSpace:
        return _suite_plugin(self.plugin, "space", tmp_path)

    @pytest.fixture
    def task(self) -> Task:
        return TINY_TASK

    @pytest.fixture
    def device(self) -> torch.device:
        return default_device()

    @pytest.fixture
    def inputs(self, task: Task, device: torch.device) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return torch.randn(_BATCH, *task.input_shape, generator=g).to(device)

    def test_choices_are_named_and_stable(self, space: SearchSpace) -> None:
        choices = space.choices()
        assert isinstance(choices, tuple) and choices, "choices() must be a non-empty tuple"
        assert all(isinstance(c, Choice) for c in choices), "choices() must hold Choice objects"
        names = [c.name for c in choices]
        assert len(set(names)) == len(names), "choice names must be unique"
        for c in choices:
            assert all(isinstance(k, str) for k in c.candidates), f"{c.name}: candidates are names"
            assert len(set(c.candidates)) == len(c.candidates), f"{c.name}: a candidate twice"
        assert space.choices() == choices, "choices() must be stable"

    def test_supernet_forward_backward(
        self,
        space: SearchSpace,
        task: Task,
        inputs: torch.Tensor,
        device: torch.device,
        relaxation_name: str,
    ) -> None:
        relax = _instantiate("relaxation", relaxation_name)
        relax.on_epoch(0, 2)
        relax.on_step(0, 4)
        net = space.supernet(task).to(device)
        assert getattr(net, "skip_zeros", None) is True, "the supernet needs `skip_zeros = True`"
        torch.manual_seed(1)
        arch = ArchLogits(space.choices(), init_scale=0.1, groups=space.groups()).to(device)
        logits = arch.as_dict()
        weights = arch.weights(relax)  # by group where the space has groups and relax knows them
        out = net(inputs, weights)
        _check_outputs(out, task, len(inputs))
        loss = _loss(out, task)
        pen = relax.penalty(logits, "arch")
        if pen is not None:
            loss = loss + pen
        loss.backward()
        grads = [t.grad for t in logits.values() if t.grad is not None]
        assert grads, "no architecture logit received a gradient"
        assert all(torch.isfinite(gr).all() for gr in grads), (
            "architecture gradients are not finite"
        )
        assert any(bool((gr != 0).any()) for gr in grads), "every architecture gradient is zero"
        params = [p.grad for p in net.parameters() if p.grad is not None]
        assert params and all(torch.isfinite(p).all() for p in params), (
            "weight gradients are missing or not finite"
        )

    def test_zero_weights_are_not_computed(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        choices = space.choices()
        if all(len(c.candidates) < 2 for c in choices):
            pytest.skip("no choice has two candidates, so no weight can be zero")
        net = space.supernet(task).to(device)
        results = {}
        for skip in (True, False):
            net.skip_zeros = skip  # type: ignore[assignment]  # torch hints Tensor | Module; any value is set
            net.zero_grad(set_to_none=True)
            weights = zero_every_other(choices, device)
            out, calls = count_module_calls(net, functools.partial(net, inputs, weights))
            _loss(out, task).backward()
            results[skip] = (out.detach(), weights, calls, [p.grad for p in net.parameters()])
        (out_s, w_s, calls_s, g_s), (out_d, w_d, calls_d, g_d) = results[True], results[False]
        assert sum(calls_s.values()) < sum(calls_d.values()), (
            "zero-weight candidates were computed: as many module calls as with skip_zeros=False"
        )
        torch.testing.assert_close(
            out_s, out_d, msg="skipping zero-weight candidates changed the outputs"
        )
        for name, w in w_s.items():
            grad_d = w_d[name].grad
            if w.grad is None and grad_d is None:
                continue
            ws = torch.zeros_like(w) if w.grad is None else w.grad
            wd = torch.zeros_like(w) if grad_d is None else grad_d
            used = w.detach() != 0
            torch.testing.assert_close(
                ws[used], wd[used], msg=f"{name}: skipping changed the gradient of non-zero weights"
            )
        for a, b in zip(g_s, g_d, strict=True):
            if a is None:
                if b is None:
                    continue
                a = torch.zeros_like(b)
            elif b is None:
                b = torch.zeros_like(a)
            torch.testing.assert_close(a, b, msg="skipping changed a weight gradient")

    def test_each_choice_skips_its_zero_weights(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        """Per choice: with every other choice's weights positive and this one's zero but on one
        candidate, the supernet makes fewer module calls than with ``skip_zeros = False``.
        (Totals over all choices at once would hide a supernet that skips in some choices only;
        outputs and gradients are compared in :meth:`test_zero_weights_are_not_computed`.)"""
        choices = space.choices()
        if all(len(c.candidates) < 2 for c in choices):
            pytest.skip("no choice has two candidates, so no weight can be zero")
        net = space.supernet(task).to(device)
        base = _softmax_weights(choices, device, 0)
        with _counting(net) as calls, torch.random.fork_rng(devices=[]), torch.no_grad():
            net.skip_zeros = False  # type: ignore[assignment]  # torch hints Tensor | Module; any value is set
            net(inputs, base)
            dense = calls.total()
            net.skip_zeros = True  # type: ignore[assignment]  # torch hints Tensor | Module; any value is set
            for i, c in enumerate(choices):
                if len(c.candidates) < 2:
                    continue
                calls.clear()
                net(inputs, {**base, c.name: _keep_one(c, i, device)})
                kept = c.candidates[i % len(c.candidates)]
                assert calls.total() < dense, (
                    f"choice {c.name!r}: its zero-weight candidates were computed (all but "
                    f"{kept!r} weigh 0.0, the other choices' weights are positive, yet "
                    f"{calls.total()} module calls, as many as {dense} with skip_zeros=False; "
                    f"does the supernet skip zeros in this choice, and use it at all?)"
                )

    def test_every_parameter_gets_a_gradient_under_softmax(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        """With every candidate weighted (softmax), every parameter of the supernet is used."""
        net = space.supernet(task).to(device)
        torch.manual_seed(0)
        arch = ArchLogits(space.choices(), init_scale=0.1).to(device)
        _loss(net(inputs, arch.weights(TinySoftmax())), task).backward()
        params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        missing = [n for n, p in params if p.grad is None]
        assert not missing, (
            f"{len(missing)} supernet parameter(s) got no gradient with every candidate "
            f"weighted by softmax: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"
        )
        # Every gradient is there (asserted above).
        bad = [n for n, p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"gradients are not finite for {', '.join(bad[:5])}"

    def test_build_honours_the_genotype(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        """Genotypes that differ give different networks (another module structure, or other
        outputs from the same seed and input): for every single decision of ``sample`` that
        changes the genotype, and for differing derived genotypes."""
        rng = random.Random(0)
        answers = [rng.randrange(1 << 16) for _ in range(4096)]
        calls: list[tuple[str, list[Any]]] = []
        base = space.sample(_scripted(answers, calls))
        pairs = []
        for i, (name, options) in enumerate(calls):
            if len(options) > 1:
                other = [*answers[:i], answers[i] + 1, *answers[i + 1 :]]
                pairs.append((f"decision {name!r}", base, space.sample(_scripted(other))))
        derived = [space.derive(_softmax_weights(space.choices(), device, k)) for k in range(3)]
        pairs += [("derive", a, b) for a, b in zip(derived, derived[1:], strict=False)]
        pairs = [(what, a, b) for what, a, b in pairs if a != b]
        if not pairs:
            assert not any(len(options) > 1 for _, options in calls), (
                "sample() ignores the answers of suggest: changing one gives the same genotype"
            )
            pytest.skip("the space has a single genotype")
        built = {}
        for what, a, b in pairs:
            for g in (a, b):
                if g not in built:
                    built[g] = _network(space, g, task, inputs, device)
            assert not _same_network(built[a], built[b]), (
                f"build() gives the same network for genotypes that differ ({what}): "
                f"{space.describe(a)} vs {space.describe(b)}"
            )

    def test_derive_gives_a_genotype_that_builds_and_runs(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        for seed in range(3):
            genotype = space.derive(_softmax_weights(space.choices(), device, seed))
            assert isinstance(genotype, Genotype), (
                f"derive() returned a {type(genotype).__name__}, not a Genotype"
            )
            _check_candidates_named(space, genotype, "derive()")
            self._check_builds(space, genotype, task, inputs, device)

    def test_sample_gives_valid_genotypes(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        for seed in range(3):
            calls: list[tuple[str, list[Any]]] = []
            genotype = space.sample(random_suggest(seed, calls))
            assert isinstance(genotype, Genotype), (
                f"sample() returned a {type(genotype).__name__}, not a Genotype"
            )
            _check_candidates_named(space, genotype, "sample()")
            assert calls, "sample() must take its decisions through suggest"
            for name, options in calls:
                assert isinstance(name, str) and options, f"suggest({name!r}) offered no options"
            again = space.sample(random_suggest(seed))
            assert again == genotype, "the same suggestions must give the same genotype"
            self._check_builds(space, genotype, task, inputs, device)

    def test_genotype_json_round_trip(self, space: SearchSpace, device: torch.device) -> None:
        for genotype in (
            space.derive(_softmax_weights(space.choices(), device, 0)),
            space.sample(random_suggest(1)),
        ):
            text = genotype.to_json()
            assert Genotype.from_json(text) == genotype, f"{text} does not read back from JSON"
            assert Genotype.parse(text) == genotype, f"Genotype.parse does not read back {text}"
            assert Genotype.from_dict(json.loads(json.dumps(genotype.to_dict()))) == genotype, (
                f"{genotype.to_dict()} does not read back from its dict"
            )
            shown = space.describe(genotype)
            assert isinstance(shown, str) and shown.strip(), "describe() gave no text"

    def test_one_hot_selects_the_derived_genotype(
        self, space: SearchSpace, task: Task, inputs: torch.Tensor, device: torch.device
    ) -> None:
        choices, groups = space.choices(), space.groups()
        for seed in range(3):
            hot = space.one_hot(space.derive(_softmax_weights(choices, device, seed)))
            assert set(hot) == {c.name for c in choices}, "one_hot must weigh every choice"
            for c in choices:
                w = hot[c.name]
                assert tuple(w.shape) == (len(c.candidates),), (
                    f"{c.name}: one_hot has the wrong shape"
                )
                assert bool(((w == 0) | (w == 1)).all()), (
                    f"{c.name}: one_hot weights must be 0 or 1"
                )
            off = _off_vertex(hot, choices, groups)
            assert off is None, (
                f"one_hot(derive(w)) is not a vertex ({off}): a derived genotype uses k members "
                f"of every group with one candidate each (nothing on the group's unused "
                f"candidate) and one candidate of every other choice"
            )
        # derive(one_hot(g)) is g up to order (DARTS orders a node's inputs by strength).
        again = space.one_hot(space.derive(hot))
        assert all(torch.equal(again[k], hot[k]) for k in hot), (
            "derive(one_hot(g)) selects another network than g"
        )
        net = space.supernet(task).to(device)
        with torch.no_grad():
            _check_outputs(
                net(inputs, {k: v.to(device) for k, v in hot.items()}), task, len(inputs)
            )

    def test_groups_are_valid_and_their_vertices_derive_to_themselves(
        self, space: SearchSpace, device: torch.device
    ) -> None:
        """At a vertex of every group (k members one-hot, the others zero) the supernet is one
        network, and ``derive`` must name exactly it: ``one_hot(derive(w)) == w``."""
        choices, groups = space.choices(), space.groups()
        assert isinstance(groups, tuple) and all(isinstance(g, Group) for g in groups), (
            "groups() must be a tuple of Group"
        )
        layout = group_layout(choices, groups)  # unknown or shared members are errors
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            raw = {c.name: torch.randn(len(c.candidates), generator=g) for c in choices}
            weights = {c.name: torch.zeros(len(c.candidates)) for c in choices}
            for _, k, members in layout:  # choices outside every group: one-hot on the argmax
                rows = [raw[n][keep] for n, keep in members]
                for (n, keep), v in zip(members, nearest_vertex(rows, k), strict=True):
                    weights[n][keep] = v
            support = space.one_hot(space.derive(weights))
            for name, w in weights.items():
                assert torch.equal(support[name].float(), w), (
                    f"at a vertex, derive names another network than the weights' support "
                    f"({name}: {support[name].tolist()} vs {w.tolist()})"
                )

    def test_declared_parameter_free_candidates_are_its_own(self, space: SearchSpace) -> None:
        """A space that declares parameter-free candidates names its own (choice, candidate)
        entries, each once, and a cap on them is a constraint of its groups."""
        if not isinstance(space, DeclaresParameterFree):
            pytest.skip(f"{type(space).__name__} declares no parameter-free candidates")
        choices = space.choices()
        cells = space.parameter_free()
        candidates = {c.name: c.candidates for c in choices}
        seen: set[tuple[str, str]] = set()
        for cell, entries in cells.items():
            for choice, candidate in entries:
                assert candidate in candidates.get(choice, ()), (
                    f"cell {cell!r} declares {candidate!r} of {choice!r}, not a candidate there"
                )
                assert (choice, candidate) not in seen, f"{choice}/{candidate} declared twice"
                seen.add((choice, candidate))
        large = sum(len(g.choices) for g in space.groups()) + len(choices)
        constraint_layout(
            choices, group_layout(choices, space.groups()), cap_constraints(cells, large)
        )

    def test_reported_costs_are_the_built_networks(self, space: SearchSpace, task: Task) -> None:
        """A space that reports cost sites names its own (choice, candidate) entries, and a
        derived or sampled genotype's summed params and FLOPs are its built network's exactly."""
        if not isinstance(space, ReportsCosts):
            pytest.skip(f"{type(space).__name__} reports no costs")
        candidates = {c.name: c.candidates for c in space.choices()}
        for choice, candidate in space.cost_sites(task):
            assert candidate in candidates.get(choice, ()), (
                f"cost_sites names {candidate!r} of {choice!r}, not a candidate there"
            )
        tables = {r: candidate_costs(space, task, r) for r in ("params", "flops")}
        genotypes = [
            space.derive(_softmax_weights(space.choices(), torch.device("cpu"), seed))
            for seed in range(4)
        ]
        for seed in range(4):
            sampled = space.sample(random_suggest(seed))
            with contextlib.suppress(ValueError):  # a sample need not be a supernet's (dense)
                space.one_hot(sampled)
                genotypes.append(sampled)
        for genotype in genotypes:
            net = space.build(genotype, task)
            for resource, costs in tables.items():
                built = module_cost(net, (1, *task.input_shape), resource)
                assert genotype_cost(space, costs, genotype) == built, (
                    f"{resource} of {genotype} summed from cost_sites is "
                    f"{genotype_cost(space, costs, genotype)}, its built network has {built}: "
                    f"is a site missing, or does what one choice builds depend on another?"
                )

    def test_state_dict_survives_a_checkpoint(self, space: SearchSpace) -> None:
        choices = space.choices()
        space.load_state_dict(_saved(space.state_dict()))
        assert space.choices() == choices, "the choices changed through a state_dict round trip"

    @staticmethod
    def _check_builds(
        space: SearchSpace,
        genotype: Genotype,
        task: Task,
        inputs: torch.Tensor,
        device: torch.device,
    ) -> None:
        model = space.build(genotype, task)
        assert isinstance(model, nn.Module), "build() must return an nn.Module"
        model = model.to(device).train()
        out = model(inputs)
        _check_outputs(out, task, len(inputs))
        _loss(out, task).backward()
        assert any(p.grad is not None for p in model.parameters()), (
            "the built network has no gradients"
        )


class RelaxationConformance:
    """The contract of a :class:`~nasplug.core.interfaces.Relaxation`. Override ``relaxation``."""

    #: Logit vectors every relaxation must handle: near-equal, spread, tied, extreme, single.
    LOGITS: tuple[tuple[float, ...], ...] = (
        (1e-3, -2e-3, 0.0, 5e-4, -1e-3, 2e-3, 0.0, 1e-3),
        (2.0, -1.0, 0.5, 0.0, -3.0),
        (0.0, 0.0, 0.0),
        (80.0, -80.0, 0.0, 1e4),
        (0.3,),
    )
    #: Points of the search (epoch, epochs, step, steps) where the weights are checked.
    CLOCK: tuple[tuple[int, int, int, int], ...] = ((0, 4, 0, 5), (1, 4, 2, 5), (3, 4, 4, 5))
    #: Whole searches (epochs, steps per epoch) over which the schedule is driven, first step
    #: to last, as the trainer drives it.
    RUNS: tuple[tuple[int, int], ...] = ((4, 5), (1, 7))
    #: Groups for the group checks, as member rows (logits without the ``unused`` candidate) and
    #: k: near-equal rows, one member far ahead, spread rows of several lengths, k = members.
    GROUPS: tuple[tuple[tuple[tuple[float, ...], ...], int], ...] = (
        (((1e-3, -2e-3, 0.0, 5e-4, -1e-3), (2.0, -1.0, 0.5, 0.0, -3.0), (0.0, 0.0, 0.0)), 2),
        (((4.0, 3.9, 3.8, -1.0), (-2.0, -1.0, -1.5), (0.1, 0.0, -0.1, 0.2)), 2),
        (((3.0, 2.5), (-1.0, 0.0), (0.5, 0.4), (0.0, -0.3)), 1),
        (((1.0, 0.0, -1.0), (0.5, 0.5, 0.5), (-1.0, 0.0, 1.0), (2.0, -2.0, 0.0)), 3),
        (((0.3,), (80.0, -80.0)), 2),
    )

    #: The relaxation class, built with its ``test_options`` unless ``relaxation`` is overridden.
    plugin: type[Relaxation] | None = None

    @pytest.fixture
    def relaxation(self, tmp_path: Path) -> Relaxation:
        return _suite_plugin(self.plugin, "relaxation", tmp_path)

    @pytest.fixture
    def device(self) -> torch.device:
        return default_device()

    def _logits(self, device: torch.device) -> list[torch.Tensor]:
        return [torch.tensor(v, device=device) for v in self.LOGITS]

    def _groups(
        self, device: torch.device, requires_grad: bool = False
    ) -> list[tuple[list[torch.Tensor], int]]:
        return [
            ([torch.tensor(r, device=device, requires_grad=requires_grad) for r in rows], k)
            for rows, k in self.GROUPS
        ]

    @staticmethod
    def _at(relax: Relaxation, clock: tuple[int, int, int, int]) -> Relaxation:
        epoch, epochs, step, steps = clock
        relax.on_epoch(epoch, epochs)
        relax.on_step(step, steps)
        return relax

    def test_weights_are_finite_and_non_negative(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        for clock in self.CLOCK:
            self._at(relaxation, clock)
            for logits in self._logits(device):
                for fn in (relaxation.weights, relaxation.eval_weights):
                    w = fn(logits)
                    assert isinstance(w, torch.Tensor) and w.shape == logits.shape, (
                        f"weights of {tuple(logits.shape)} logits have shape {tuple(w.shape)}"
                    )
                    assert w.device == logits.device, "weights must stay on the logits' device"
                    _no_nan(w, f"{fn.__name__}({logits.tolist()}) at {clock}")
                    assert torch.isfinite(w).all(), (
                        f"weights not finite for logits {logits.tolist()}"
                    )
                    assert bool((w >= 0).all()), f"negative weights for logits {logits.tolist()}"
                    assert float(w.sum()) > 0, f"all weights zero for logits {logits.tolist()}"

    def test_gradients_reach_the_logits(self, relaxation: Relaxation, device: torch.device) -> None:
        """Wherever the relaxation is not ``frozen()``, the weights have a finite gradient with
        respect to the logits (in a hard phase they are constant, and nothing is asked)."""
        checked = 0
        for clock in self.CLOCK:
            self._at(relaxation, clock)
            if relaxation.frozen():
                continue
            checked += 1
            logits = torch.tensor(self.LOGITS[1], device=device, requires_grad=True)
            torch.manual_seed(0)
            w = relaxation.weights(logits)
            _no_nan(w, f"weights({self.LOGITS[1]}) at {clock}")
            assert w.requires_grad, (
                f"at (epoch, epochs, step, steps) = {clock} frozen() is false, yet the weights do "
                f"not depend on the logits (no gradient): return True from frozen() while they "
                f"are constant"
            )
            (w * torch.arange(1.0, len(w) + 1, device=device)).sum().backward()
            assert logits.grad is not None and torch.isfinite(logits.grad).all(), (
                f"at {clock} the gradient of the weights does not reach the logits, or is not "
                f"finite: {None if logits.grad is None else logits.grad.tolist()}"
            )
        if not checked:
            pytest.skip("the relaxation is frozen() at every point checked")

    def test_eval_weights_are_deterministic(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        for clock in self.CLOCK:
            self._at(relaxation, clock)
            for logits in self._logits(device):
                torch.manual_seed(1)
                a = relaxation.eval_weights(logits)
                torch.manual_seed(2)
                b = relaxation.eval_weights(logits)
                _no_nan(a, f"eval_weights({logits.tolist()}) at {clock}")
                _no_nan(b, f"eval_weights({logits.tolist()}) at {clock}")
                assert torch.equal(a, b), "eval_weights must not depend on random state"

    def test_penalty_is_none_or_a_finite_scalar(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        self._at(relaxation, self.CLOCK[1])
        logits = {
            f"c{i}": torch.tensor(v, device=device, requires_grad=True)
            for i, v in enumerate(self.LOGITS[:3])
        }
        for phase in ("arch", "weight"):
            pen = relaxation.penalty(logits, phase)
            if pen is None:
                continue
            assert isinstance(pen, torch.Tensor) and pen.dim() == 0, "a penalty is a scalar tensor"
            assert torch.isfinite(pen), f"the {phase} penalty is not finite"
            if pen.requires_grad:
                pen.backward()
                assert all(
                    t.grad is None or torch.isfinite(t.grad).all() for t in logits.values()
                ), f"the gradient of the {phase} penalty is not finite"

    def test_state_dict_round_trip(self, relaxation: Relaxation, device: torch.device) -> None:
        """At every step of whole searches, a fresh copy loaded with ``state_dict()`` (through
        ``torch.save`` and a ``weights_only`` load) gives what the original gives: weights,
        gradients, penalties and ``frozen()``. Compared over the whole schedule, since a
        schedule may change the weights in its second half only."""
        initial = copy.deepcopy(relaxation)
        for epochs, steps in self.RUNS:
            relax = copy.deepcopy(initial)
            for clock in _drive(relax, epochs, steps):
                state = _saved(relax.state_dict())
                fresh = copy.deepcopy(initial)
                fresh.load_state_dict(state)
                again = _saved(fresh.state_dict())
                assert again.keys() == state.keys(), (
                    f"state_dict() after load_state_dict has keys {sorted(again)}, "
                    f"not {sorted(state)}"
                )
                differ = _differences(_observe(relax, device), _observe(fresh, device))
                assert not differ, (
                    f"a relaxation loaded from state_dict() at (epoch, epochs, step, steps) = "
                    f"{clock} gives other {', '.join(differ[:3])} than the original: is the "
                    f"schedule's clock missing from state_dict()?"
                )

    def test_the_schedule_advances(self, relaxation: Relaxation, device: torch.device) -> None:
        """A relaxation that keeps a schedule (it overrides ``on_epoch`` or ``on_step``, or has a
        state) changes something over a whole search: its weights or their gradients, a
        penalty, ``frozen()`` or its state. Otherwise its schedule never advances."""
        cls = type(relaxation)
        hooks = [
            n for n in ("on_epoch", "on_step") if getattr(cls, n) is not getattr(Relaxation, n)
        ]
        if not hooks and not relaxation.state_dict():
            pytest.skip("the relaxation keeps no schedule (no clock hooks, no state)")
        for epochs, steps in self.RUNS:
            relax = copy.deepcopy(relaxation)
            first: dict[str, Any] | None = None
            for _ in _drive(relax, epochs, steps):
                seen = {**_observe(relax, device), "state_dict()": _plain(relax.state_dict())}
                if first is None:
                    first = seen
                elif _differences(first, seen):
                    return
        keeps = [*hooks, *(["state_dict"] if relaxation.state_dict() else [])]
        raise AssertionError(
            f"the schedule never advances: the relaxation keeps one (it has "
            f"{', '.join(keeps)}), yet from the first step to the last of searches of "
            f"(epochs, steps) = {', '.join(map(str, self.RUNS))} its weights, their gradients, "
            f"penalties, frozen() and state_dict() stay the same; does on_epoch/on_step "
            f"update the clock the schedule reads?"
        )

    def test_a_hard_phase_lasts_and_is_a_vertex(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        """Where ``frozen()`` turns true during a search (a hard phase), it stays true to the
        last step, and the weights then (training and evaluation, by group and per choice) are a
        vertex, constant in the logits: k members of each group one-hot, the others zero, a
        choice outside every group one-hot. The hard phase trains the derived network."""
        choices, groups = _SkipProbe.choices(), _SkipProbe.groups()
        for epochs, steps in self.RUNS:
            relax = copy.deepcopy(relaxation)
            since: tuple[int, int, int, int] | None = None
            for clock in _drive(relax, epochs, steps):
                if not relax.frozen():
                    assert since is None, (
                        f"frozen() was true at (epoch, epochs, step, steps) = {since} and is "
                        f"false again at {clock}: a hard phase lasts to the end of the search "
                        f"(does the schedule restart every epoch?)"
                    )
                    continue
                since = since or clock
                aware = relax.eval_group_weights([torch.zeros(2, device=device)], 1) is not None
                for grouped in (True, False):
                    arch = _probe_arch(grouped, device)
                    layout = groups if grouped and aware else ()
                    for evaluation in (False, True):
                        torch.manual_seed(0)
                        ws = arch.weights(relax, evaluation=evaluation)
                        for name, w in ws.items():
                            _no_nan(w, f"the weights of {name} at {clock}")
                        off = _off_vertex(ws, choices, layout)
                        kind = "evaluation" if evaluation else "training"
                        assert off is None, (
                            f"frozen() is true from (epoch, epochs, step, steps) = {since} on "
                            f"(a hard phase), yet at {clock} the {kind} weights "
                            f"{'by group' if grouped else 'per choice'} are not a vertex "
                            f"({off}); does the schedule reach its end?"
                        )
                        live = [w for w in ws.values() if w.requires_grad]
                        if live:
                            torch.stack([w.sum() for w in live]).sum().backward()
                        assert all(p.grad is None or not bool(p.grad.any()) for p in arch.logits), (
                            f"frozen() is true at {clock}, yet the {kind} weights depend on the "
                            f"logits (a gradient reaches them)"
                        )

    def test_group_weights_respect_the_group(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        """Where the relaxation weighs groups, every member's row sums to at most 1 and the
        group carries exactly its ``k`` units, at every point checked; evaluation weights do not
        depend on chance."""
        for clock in self.CLOCK:
            self._at(relaxation, clock)
            for fn in (relaxation.group_weights, relaxation.eval_group_weights):
                for rows, k in self._groups(device):
                    torch.manual_seed(1)
                    ws = fn(rows, k)
                    if ws is None:
                        continue
                    what = f"{fn.__name__}(rows, k={k}) at {clock}"
                    assert [w.shape for w in ws] == [r.shape for r in rows], (
                        f"{what} must give one tensor per member, shaped like its row"
                    )
                    for i, w in enumerate(ws):
                        _no_nan(w, what)
                        assert torch.isfinite(w).all() and bool((w >= 0).all()), (
                            f"{what}: member {i}'s weights are negative or not finite: "
                            f"{w.detach().tolist()}"
                        )
                        carried = float(w.detach().sum())
                        assert carried <= 1 + 1e-5, (
                            f"{what}: member {i} of {len(rows)} carries {carried:.3g}; each "
                            f"member's row sums to at most 1 (a member is used at most once)"
                        )
                    total = float(sum(w.detach().sum() for w in ws))
                    assert abs(total - k) <= 1e-4 * k, (
                        f"{what}: a group of {len(rows)} members carries {total:.3g} in all, not "
                        f"exactly k={k}; a group-aware relaxation gives every group the k units "
                        f"of mass its derived network uses"
                    )
            for rows, k in self._groups(device):
                torch.manual_seed(2)
                again = relaxation.eval_group_weights(rows, k)
                torch.manual_seed(3)
                if again is not None:
                    other = relaxation.eval_group_weights(rows, k)
                    assert other is not None, "eval_group_weights gave weights once and None once"
                    assert all(torch.equal(a, b) for a, b in zip(again, other, strict=True)), (
                        "eval_group_weights must not depend on random state"
                    )

    def test_constrained_weights_meet_every_constraint(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        """Where the relaxation meets constraints (:class:`~nasplug.core.interfaces.Constrains`), its
        weights of a block of groups meet every constraint of the block at once (a 0/1 cap on
        each member's first candidate and a real-valued cost on the others), and each group
        keeps its shape: rows of at most 1, ``k`` units in all."""
        if not isinstance(relaxation, Constrains):
            pytest.skip(f"{type(relaxation).__name__} does not meet constraints")
        block = self._groups(device)[:3]
        groups, ks = [rows for rows, _ in block], [k for _, k in block]

        def per_row(values: Callable[[int], list[float]]) -> list[list[torch.Tensor]]:
            return [[torch.tensor(values(len(r)), device=device) for r in rows] for rows in groups]

        cap = per_row(lambda n: [1.0] + [0.0] * (n - 1))
        cost = per_row(lambda n: [0.0] + [0.5 + j for j in range(n - 1)])
        # The least the cost can be with the cap met, plus some room.
        cheapest = constrained_vertex([[-c for c in g] for g in cost], ks, [cap], [1.0])
        least = sum(
            float((v * c).sum())
            for vs, cs in zip(cheapest, cost, strict=True)
            for v, c in zip(vs, cs, strict=True)
        )
        bounds = [1.0, least + 0.75]
        for clock in self.CLOCK:
            self._at(relaxation, clock)
            for evaluation in (False, True):
                torch.manual_seed(1)
                ws = relaxation.constrained_weights(
                    groups, ks, [cap, cost], bounds, evaluation=evaluation
                )
                what = f"constrained_weights(evaluation={evaluation}) at {clock}"
                for rows, k, wg in zip(groups, ks, ws, strict=True):
                    assert [w.shape for w in wg] == [r.shape for r in rows], (
                        f"{what} must give one tensor per member, shaped like its row"
                    )
                    assert all(bool((w >= 0).all()) and float(w.sum()) <= 1 + 1e-5 for w in wg), (
                        f"{what}: a member's weights are negative or sum to more than 1"
                    )
                    total = float(sum(w.detach().sum() for w in wg))
                    assert abs(total - k) <= 1e-4 * k, (
                        f"{what}: a group carries {total:.3g}, not k={k}"
                    )
                for name, costs, bound in zip(("cap", "cost"), (cap, cost), bounds, strict=True):
                    spent = sum(
                        float((w.detach() * c).sum())
                        for wg, cg in zip(ws, costs, strict=True)
                        for w, c in zip(wg, cg, strict=True)
                    )
                    assert spent <= bound * (1 + 1e-4) + 1e-5, (
                        f"{what}: the weights spend {spent:.4g} on the {name}, above its bound "
                        f"{bound:g}"
                    )

    def test_zero_weights_are_exact(self, relaxation: Relaxation, device: torch.device) -> None:
        """Where the relaxation claims ``skip_is_exact``: no weight is a tiny constant (in (0,
        1e-6] with a zero gradient) where an exact zero is due: the supernet skips a candidate
        only at exactly 0.0, so such a weight computes it for nothing."""
        if not type(relaxation).skip_is_exact:
            pytest.skip("the relaxation declares skip_is_exact = False")
        for clock in self.CLOCK:
            self._at(relaxation, clock)
            for values in self.LOGITS:
                logits = torch.tensor(values, device=device, requires_grad=True)
                for fn in (relaxation.weights, relaxation.eval_weights):
                    torch.manual_seed(0)
                    tiny = _constant_tiny([fn(logits)], [logits])
                    assert not tiny, (
                        f"{fn.__name__}({list(values)}) at {clock} gives {tiny[0]:.3g} where an "
                        f"exact zero is due (the weight is constant in the logits): nothing is "
                        f"skipped; return exactly 0.0"
                    )
            for rows, k in self._groups(device, requires_grad=True):
                for gfn in (relaxation.group_weights, relaxation.eval_group_weights):
                    torch.manual_seed(0)
                    ws = gfn(rows, k)
                    tiny = _constant_tiny(ws or [], rows)
                    assert not tiny, (
                        f"{gfn.__name__}(rows, k={k}) at {clock} gives {tiny[0]:.3g} where an "
                        f"exact zero is due (the weight is constant in the logits): nothing is "
                        f"skipped; return exactly 0.0"
                    )

    def test_skipping_zero_weights_is_exact(
        self, relaxation: Relaxation, device: torch.device
    ) -> None:
        """Where the relaxation claims ``skip_is_exact``: on the suite's own small supernet, in
        float64, the gradients of the logits and of the supernet's weights are the same whether
        zero-weight candidates are skipped or computed with their zero weight, over the schedule
        and by group as well as per choice."""
        if not type(relaxation).skip_is_exact:
            pytest.skip("the relaxation declares skip_is_exact = False")
        for clock in self.CLOCK:
            for seed in range(2):
                at = self._at(copy.deepcopy(relaxation), clock)
                sparse, weights = _probe_gradients(copy.deepcopy(at), seed, True, device)
                dense, _ = _probe_gradients(copy.deepcopy(at), seed, False, device)
                for key, g in sparse.items():
                    torch.testing.assert_close(
                        g,
                        dense[key],
                        rtol=1e-10,
                        atol=1e-12,
                        msg=_skip_message(key, clock, weights),
                    )


class StrategyConformance:
    """The contract of a :class:`~nasplug.core.interfaces.Strategy` on a tiny budget.

    Override ``strategy`` (with options that keep it tiny). The search runs on :class:`TinySpace`
    with :class:`TinySoftmax` over :func:`tiny_data`, with a real :class:`nasplug.engine.trainer.Trainer`
    writing into a temporary run directory; override ``space``/``relaxation``/``task`` to change that.
    """

    #: The strategy class, built with its ``test_options`` unless ``strategy`` is overridden.
    plugin: type[Strategy] | None = None

    @pytest.fixture
    def strategy(self, tmp_path: Path) -> Strategy:
        return _suite_plugin(self.plugin, "strategy", tmp_path)

    @pytest.fixture
    def space(self) -> SearchSpace:
        return TinySpace()

    @pytest.fixture
    def relaxation(self) -> Relaxation:
        return TinySoftmax()

    @pytest.fixture
    def task(self) -> Task:
        return TINY_TASK

    @pytest.fixture
    def epochs(self) -> int:
        return 1

    @pytest.fixture
    def batch_size(self) -> int:
        return 16

    @pytest.fixture
    def device(self) -> torch.device:
        return default_device()

    @pytest.fixture
    def tiny_data(self, task: Task) -> Data:
        return tiny_data(task)

    @pytest.fixture
    def trainer(self, tiny_data: Data, tmp_path: Any, device: torch.device) -> Any:
        from nasplug.engine.trainer import Trainer
        from nasplug.run.rundir import RunDir

        run = RunDir.create(tmp_path / "run", {"test": "strategy conformance"})
        return Trainer(tiny_data, run=run, device=str(device), seed=0, quiet=True)

    @pytest.fixture
    def context(
        self,
        space: SearchSpace,
        relaxation: Relaxation,
        trainer: Any,
        tiny_data: Data,
        epochs: int,
        batch_size: int,
    ) -> Any:
        from nasplug.core.interfaces import SearchContext

        return SearchContext(
            space=space,
            relaxation=relaxation,
            trainer=trainer,
            data=tiny_data,
            epochs=epochs,
            batch_size=batch_size,
            seed=0,
            options={
                "storage": None,
                "study": None,
                "tensorboard": False,
                "run_dir": str(trainer.run.path),
            },
        )

    def test_search_returns_a_valid_result(
        self, strategy: Strategy, context: Any, space: SearchSpace, task: Task, device: torch.device
    ) -> None:
        from nasplug.run.rundir import to_json

        result = strategy.search(context)
        assert isinstance(result, SearchResult), "search() must return a SearchResult"
        assert isinstance(result.genotype, Genotype), (
            f"the result's genotype is a {type(result.genotype).__name__}, not a Genotype"
        )
        model = space.build(result.genotype, task).to(device).eval()
        with torch.no_grad():
            _check_outputs(
                model(torch.randn(_BATCH, *task.input_shape, device=device)), task, _BATCH
            )
        assert all(isinstance(k, str) for k in result.metrics), "metric names are strings"
        assert all(isinstance(v, (int, float, str, bool)) for v in result.metrics.values()), (
            "metric values are numbers or text"
        )
        assert f"val_{task.metric}" in result.metrics, f"metrics lack val_{task.metric}"
        for part in ("metrics", "history", "candidates"):
            json.loads(to_json(getattr(result, part)))  # what the run directory stores is JSON
        assert all(isinstance(h, Mapping) for h in result.history), (
            "every record of the result's history is a mapping"
        )
        assert all(isinstance(c, Mapping) for c in result.candidates), (
            "every record of the result's candidates is a mapping"
        )

    def test_search_spends_its_epoch_budget(
        self, strategy: Strategy, context: Any, trainer: Any, epochs: int
    ) -> None:
        """Given ``epochs``, the search trains (it takes optimiser steps) and no training in it
        (a supernet search phase, a network's ``fit``) runs more than ``epochs`` epochs; a
        strategy spends the run's budget, ``ctx.epochs``."""
        events: list[tuple[str, dict[str, Any]]] = []
        updates = 0
        sink, update = trainer.sink, trainer.update

        def record(event: str, fields: Mapping[str, Any]) -> None:
            events.append((event, dict(fields)))
            if sink is not None:
                sink(event, fields)

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal updates
            updates += 1
            return update(*args, **kwargs)

        trainer.sink, trainer.update = record, counted
        try:
            strategy.search(context)
        finally:
            trainer.sink, trainer.update = sink, update
        trained = Counter(
            str(f.get("phase")) for e, f in events if e in ("search_epoch", "train_epoch")
        )
        assert updates or trained, (
            f"the search was given epochs={epochs} and trained nothing (no optimiser step through "
            f"trainer.update, no epoch of search_supernet or trainer.fit): it ignores the epoch "
            f"budget"
        )
        over = {phase: n for phase, n in trained.items() if n > epochs}
        assert not over, (
            f"the search was given epochs={epochs}, yet its phase "
            f"{next(iter(over))!r} trained {next(iter(over.values()))} epochs: it ignores the "
            f"epoch budget (ctx.epochs); an option of the strategy's own that sets epochs needs "
            f"a tiny value in test_options"
        )


class DatasetConformance:
    """The contract of a :class:`~nasplug.core.interfaces.Dataset`. Override ``dataset`` (small options)."""

    #: The dataset class, built with its ``test_options`` unless ``dataset`` is overridden.
    plugin: type[Dataset] | None = None

    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Dataset:
        return _suite_plugin(self.plugin, "dataset", tmp_path)

    @pytest.fixture
    def data(self, dataset: Dataset) -> Data:
        return resident(dataset.load())  # a streaming dataset's splits, read into tensors

    def test_load_gives_valid_data(self, data: Data) -> None:
        assert isinstance(data, Data) and isinstance(data.task, Task), (
            "load() must return a Data holding a Task"
        )
        task = data.task
        splits = {"train": data.train, "test": data.test}
        if data.val is not None:
            splits["val"] = data.val
        for split, pair in splits.items():
            assert not isinstance(pair, TorchDataset), f"{split}: resident() left a Dataset"
            x, y = pair
            assert x.dtype == torch.float32, f"{split} inputs are {x.dtype}, not float32"
            assert tuple(x.shape[1:]) == tuple(task.input_shape), (
                f"{split} inputs have shape {tuple(x.shape)}; task says {task.input_shape}"
            )
            assert len(x) == len(y) > 0, f"{split}: {len(x)} inputs but {len(y)} targets"
            assert torch.isfinite(x).all(), f"{split} inputs are not finite"
            if task.kind == "classification":
                assert y.dtype == torch.int64 and y.dim() == 1, (
                    f"{split} targets must be int64 of shape (N,)"
                )
                assert int(y.min()) >= 0 and int(y.max()) < task.outputs, (
                    f"{split} classes out of range"
                )
            elif task.kind == "regression":
                assert y.is_floating_point() and tuple(y.shape[1:]) == (task.outputs,), (
                    f"{split} regression targets must be float of shape (N, {task.outputs})"
                )
                assert torch.isfinite(y).all(), f"{split} targets are not finite"
            else:
                assert y.is_floating_point() and tuple(y.shape[1:]) == (task.outputs,), (
                    f"{split} multi-label targets must be float of shape (N, {task.outputs})"
                )
                assert bool(((y == 0) | (y == 1)).all()), (
                    f"{split} multi-label targets must be 0 or 1"
                )
        assert not task.labels or len(task.labels) == task.outputs, "one label name per output"

    def test_train_inputs_are_normalised(self, data: Data) -> None:
        x = data.train[0].double()
        assert abs(float(x.mean())) < 0.1, (
            f"train inputs have mean {float(x.mean()):.3f}, not about 0"
        )
        assert 0.5 < float(x.std()) < 1.5, (
            f"train inputs have std {float(x.std()):.3f}, not about 1"
        )

    def test_test_split_is_held_out(self, data: Data) -> None:
        """No more than 1% of the test rows (exact duplicates occur in real data) are also rows
        of the train or val inputs: a test split that overlaps them scores what was learnt."""
        test = _row_keys(data.test[0])
        for split in ("train", "val"):
            pair = getattr(data, split)
            if pair is None:
                continue
            seen = set(_row_keys(pair[0]))
            shared = sum(key in seen for key in test)
            assert shared <= 0.01 * len(test), (
                f"{shared} of {len(test)} test rows are also in {split}: the test split must be "
                f"held out from {split}"
            )

    def test_load_is_deterministic(self, dataset: Dataset, data: Data) -> None:
        again = resident(dataset.load())
        assert torch.equal(again.train[0], data.train[0]) and torch.equal(
            again.train[1], data.train[1]
        ), "load() gave another train split the second time"
        assert torch.equal(again.test[0], data.test[0]) and torch.equal(
            again.test[1], data.test[1]
        ), "load() gave another test split the second time"
