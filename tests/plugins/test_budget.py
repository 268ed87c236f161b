"""Resource budgets: parsed, met by construction inside the relaxation, or softly penalised."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import nasplug
from nasplug.core.interfaces import SearchContext
from nasplug.core.options import OptionError
from nasplug.core.types import Data, Task
from nasplug.engine.memory import count_params
from nasplug.engine.trainer import Trainer
from nasplug.run.budget import (
    budget_constraints,
    budget_costs,
    check_budget,
    check_penalty,
    cost_range,
    genotype_costs,
    parse_budget,
)
from nasplug.run.rundir import RunDir
from nasplug.searchlib.supernet import expected_cost_penalty
from nasplug_builtins.relaxations import GumbelHard, Softmax, Sparsemax
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.strategies.darts import Darts

TASK = Task("classification", (1, 8, 8), 3)
TINY = {
    "space_opts": {"channels": 4, "layers": 2},
    "data_opts": {"train_per_class": 16, "test_per_class": 8},
    "batch_size": 32,
    "device": "cpu",
    "epochs": 1,
    "figures": False,  # report.md only: no test here looks at the pictures
    "quiet": True,
}


def _data() -> Data:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.randn(48, *TASK.input_shape, generator=g) + y.view(-1, 1, 1, 1)
    return Data(TASK, (x, y), (x[:12], y[:12]))


def _space() -> CellSpace:
    return CellSpace(channels=4, layers=3, nodes=3)


def _between(space, costs, share: float) -> float:
    least, largest = cost_range(space, costs)
    return least + share * (largest - least)


def _ctx(run_dir: Path, relaxation, limits, *, epochs: int = 4, penalty=None) -> SearchContext:
    data, space = _data(), _space()
    costs = budget_costs(space, TASK, list(limits))
    run = (
        RunDir.open(run_dir)
        if (run_dir / "config.json").exists()
        else RunDir.create(run_dir, {"test": True})
    )
    trainer = Trainer(data, run=run, device="cpu", seed=0, quiet=True)
    return SearchContext(
        space,
        relaxation,
        trainer,
        data,
        epochs=epochs,
        batch_size=16,
        seed=0,
        constraints=budget_constraints(space, costs, limits),
        budget_penalty=penalty,
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ("params=50k", ("params", 50_000.0)),
        ("params=1.5M", ("params", 1_500_000.0)),
        ("flops=300M", ("flops", 3e8)),
        ("FLOPS=2G", ("flops", 2e9)),
        ("latency=4ms", ("latency", 4.0)),
        ("latency=0.25", ("latency", 0.25)),
        ("params=12345", ("params", 12345.0)),
    ],
)
def test_budgets_are_read_with_their_units(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize(
    "value,needle",
    [
        ("params=-5k", "must be positive"),
        ("params=0", "must be positive"),
        ("energy=3", "unknown resource 'energy'; accepted: params, flops, latency"),
        ("params", "is not RESOURCE=VALUE"),
        ("params=lots", "must be positive"),
        ("latency=4k", "must be positive"),
        (["params=1k", "params=2k"], "params is given twice"),
        ({"watts": 3}, "unknown resource 'watts'"),
        ({"params": [1]}, "the value must be a number"),
        ({"params": True}, "the value must be a number"),
        (3, "budget must be text"),
    ],
)
def test_bad_budgets_are_one_line_errors(value, needle):
    with pytest.raises(OptionError, match=needle) as e:
        check_budget(value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "1"])
def test_a_bad_penalty_is_one_line(value):
    with pytest.raises(OptionError, match="budget_penalty must be a number >= 0"):
        check_penalty(value)


def test_a_budget_in_any_form_is_one_mapping():
    assert check_budget(None) == {}
    assert check_budget("params=2k") == {"params": 2000.0}
    assert check_budget(["params=2k", "latency=3ms"]) == {"params": 2000.0, "latency": 3.0}
    assert check_budget({"flops": "1M", "params": 10}) == {"flops": 1e6, "params": 10.0}


@pytest.mark.parametrize("relax_class", [Sparsemax, GumbelHard])
def test_a_budgeted_search_ends_at_a_network_within_the_budget_with_gap_zero(tmp_path, relax_class):
    space = _space()
    costs = budget_costs(space, TASK, ["params"])
    limit = _between(space, costs["params"], 0.25)
    unbudgeted = Darts().search(_ctx(tmp_path / "free", relax_class(), {"params": 1e12}))
    assert genotype_costs(space, costs, unbudgeted.genotype)["params"] > limit, (
        "the budget must bind for this test to say anything"
    )
    result = Darts().search(_ctx(tmp_path / "run", relax_class(), {"params": limit}))
    net = space.build(result.genotype, TASK)
    assert count_params(net) <= limit
    assert genotype_costs(space, costs, result.genotype)["params"] == count_params(net)
    if relax_class is Sparsemax:
        assert result.metrics["final_vertex"] == 1.0
        assert result.metrics["discretisation_gap"] == 0.0


def test_a_relaxation_without_constraints_still_derives_within_the_budget(tmp_path):
    space = _space()
    costs = budget_costs(space, TASK, ["params"])
    limit = _between(space, costs["params"], 0.25)
    result = Darts().search(_ctx(tmp_path / "run", Softmax(), {"params": limit}))
    assert count_params(space.build(result.genotype, TASK)) <= limit


def test_the_soft_penalty_is_lambda_times_the_expected_cost_over_the_bound():
    space = _space()
    costs = budget_costs(space, TASK, ["params"])
    (constraint,) = budget_constraints(
        space, costs, {"params": _between(space, costs["params"], 0.5)}
    )
    choices = space.choices()
    weights = {c.name: torch.full((len(c.candidates),), 1.0 / len(c.candidates)) for c in choices}
    sizes = {c.name: len(c.candidates) for c in choices}
    expected = sum(a / sizes[choice] for choice, _, a in constraint.terms) / constraint.bound
    penalty = expected_cost_penalty(choices, [constraint], 0.5)
    assert float(penalty(weights)) == pytest.approx(0.5 * expected, rel=1e-5)
    w = {k: v.clone().requires_grad_() for k, v in weights.items()}
    penalty(w).backward()
    conv = next(c for c in choices if "sep_conv_5x5" in c.candidates)
    grad = w[conv.name].grad
    # Costly candidates are pushed down harder than cheap ones.
    assert grad[conv.candidates.index("sep_conv_5x5")] > grad[conv.candidates.index("max_pool_3x3")]


def test_a_soft_penalty_run_may_break_the_budget_and_says_so(tmp_path):
    found = nasplug.search(
        "cell",
        "sparsemax",
        budget="params=6k",
        budget_penalty=0.0,
        out=tmp_path / "soft",
        **TINY,
    )
    m = found.metrics
    assert m["budget"] == {"params": 6_000.0}
    assert m["feasible"] == (m["params"] <= 6_000)
    assert m["budget_cost"]["params"] == m["params"]


def test_a_budgeted_run_records_its_costs_and_meets_the_budget(tmp_path):
    found = nasplug.search(
        "cell", "sparsemax", budget=["params=6k", "flops=2M"], out=tmp_path / "run", **TINY
    )
    m = found.metrics
    assert m["feasible"] is True and m["params"] <= 6_000 and m["flops"] <= 2e6
    assert m["budget"] == {"params": 6_000.0, "flops": 2e6}
    stored = json.loads((tmp_path / "run" / "costs.json").read_text())
    assert set(stored) == {"params", "flops"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["budget"] == m["budget"]
    # A resume of the finished run returns the same result without costing anything again.
    again = nasplug.search(resume=tmp_path / "run", quiet=True)
    assert again.metrics == m


def test_a_budget_no_network_meets_names_the_smallest_cost(tmp_path):
    with pytest.raises(OptionError) as e:
        nasplug.search("cell", "sparsemax", budget="params=1k", out=tmp_path / "x", **TINY)
    message = str(e.value)
    assert "budget params=1,000 cannot be met" in message
    assert "the smallest network it can derive costs" in message and "\n" not in message
    assert not (tmp_path / "x").exists()


def test_black_box_strategies_get_the_budget_as_a_predicate(tmp_path):
    found = nasplug.search(
        "cell",
        "softmax",
        "random",
        strategy_opts={"method": "supernet", "candidates": 3, "supernet_epochs": 1},
        budget="params=6k",
        **{**TINY, "epochs": 1},
    )
    assert found.metrics["params"] <= 6_000 and found.metrics["feasible"] is True
    assert all(r.get("params", 0) <= 6_000 for r in found.candidates)


def test_resume_inside_the_budgeted_hard_phase_is_bit_exact(tmp_path, monkeypatch):
    space = _space()
    costs = budget_costs(space, TASK, ["params"])
    limits = {"params": _between(space, costs["params"], 0.25)}
    whole = Darts().search(_ctx(tmp_path / "whole", Sparsemax(), limits, epochs=5))
    real_log = Trainer.log

    def killed_in_the_last_epoch(self, event, **fields):
        if event == "search_epoch" and fields["epoch"] == 5:
            raise KeyboardInterrupt
        return real_log(self, event, **fields)

    monkeypatch.setattr(Trainer, "log", killed_in_the_last_epoch)
    with pytest.raises(KeyboardInterrupt):
        Darts().search(_ctx(tmp_path / "killed", Sparsemax(), limits, epochs=5))
    monkeypatch.setattr(Trainer, "log", real_log)
    relax = Sparsemax()
    resumed = Darts().search(_ctx(tmp_path / "killed", relax, limits, epochs=5))
    assert relax.frozen(), "the killed epoch was in the hard phase"
    assert resumed.genotype == whole.genotype
    assert dataclasses.replace(resumed, history=[]).metrics == pytest.approx(
        {**whole.metrics, "search_seconds": resumed.metrics["search_seconds"]}
    )
    a = torch.load(tmp_path / "whole/checkpoints/search.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "killed/checkpoints/search.pt", weights_only=True)["state"]
    for part in ("net", "logits"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
