"""The conformance suites catch real mistakes: plugins broken on purpose fail their checks.

Each broken plugin differs from a good one by one mistake. The suites' checks are called
directly, with the values their fixtures would give; the good plugins pass the same checks, and
run through pytest below as a plugin author's test module would run them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasplug.core.interfaces import Dataset, Relaxation, SearchContext, Strategy
from nasplug.core.types import Data, Genotype, SearchResult, Task
from nasplug.searchlib.polytope import group_projection, nearest_vertex
from nasplug.searchlib.supernet import search_supernet, supernet_result
from nasplug.testing import (
    TINY_TASK,
    DatasetConformance,
    RelaxationConformance,
    SpaceConformance,
    StrategyConformance,
    TinySoftmax,
    TinySpace,
    tiny_data,
)

DEVICE = torch.device("cpu")


# ---- plugins with one mistake each -------------------------------------------------------------
class FirstChoiceOnly(TinySpace):
    """Skips zero-weight candidates in its first choice only: the activations are all computed."""

    def supernet(self, task: Task) -> nn.Module:
        net = super().supernet(task)
        mix = net._mix

        def first_choice_only(
            ops: nn.ModuleList,
            w: torch.Tensor,
            apply: Callable[[nn.Module], torch.Tensor],
            shape: tuple[int, int],
        ) -> torch.Tensor:
            if ops is net.acts:  # the mistake: a zero weight still computes its candidate
                return sum((w[k] * apply(op) for k, op in enumerate(ops)), w.new_zeros(shape))
            return mix(ops, w, apply, shape)

        net._mix = first_choice_only
        return net


class IgnoresGenotype(TinySpace):
    """``build`` returns the network of the first candidates, whatever the genotype says."""

    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        first = {c.name: c.candidates[0] for c in self.choices()}
        return super().build(Genotype(genotype.space, {"choices": first}), task)


class StraightThrough(Relaxation):
    """A one-hot forward with softmax's gradient, claiming exact skipping: it is not exact, since
    the gradient of the logits reaches them through the candidates whose weight is zero."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        soft = torch.softmax(logits, dim=-1)
        hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft)
        return hard - soft.detach() + soft


class StraightThroughDeclared(StraightThrough):
    """The same estimator, declared honestly."""

    skip_is_exact = False


def _sparsemax(logits: torch.Tensor) -> torch.Tensor:
    """Sparsemax by sorting (exact zeros, zero Jacobian on them), here to need no plugin."""
    z, _ = logits.sort(descending=True)
    k = torch.arange(1, len(z) + 1, dtype=z.dtype, device=z.device)
    support = 1 + k * z > z.cumsum(0)
    tau = (z[support].sum() - 1) / support.sum()
    return (logits - tau).clamp_min(0)


class Sparsemax(Relaxation):
    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return _sparsemax(logits)


class NotQuiteZero(Sparsemax):
    """Claims exact skipping, but floors its zeros at 1e-12: nothing is ever skipped."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return _sparsemax(logits).clamp_min(1e-12)


class AnnealedSoftmax(Relaxation):
    """The annealed softmax of docs/plugins.md."""

    def __init__(self, tau_start: float = 1.0, tau_end: float = 0.1) -> None:
        self.tau_start, self.tau_end = tau_start, tau_end
        self.progress = 0.0

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        tau = self.tau_start + (self.tau_end - self.tau_start) * self.progress
        return torch.softmax(logits / tau, dim=-1)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self.progress = epoch / max(epochs - 1, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"progress": self.progress}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.progress = float(state["progress"])


class NeverAdvances(AnnealedSoftmax):
    """Its progress is an integer division: 0 at every epoch, so tau never falls."""

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self.progress = epoch // epochs


class HardPhase(Relaxation):
    """Sparsemax by group (the group projection) whose temperature falls over the first half of
    the search; the second half trains on the nearest vertex, the logits frozen."""

    def __init__(self) -> None:
        self.epoch, self.epochs, self.step, self.steps = 0, 1, 0, 1

    @property
    def progress(self) -> float:
        done = self.epoch * self.steps + self.step
        return min(done / max(self.epochs * self.steps - 1, 1), 1.0)

    def tau(self) -> float:
        return 0.001 ** min(self.progress / 0.5, 1.0)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return _sparsemax(logits / self.tau())

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        if self.frozen():
            return nearest_vertex([r.detach() for r in rows], k)
        return group_projection([r / self.tau() for r in rows], k)

    def frozen(self) -> bool:
        return self.progress >= 0.5

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs

    def on_step(self, step: int, steps: int) -> None:
        self.step, self.steps = step, steps

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "epochs": self.epochs, "step": self.step, "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.epochs = int(state["epoch"]), int(state["epochs"])
        self.step, self.steps = int(state["step"]), int(state["steps"])


class HardPhaseOffVertex(HardPhase):
    """Claims a hard phase, but its weights there come from a temperature that never fell."""

    def tau(self) -> float:
        return 1.0

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        return group_projection([r / self.tau() for r in rows], k)


class EarlyHardPhase(HardPhase):
    """Correct, with a hard phase from a tenth of the search on, where even its per-choice
    weights are the (detached) vertex."""

    def frozen(self) -> bool:
        return self.progress >= 0.1

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        if self.frozen():
            return nearest_vertex([logits.detach()], 1)[0]
        return super().weights(logits)


class ClockLeftOut(HardPhase):
    """Its weights change only in the second half of the search (the hard phase; the
    temperature stays at 1 before), and its state_dict leaves the clock out."""

    def tau(self) -> float:
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class StepLeftOut(HardPhase):
    """Its state_dict keeps the epochs but not the steps: the clock is lost inside an epoch."""

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "epochs": self.epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.epochs = int(state["epoch"]), int(state["epochs"])


class RowOverOne(Relaxation):
    """k times one softmax over all of a group's (member, candidate) pairs: the group carries
    k, but a member far ahead carries more than 1."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        flat = k * torch.softmax(torch.cat(list(rows)), dim=-1)
        return list(flat.split([len(r) for r in rows]))


