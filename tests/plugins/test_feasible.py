"""Black-box strategies under a resource budget: ``SearchContext.feasible``.

Random search and evolution draw and mutate only genotypes the predicate accepts, TPE never
trains or looks up one it refuses, a predicate nothing meets is a one-line error, and without a
predicate every seeded search is the one it always was.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch

from nasplug.core import registry
from nasplug.core.interfaces import SearchContext
from nasplug.core.options import OptionError
from nasplug.core.types import Data, Genotype, Task
from nasplug.engine.memory import count_params
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.blackbox import SamplePool
from nasplug_builtins.relaxations import Softmax
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.strategies.evolution import mutate

TASK = Task("classification", (1, 8, 8), 3)
BUDGETS = {"random": "candidates", "tpe": "trials", "evolution": "candidates"}


def _strategy(name: str, **opts):
    return registry.load("strategy", name)(**opts)


def _nb201():
    space = registry.load("space", "nb201")()
    try:
        space.benchmark()
    except OptionError as e:
        pytest.skip(f"the benchmark table is not installed: {e}")
    return space


def _few_convs(genotype: Genotype) -> bool:
    """An nb201 cell with at most one 3x3 convolution: about a third of the cells."""
    return sum(op == "nor_conv_3x3" for op in genotype.spec["choices"].values()) <= 1


class _Watched:
    """A predicate that remembers every genotype it was asked about and what it answered."""

    def __init__(self, rule) -> None:
        self.rule, self.answers = rule, {}

    def __call__(self, genotype: Genotype) -> bool:
        self.answers[genotype] = ok = self.rule(genotype)
        return ok


# ---- without a budget: the same searches as before ---------------------------------------------
# Digests of the genotypes queried by each strategy on the nb201 table (seed 0, 50 queries), taken
# before SearchContext.feasible existed, with the best value and where it was found.
PINNED = {
    "random": ("7f62ee1ea9d491f1", 93.2152, 0),
    "evolution": ("6dab27541723b207", 94.0664, 37),
    "tpe": ("c36d9579b49b5d1f", 93.7588, 10),
}


@pytest.mark.parametrize("name", ["random", "evolution", "tpe"])
def test_without_a_budget_a_seeded_table_search_is_unchanged(name):
    space = _nb201()
    found = _strategy(name, method="table", **{BUDGETS[name]: 50}).search_table(
        space, seed=0, queries=50
    )
    queried = json.dumps([r["genotype"] for r in found.history], sort_keys=True)
    digest = hashlib.sha256(queried.encode()).hexdigest()[:16]
    best = found.metrics["table_accuracy"]
    assert (digest, round(best, 4), int(found.metrics["best_query"])) == PINNED[name]


# ---- on the nb201 table ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "evolution", "tpe"])
def test_a_table_search_queries_only_feasible_genotypes(name):
    space = _nb201()
    feasible = _Watched(_few_convs)
    opts = {"population": 5, "sample": 3} if name == "evolution" else {}
    strategy = _strategy(name, method="table", **{BUDGETS[name]: 60}, **opts)
    found = strategy.search_table(space, seed=1, queries=60, feasible=feasible)
    queried = [Genotype.from_dict(r["genotype"]) for r in found.history]
    assert len(queried) == 60
    assert all(_few_convs(g) for g in queried)
    assert not all(feasible.answers.values())  # it was asked about others, and refused them
    assert _few_convs(found.genotype)
    if name == "evolution":
        assert any(r["origin"].startswith("mutant of") for r in found.history)


def test_evolution_mutates_only_into_feasible_children():
    space = _nb201()
    pool, rng = SamplePool(space, 0, _few_convs), random.Random(0)
    for i in range(30):
        parent = pool.get(i)
        assert _few_convs(parent)
        mutated = mutate(space, pool.decisions(i), rng, _few_convs)
        assert mutated is not None
        child, decisions = mutated
        assert _few_convs(child) and child != parent
        changed = [k for k, v in decisions.items() if pool.decisions(i)[k] != v]
        assert len(changed) == 1  # still a single change


def test_a_parent_without_a_feasible_child_is_given_up_for_the_next_best():
    from nasplug_builtins.strategies.evolution import _Proposer

    space = _nb201()

    def convs(g: Genotype) -> int:
        return sum(op == "nor_conv_3x3" for op in g.spec["choices"].values())

    # Cells with every edge a 3x3 convolution, or with at most one: every single change of the
    # all-convolution cell has five, so it has no feasible child.
    def feasible(g: Genotype) -> bool:
        return convs(g) <= 1 or convs(g) == 6

    names = [c.name for c in space.choices()]
    rows = []
    for i, (ops, metric) in enumerate(
        ((["nor_conv_3x3"] * 6, 90.0), (["nor_conv_3x3"] + ["avg_pool_3x3"] * 5, 80.0))
    ):
        decisions = dict(zip(names, ops, strict=True))
        genotype = space.sample(lambda name, options, d=decisions: d[name])
        assert feasible(genotype)
        rows.append(
            {"index": i, "genotype": genotype.to_dict(), "metric": metric, "decisions": decisions}
        )
    assert mutate(space, rows[0]["decisions"], random.Random(0), feasible) is None
    propose = _Proposer(
        space, 0, population=2, sample=2, better=lambda a, b: a > b, feasible=feasible
    )
    child, extra = propose(rows, 2)
    assert extra["origin"] == "mutant of 1"  # the better parent had no feasible child
    assert feasible(child)


@pytest.mark.parametrize("name", ["random", "evolution", "tpe"])
def test_a_budget_no_genotype_meets_is_one_line(name, monkeypatch):
    import nasplug_builtins.strategies.tpe as tpe
    from nasplug.searchlib import blackbox

    space = _nb201()
    monkeypatch.setattr(blackbox, "FEASIBLE_DRAWS", 300)
    monkeypatch.setattr(tpe, "REFUSED_TRIALS", 30)
    strategy = _strategy(name, method="table", **{BUDGETS[name]: 10})
    with pytest.raises(OptionError) as e:
        strategy.search_table(space, seed=0, queries=10, feasible=lambda g: False)
    text = str(e.value)
    tried = 30 if name == "tpe" else 300
    assert text == (
        f"none of {tried} genotypes drawn met the budget; the budget may be too tight for "
        f"this space: raise it"
    )


# ---- TPE -------------------------------------------------------------------------------------
class _CountingTable:
    """The space's table, remembering every genotype looked up in it."""

    def __init__(self, table) -> None:
        self.table, self.looked_up = table, []
        self.label, self.metric = table.label, table.metric

    def query(self, genotype: Genotype) -> float:
        self.looked_up.append(genotype)
        return self.table.query(genotype)

    def best(self) -> float:
        return self.table.best()


