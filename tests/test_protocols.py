"""The contracts as declared: what a strategy may use of the trainer and run directory, the
optional capabilities of spaces, typed context fields, and a space with only the three required
methods searched end to end."""

from __future__ import annotations

import ast
import inspect
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import nasplug.core
from nasplug.core import registry
from nasplug.core.interfaces import (
    DeclaresGroups,
    DeclaresParameterFree,
    DropsCandidates,
    OffersBenchmark,
    ParsesGenotype,
    Progressive,
    ReplacesCandidates,
    ReportsCosts,
    ScoresCandidates,
    SearchContext,
    SearchSpace,
    Stateful,
    Weights,
    groups_of,
)
from nasplug.core.protocols import MetricAccumulator, RunView, TrainerView
from nasplug.core.types import Choice, Genotype, Task
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.supernet import first_order_step, search_supernet, supernet_result
from nasplug.searchlib.unrolled import second_order_step
from nasplug.testing import TinySoftmax, TinySpace, tiny_data
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.spaces.dense import DenseSpace
from nasplug_builtins.spaces.nb201 import Nb201Space
from nasplug_builtins.strategies.darts import Darts

VECTORS = Task("classification", (4,), 3)


def _members(protocol: type) -> list[str]:
    """The names a Protocol declares (methods, properties and attributes), its own only."""
    names = set(protocol.__dict__.get("__annotations__", {}))
    names |= {
        name
        for name, value in protocol.__dict__.items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }
    return sorted(names)


def _accepts(implementation: Any, declared: Any) -> list[str]:
    """The parameters of ``declared`` that ``implementation`` does not take as declared."""
    have = inspect.signature(implementation).parameters
    if any(p.kind is p.VAR_KEYWORD for p in have.values()):
        return []
    wrong = []
    for name, p in inspect.signature(declared).parameters.items():
        if name == "self" or p.kind is p.VAR_KEYWORD:
            continue
        mine = have.get(name)
        if mine is None or (p.default is not p.empty and mine.default is p.empty):
            wrong.append(name)
    return wrong


# ---- the trainer and the run directory as a strategy sees them ---------------------------------
def test_the_engine_trainer_and_run_directory_are_what_strategies_are_promised(tmp_path):
    trainer = Trainer(tiny_data(VECTORS), run=RunDir.create(tmp_path / "run", {}), device="cpu")
    assert isinstance(trainer, TrainerView)
    assert isinstance(trainer.run, RunView)
    assert isinstance(trainer.metrics(), MetricAccumulator)
    for name in _members(TrainerView):
        declared = getattr(TrainerView, name)
        if callable(declared):
            assert not _accepts(getattr(Trainer, name), declared), name


def test_the_trainer_view_is_exactly_what_strategies_and_their_library_use():
    root = Path(__file__).parents[1]
    sources = [
        *(root / "src/nasplug_builtins/strategies").glob("*.py"),
        *(root / "src/nasplug/searchlib").glob("*.py"),
        *(root / "examples/nasplug-example-plugin/src").rglob("*.py"),
    ]
    used = {m for p in sources for m in re.findall(r"\btrainer\.([a-z_]+)", p.read_text())}
    assert used == set(_members(TrainerView))