class OneUnit(RowOverOne):
    """One softmax over all of a group's pairs: every row is under 1, but the group carries 1."""

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        flat = torch.softmax(torch.cat(list(rows)), dim=-1)
        return list(flat.split([len(r) for r in rows]))


class NaNWeights(Relaxation):
    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.full_like(logits, float("nan"))


class UnknownOp(TinySpace):
    """``derive`` names an activation that is not a candidate; ``build`` takes it as relu."""

    def derive(self, weights: Mapping[str, torch.Tensor]) -> Genotype:
        genotype = super().derive(weights)
        return Genotype(
            genotype.space, {"choices": {**genotype.spec["choices"], "activation": "swish"}}
        )

    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        chosen = dict(genotype.spec["choices"])
        if chosen["activation"] not in self.activations:
            chosen["activation"] = "relu"
        return super().build(Genotype(genotype.space, {"choices": chosen}), task)


class Overlapping(Dataset):
    """Its test split is a slice of its train split."""

    def load(self) -> Data:
        data = tiny_data(TINY_TASK, n_train=60, n_test=10)
        x, y = data.train
        return Data(TINY_TASK, (x, y), (x[:10], y[:10]), name="overlapping")


class Heldout(Overlapping):
    def load(self) -> Data:
        return tiny_data(TINY_TASK, n_train=60, n_test=10)


