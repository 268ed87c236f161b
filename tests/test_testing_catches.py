"""The conformance suites catch real mistakes: plugins broken on purpose fail their checks.

Each broken plugin differs from a good one by one mistake. The suites' checks are called
directly, with the values their fixtures would give; the good plugins pass the same checks, and
run through pytest below as a plugin author's test module would run them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasplug.interfaces import Relaxation
from nasplug.testing import (
    TINY_TASK,
    RelaxationConformance,
    SpaceConformance,
    TinySoftmax,
    TinySpace,
)
from nasplug.types import Genotype, Task

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


# ---- calling a suite's checks with its fixtures' values ------------------------------------------
def space_check(name: str, space: Any, task: Task = TINY_TASK) -> None:
    """Run the check ``name`` of :class:`SpaceConformance` on ``space``."""
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, *task.input_shape, generator=g)
    getattr(SpaceConformance(), name)(space=space, task=task, inputs=inputs, device=DEVICE)


def relaxation_check(name: str, relaxation: Relaxation) -> None:
    getattr(RelaxationConformance(), name)(relaxation=relaxation, device=DEVICE)


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
    class Sparsemax(Relaxation):
        """Sparsemax by sorting (exact zeros, zero Jacobian on them), here to need no plugin."""

        def weights(self, logits: torch.Tensor) -> torch.Tensor:
            z, _ = logits.sort(descending=True)
            k = torch.arange(1, len(z) + 1, dtype=z.dtype)
            support = 1 + k * z > z.cumsum(0)
            tau = (z[support].sum() - 1) / support.sum()
            return (logits - tau).clamp_min(0)

    w = Sparsemax().weights(torch.tensor([1.0, 0.2, -1.0]))
    assert (w == 0).any() and torch.isclose(w.sum(), torch.tensor(1.0))
    relaxation_check("test_skipping_zero_weights_is_exact", Sparsemax())
    relaxation_check("test_skipping_zero_weights_is_exact", TinySoftmax())


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