def test_a_context_reads_the_run_directory_through_its_trainer(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    data = tiny_data(VECTORS)
    ctx = SearchContext(
        TinySpace(), TinySoftmax(), Trainer(data, run=run, device="cpu"), data, 1, 16, 0
    )
    assert ctx.run is run
    assert ctx.run.checkpoint_path("search").parent.is_relative_to(tmp_path / "run")


# ---- typed context fields --------------------------------------------------------------------
def test_typed_fields_and_the_deprecated_options_agree(tmp_path):
    data = tiny_data(VECTORS)
    trainer = Trainer(data, device="cpu")
    typed = SearchContext(
        TinySpace(), TinySoftmax(), trainer, data, 1, 16, 0, study="s", run_dir=str(tmp_path)
    )
    assert typed.options == {"storage": None, "study": "s", "run_dir": str(tmp_path)}
    old = SearchContext(
        TinySpace(),
        TinySoftmax(),
        trainer,
        data,
        1,
        16,
        0,
        options={"storage": "sqlite:///x.db", "study": None, "run_dir": None, "tensorboard": True},
    )
    assert (old.storage, old.study, old.run_dir) == ("sqlite:///x.db", None, None)
    assert old.options["tensorboard"] is True


# ---- the capabilities of the built-in spaces -------------------------------------------------
#: What each built-in space claims beyond the three required methods.
CLAIMS: dict[type, tuple[type, ...]] = {
    CellSpace: (DeclaresGroups, Progressive, Stateful, DeclaresParameterFree, ReportsCosts),
    DenseSpace: (Progressive, ReplacesCandidates, Stateful, ScoresCandidates, ReportsCosts),
    Nb201Space: (
        Progressive,
        Stateful,
        DeclaresParameterFree,
        ReportsCosts,
        OffersBenchmark,
        ParsesGenotype,
    ),
}


@pytest.mark.parametrize("cls", list(CLAIMS), ids=lambda c: c.__name__)
def test_builtin_spaces_implement_the_capabilities_they_claim(cls):
    for capability in CLAIMS[cls]:
        methods = [m for m in _members(capability) if callable(getattr(capability, m))]
        assert issubclass(cls, capability), capability.__name__
        for m in methods:
            mine = getattr(cls, m)
            # Implemented by the space, not inherited from the ABC's default.
            assert mine is not getattr(SearchSpace, m, None), f"{cls.__name__}.{m}"
            assert not _accepts(mine, getattr(capability, m)), f"{cls.__name__}.{m}"


#: The capabilities the ABC keeps a default of, so that older spaces keep working.
DEFAULTED = (DeclaresGroups, Progressive, ReplacesCandidates, Stateful, ScoresCandidates)


@pytest.mark.parametrize("name", registry.names("space"))
def test_every_registered_space_overrides_capability_hooks_as_declared(name):
    cls = registry.load("space", name)
    overridden = {
        m: capability
        for capability in DEFAULTED
        for m in _members(capability)
        if getattr(cls, m) is not getattr(SearchSpace, m)
    }
    for m, capability in overridden.items():
        assert not _accepts(getattr(cls, m), getattr(capability, m)), f"{cls.__name__}.{m}"
    # Saving a state that is never loaded (or the reverse) breaks resuming.
    assert ("state_dict" in overridden) == ("load_state_dict" in overridden)


def test_the_cell_supernet_drops_out_candidates_as_pdarts_expects():
    net = CellSpace(channels=4, layers=2, nodes=2).supernet(Task("classification", (1, 8, 8), 3))
    assert isinstance(net, DropsCandidates)
    assert not isinstance(nn.Linear(2, 2), DropsCandidates)


# ---- a space with the three required methods only --------------------------------------------
class ActivationOnly(SearchSpace):
    """One hidden layer and one choice of activation: only what the ABC requires."""

    ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}

    def choices(self) -> tuple[Choice, ...]:
        return (Choice("act", tuple(self.ACTS)),)

    def supernet(self, task: Task) -> nn.Module:
        return _ActivationSupernet(math.prod(task.input_shape), task.outputs)

    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        act = self.ACTS[genotype.spec["choices"]["act"]]
        return nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(task.input_shape), 8), act(), nn.Linear(8, 3)
        )


class _ActivationSupernet(nn.Module):
    def __init__(self, features: int, outputs: int) -> None:
        super().__init__()
        self.stem, self.head = nn.Linear(features, 8), nn.Linear(8, outputs)
        self.acts = nn.ModuleList(act() for act in ActivationOnly.ACTS.values())

    def forward(self, x: torch.Tensor, weights: Weights) -> torch.Tensor:
        h, w = self.stem(x.flatten(1)), weights["act"]
        skip = (w == 0).tolist()  # exactly zero: not computed
        outs = [w[k] * act(h) for k, act in enumerate(self.acts) if not skip[k]]
        return self.head(torch.stack(outs).sum(0) if outs else torch.zeros_like(h))


def test_a_space_with_only_the_required_methods_searches_with_darts():
    space = ActivationOnly()
    assert groups_of(space) == ()
    data = tiny_data(VECTORS)
    ctx = SearchContext(space, TinySoftmax(), Trainer(data, device="cpu"), data, 2, 16, 0)
    result = Darts(warmup=0).search(ctx)
    assert result.genotype.spec["choices"]["act"] in ActivationOnly.ACTS
    assert math.isfinite(result.metrics["val_accuracy"])
    assert result.candidates == []
    assert isinstance(space.build(result.genotype, VECTORS)(data.test[0]), torch.Tensor)


# ---- the architecture step -------------------------------------------------------------------
def test_arch_steps_declare_whether_they_take_the_weight_step():
    a_opt = torch.optim.Adam([nn.Parameter(torch.zeros(2))])
    assert first_order_step(a_opt).takes_weight_step is False
    assert second_order_step(a_opt).takes_weight_step is False
    assert second_order_step(a_opt, lookahead="real").takes_weight_step is True


def test_a_plain_function_still_serves_as_an_architecture_step():
    data = tiny_data(VECTORS)
    ctx = SearchContext(
        ActivationOnly(), TinySoftmax(), Trainer(data, device="cpu"), data, 1, 16, 0
    )
    calls: list[int] = []

    def factory(a_opt: torch.optim.Optimizer) -> Any:
        step = first_order_step(a_opt)

        def plain(*args: Any) -> None:  # no takes_weight_step attribute: no weight step
            calls.append(1)
            step(*args)

        return plain

    run = search_supernet(ctx, ctx.space, epochs=1, phase="search", arch_step=factory)
    assert calls and len(run.history) == 1
    assert supernet_result(ctx, run).genotype.space == "ActivationOnly"


def test_the_core_imports_nothing_from_a_higher_layer_not_even_for_type_checking():
    higher = ("nasplug.engine", "nasplug.searchlib", "nasplug.run", "nasplug.report", "nasplug.cli")
    core = Path(nasplug.core.__file__).parent
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith(higher) for n in names), f"{path.name}: {names}"