def test_tpe_never_looks_up_a_refused_genotype_and_counts_only_feasible_queries(monkeypatch):
    space = _nb201()
    table = _CountingTable(space.benchmark())
    monkeypatch.setattr(space, "benchmark", lambda: table)
    feasible = _Watched(_few_convs)
    found = _strategy("tpe", method="table", trials=40, startup_trials=5).search_table(
        space, seed=0, queries=40, feasible=feasible
    )
    assert not all(feasible.answers.values())  # TPE proposed cells outside the budget ...
    assert len(table.looked_up) == 40 and all(
        _few_convs(g) for g in table.looked_up
    )  # never queried
    assert len(found.history) == 40


# ---- trained and supernet candidates on a tiny cell space ------------------------------------
def _data(n: int = 48) -> Data:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.randn(n, *TASK.input_shape, generator=g) + y.view(-1, 1, 1, 1)
    return Data(TASK, (x, y), (x[:12], y[:12]))


def _ctx(run_dir: Path, feasible) -> SearchContext:
    data = _data()
    trainer = Trainer(data, run=RunDir.create(run_dir, {"test": True}), device="cpu", seed=0)
    trainer.quiet = True
    return SearchContext(
        CellSpace(channels=4, layers=2, nodes=2),
        Softmax(),
        trainer,
        data,
        epochs=1,
        batch_size=16,
        seed=0,
        options={"storage": None, "study": None, "run_dir": str(run_dir)},
        feasible=feasible,
    )


def _small(space: CellSpace, limit: int = 3100):
    """A params budget that about one sampled cell network in six meets."""
    return _Watched(lambda g: count_params(space.build(g, TASK)) <= limit)


@pytest.mark.parametrize(
    "name, opts",
    [
        ("random", {"method": "train", "candidates": 3}),
        ("random", {"method": "supernet", "candidates": 3, "supernet_epochs": 1}),
        ("evolution", {"method": "train", "candidates": 4, "population": 2, "sample": 2}),
    ],
)
def test_trained_and_supernet_candidates_are_all_within_the_budget(tmp_path, name, opts):
    space = CellSpace(channels=4, layers=2, nodes=2)
    feasible = _small(space)
    ctx = _ctx(tmp_path / "run", feasible)
    result = _strategy(name, train_epochs=1, **opts).search(ctx)
    assert len(result.candidates) == opts["candidates"]
    for row in result.candidates:
        assert row["params"] <= 3100
    assert count_params(space.build(result.genotype, TASK)) <= 3100
    assert not all(feasible.answers.values())  # infeasible draws were refused, not trained


def test_tpe_trains_only_feasible_trials_and_counts_only_them(tmp_path):
    space = CellSpace(channels=4, layers=2, nodes=2)
    feasible = _small(space)
    ctx = _ctx(tmp_path / "run", feasible)
    result = _strategy("tpe", trials=3, train_epochs=1, pruner="none").search(ctx)
    assert len(result.candidates) == 3
    assert all(r["params"] <= 3100 for r in result.candidates)
    trained = list(RunDir(tmp_path / "run").events("trial_start"))
    assert len(trained) == 3  # the refused trials were never started
    assert not all(feasible.answers.values())


def test_a_proposer_that_ignores_the_budget_is_stopped_before_its_candidate_is_trained(tmp_path):
    from nasplug.searchlib.blackbox import Evaluation, candidate_search

    space = CellSpace(channels=4, layers=2, nodes=2)
    ctx = _ctx(tmp_path / "run", lambda g: False)
    pool = SamplePool(space, 0)  # knows no budget

    def propose(rows, i):
        return pool.get(i), {}

    with pytest.raises(ValueError, match="strategy 'careless' proposed a genotype outside the"):
        candidate_search(ctx, "careless", Evaluation("train"), propose, candidates=2)
    assert not list(RunDir(tmp_path / "run").events("train_epoch"))  # nothing was trained