class FixedEpochs(Strategy):
    """Searches a supernet for ``epochs`` epochs of its own, whatever the run was given."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def search(self, ctx: SearchContext) -> SearchResult:
        return supernet_result(
            ctx, search_supernet(ctx, ctx.space, epochs=self.epochs, phase="search")
        )


# ---- calling a suite's checks with its fixtures' values ------------------------------------------
def space_check(name: str, space: Any, task: Task = TINY_TASK) -> None:
    """Run the check ``name`` of :class:`SpaceConformance` on ``space``."""
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, *task.input_shape, generator=g)
    getattr(SpaceConformance(), name)(space=space, task=task, inputs=inputs, device=DEVICE)


def relaxation_check(name: str, relaxation: Relaxation) -> None:
    getattr(RelaxationConformance(), name)(relaxation=relaxation, device=DEVICE)


def dataset_check(name: str, dataset: Dataset) -> None:
    getattr(DatasetConformance(), name)(data=dataset.load())


def strategy_check(name: str, strategy: Strategy, tmp_path: Path, epochs: int = 1) -> None:
    """Run the check ``name`` of :class:`StrategyConformance` with its default fixtures."""
    from nasplug.engine.trainer import Trainer
    from nasplug.run.rundir import RunDir

    data = tiny_data(TINY_TASK)
    run = RunDir.create(tmp_path / "run", {"test": "strategy conformance"})
    trainer = Trainer(data, run=run, device="cpu", seed=0, quiet=True)
    context = SearchContext(
        space=TinySpace(),
        relaxation=TinySoftmax(),
        trainer=trainer,
        data=data,
        epochs=epochs,
        batch_size=16,
        seed=0,
        options={"run_dir": str(run.path)},
    )
    getattr(StrategyConformance(), name)(
        strategy=strategy, context=context, trainer=trainer, epochs=epochs
    )


def test_a_supernet_that_skips_in_its_first_choice_only_fails_the_per_choice_check():
    with pytest.raises(AssertionError, match="choice 'activation': its zero-weight candidates"):
        space_check("test_each_choice_skips_its_zero_weights", FirstChoiceOnly())
    # Counting the module calls of all choices at once misses it: the first choice skips.
    space_check("test_zero_weights_are_not_computed", FirstChoiceOnly())


def test_a_build_that_ignores_the_genotype_fails_the_build_check():
    with pytest.raises(AssertionError, match="build\\(\\) gives the same network"):
        space_check("test_build_honours_the_genotype", IgnoresGenotype())
    # Checking that the network builds and runs misses it.
    space_check("test_derive_gives_a_genotype_that_builds_and_runs", IgnoresGenotype())
    space_check("test_sample_gives_valid_genotypes", IgnoresGenotype())


def test_a_supernet_with_an_unused_parameter_fails_the_gradient_check():
    class Unused(TinySpace):
        def supernet(self, task: Task) -> nn.Module:
            net = super().supernet(task)
            net.spare = nn.Linear(2, 2)  # registered, never called
            return net

    with pytest.raises(AssertionError, match="got no gradient.*spare.weight"):
        space_check("test_every_parameter_gets_a_gradient_under_softmax", Unused())


@pytest.mark.parametrize(
    "check",
    [
        "test_each_choice_skips_its_zero_weights",
        "test_zero_weights_are_not_computed",
        "test_build_honours_the_genotype",
        "test_every_parameter_gets_a_gradient_under_softmax",
    ],
)
def test_the_good_space_passes_the_checks_the_broken_ones_fail(check):
    space_check(check, TinySpace())


def test_a_relaxation_that_claims_exact_skipping_wrongly_fails_the_gradient_check():
    with pytest.raises(AssertionError, match="skipping zero weights changed the gradient"):
        relaxation_check("test_skipping_zero_weights_is_exact", StraightThrough())


def test_the_check_is_skipped_for_a_relaxation_that_declares_skipping_inexact():
    with pytest.raises(pytest.skip.Exception, match="skip_is_exact = False"):
        relaxation_check("test_skipping_zero_weights_is_exact", StraightThroughDeclared())


def test_an_exact_relaxation_with_zeros_passes_the_gradient_check():
    w = Sparsemax().weights(torch.tensor([1.0, 0.2, -1.0]))
    assert (w == 0).any() and torch.isclose(w.sum(), torch.tensor(1.0))
    relaxation_check("test_skipping_zero_weights_is_exact", Sparsemax())
    relaxation_check("test_skipping_zero_weights_is_exact", TinySoftmax())


def test_a_schedule_that_never_advances_fails_the_schedule_check():
    with pytest.raises(AssertionError, match="the schedule never advances"):
        relaxation_check("test_the_schedule_advances", NeverAdvances())
    # Checks at single points of the clock miss it: the weights are good softmax weights.
    relaxation_check("test_weights_are_finite_and_non_negative", NeverAdvances())
    relaxation_check("test_state_dict_round_trip", NeverAdvances())
    relaxation_check("test_the_schedule_advances", AnnealedSoftmax())


def test_a_hard_phase_off_its_vertex_fails_the_hard_phase_check():
    with pytest.raises(AssertionError, match="frozen\\(\\) is true .* not a vertex"):
        relaxation_check("test_a_hard_phase_lasts_and_is_a_vertex", HardPhaseOffVertex())
    relaxation_check("test_a_hard_phase_lasts_and_is_a_vertex", HardPhase())


def test_an_early_hard_phase_passes_the_gradient_check():
    relaxation_check("test_gradients_reach_the_logits", EarlyHardPhase())
    for check in (
        "test_a_hard_phase_lasts_and_is_a_vertex",
        "test_the_schedule_advances",
        "test_state_dict_round_trip",
        "test_group_weights_respect_the_group",
        "test_zero_weights_are_exact",
        "test_skipping_zero_weights_is_exact",
    ):
        relaxation_check(check, EarlyHardPhase())


def test_tiny_weights_where_zeros_are_due_fail_the_exact_zero_check():
    with pytest.raises(AssertionError, match="gives 1e-12 where an exact zero is due"):
        relaxation_check("test_zero_weights_are_exact", NotQuiteZero())
    # Nothing is skipped, so skipping changes no gradient: the exact-skip check misses it.
    relaxation_check("test_skipping_zero_weights_is_exact", NotQuiteZero())
    relaxation_check("test_zero_weights_are_exact", Sparsemax())
    relaxation_check("test_zero_weights_are_exact", TinySoftmax())


def test_a_state_dict_without_the_whole_clock_fails_the_round_trip():
    for broken in (ClockLeftOut(), StepLeftOut()):
        with pytest.raises(AssertionError, match="is the schedule's clock missing from state_dict"):
            relaxation_check("test_state_dict_round_trip", broken)
    relaxation_check("test_state_dict_round_trip", HardPhase())


def test_a_member_row_over_one_fails_the_group_check():
    with pytest.raises(
        AssertionError, match=r"member \d of 3 carries 1\.\d+; each member.s row sums to at most 1"
    ):
        relaxation_check("test_group_weights_respect_the_group", RowOverOne())


def test_a_group_carrying_one_unit_instead_of_k_fails_the_group_check():
    with pytest.raises(AssertionError, match="carries 1 in all, not exactly k=2"):
        relaxation_check("test_group_weights_respect_the_group", OneUnit())
    relaxation_check("test_group_weights_respect_the_group", HardPhase())


@pytest.mark.parametrize(
    "check",
    [
        "test_weights_are_finite_and_non_negative",
        "test_gradients_reach_the_logits",
        "test_eval_weights_are_deterministic",
        "test_state_dict_round_trip",
        "test_skipping_zero_weights_is_exact",
    ],
)
def test_nan_weights_are_named_as_nan(check):
    with pytest.raises(AssertionError, match="weights contain NaN"):
        relaxation_check(check, NaNWeights())


def test_a_derive_naming_an_unknown_op_fails_even_with_a_lenient_build():
    with pytest.raises(AssertionError, match="derive\\(\\) names 'swish' for choice 'activation'"):
        space_check("test_derive_gives_a_genotype_that_builds_and_runs", UnknownOp())


def test_a_test_split_inside_the_train_split_fails_the_held_out_check():
    with pytest.raises(AssertionError, match="10 of 10 test rows are also in train"):
        dataset_check("test_test_split_is_held_out", Overlapping())
    dataset_check("test_test_split_is_held_out", Heldout())
    dataset_check("test_load_gives_valid_data", Overlapping())


@pytest.mark.parametrize("epochs", [0, 5])
def test_a_strategy_that_ignores_the_epoch_budget_fails_the_budget_check(tmp_path, epochs):
    what = "trained nothing" if epochs == 0 else "trained 5 epochs: it ignores the epoch budget"
    with pytest.raises(AssertionError, match=what):
        strategy_check("test_search_spends_its_epoch_budget", FixedEpochs(epochs), tmp_path)


def test_a_strategy_that_spends_its_budget_passes_the_budget_check(tmp_path):
    strategy_check("test_search_spends_its_epoch_budget", FixedEpochs(1), tmp_path)


# ---- the suites as a plugin author runs them: `plugin` names the class ---------------------------
class TestTinySpace(SpaceConformance):
    plugin = TinySpace
    relaxations = ("softmax", "sparsemax")


class TestTinySoftmax(RelaxationConformance):
    plugin = TinySoftmax


class DeclaresIdentity(TinySpace):
    """Declares its identity activation parameter-free, as it is."""

    def parameter_free(self) -> dict[str, tuple[tuple[str, str], ...]]:
        return {"net": (("activation", "identity"),)}


class DeclaresAnotherSpacesOp(TinySpace):
    """Declares a candidate its choice does not have."""

    def parameter_free(self) -> dict[str, tuple[tuple[str, str], ...]]:
        return {"net": (("activation", "max_pool_3x3"),)}


def test_declaring_a_candidate_the_space_lacks_fails_the_parameter_free_check():
    check = SpaceConformance().test_declared_parameter_free_candidates_are_its_own
    check(space=DeclaresIdentity())
    with pytest.raises(AssertionError, match="declares 'max_pool_3x3' of 'activation'"):
        check(space=DeclaresAnotherSpacesOp())


class CostsBothLayers(TinySpace):
    """Reports where each width sits: both linear layers it sizes."""

    def cost_sites(self, task: Task) -> dict[tuple[str, str], list[tuple[nn.Module, tuple]]]:
        n = task.input_shape[0] * task.input_shape[1] * task.input_shape[2]
        return {
            ("width", w): [
                (nn.Linear(n, int(w)), (1, n)),
                (nn.Linear(int(w), task.outputs), (1, int(w))),
            ][: self.sites]
            for w in self.widths
        }

    sites = 2


class CostsFirstLayerOnly(CostsBothLayers):
    """Forgets that the head's input is as wide as the hidden layer."""

    sites = 1


def test_a_cost_site_missing_fails_the_costs_check():
    check = SpaceConformance().test_reported_costs_are_the_built_networks
    check(space=CostsBothLayers(), task=TINY_TASK)
    with pytest.raises(AssertionError, match="is a site missing"):
        check(space=CostsFirstLayerOnly(), task=TINY_TASK)
