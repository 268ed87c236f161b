"""The example plugins against nasplug's conformance suites, plus what is special to each."""

from __future__ import annotations

import pytest
import torch

from nasplug.core.types import Task
from nasplug.testing import (
    RelaxationConformance,
    SpaceConformance,
    StrategyConformance,
    tiny_data,
    tiny_instance,
)
from nasplug_example.relaxation import FairSigmoid
from nasplug_example.space import MlpSpace
from nasplug_example.strategy import RegularisedEvolution

VECTORS = Task("regression", (5,), 2)


class TestFairSigmoid(RelaxationConformance):
    @pytest.fixture
    def relaxation(self):
        return FairSigmoid(threshold=0.6)


class TestMlpSpace(SpaceConformance):
    plugin = MlpSpace  # built with MlpSpace.test_options

    @pytest.fixture
    def task(self):
        return VECTORS


class TestEvolution(StrategyConformance):
    plugin = RegularisedEvolution

    @pytest.fixture
    def space(self):
        return tiny_instance(MlpSpace)


def test_zero_one_penalty_pushes_weights_away_from_one_half():
    relax = FairSigmoid(zero_one=10.0, warmup=False)
    logits = {"c": torch.tensor([0.2, -0.1, 0.0], requires_grad=True)}
    relax.penalty(logits, "arch").backward()
    # Gradient descent on the penalty moves positive logits up and negative ones down.
    assert logits["c"].grad[0] < 0 < logits["c"].grad[1]
    assert relax.penalty(logits, "weight") is None


def test_penalty_warms_up_over_the_search():
    relax = FairSigmoid(zero_one=10.0)
    logits = {"c": torch.tensor([1.0, -1.0])}
    relax.on_epoch(0, 5)
    assert float(relax.penalty(logits, "arch")) == 0.0
    relax.on_epoch(4, 5)
    assert float(relax.penalty(logits, "arch")) < 0.0


def test_threshold_zeroes_weak_candidates_but_keeps_the_strongest():
    relax = FairSigmoid(threshold=0.85)
    w = relax.eval_weights(torch.tensor([3.0, 0.0, -2.0]))
    assert w[0] > 0.85 and w[1] == 0 and w[2] == 0
    w = relax.eval_weights(torch.tensor([0.1, 0.3, -2.0]))
    assert w.tolist().count(0.0) == 2 and w[1] > 0


def test_evolution_mutates_one_decision_of_a_parent(tmp_path):
    from nasplug.core.interfaces import SearchContext
    from nasplug.engine.trainer import Trainer
    from nasplug.run.rundir import RunDir

    data = tiny_data(VECTORS)
    trainer = Trainer(data, run=RunDir.create(tmp_path / "run", {}), device="cpu", quiet=True)
    ctx = SearchContext(
        MlpSpace(layers=2, widths="4,8"),
        FairSigmoid(),
        trainer,
        data,
        epochs=1,
        batch_size=16,
        seed=0,
    )
    result = RegularisedEvolution(population=2, cycles=2, sample_size=2).search(ctx)
    rows = {r["candidate"]: r for r in result.candidates}
    assert len(rows) == 4 and rows[0]["parent"] == rows[1]["parent"] == -1
    for child in (rows[2], rows[3]):
        parent = rows[child["parent"]]["genotype"]["spec"]["choices"]
        mine = child["genotype"]["spec"]["choices"]
        assert sum(parent[k] != mine[k] for k in mine) == 1
    assert not list((tmp_path / "run" / "checkpoints" / "evolution").glob("*.pt"))
