"""Black-box strategies scored by a benchmark table: random, tpe and evolution with
``method=table``, evolution's own rules, and the query-budget curve.

A tiny space (three choices of four candidates, 64 genotypes) offers a fake table whose values
are all different, registered through a temporary ``*.dist-info`` so that the CLI finds it.
"""

from __future__ import annotations

import json
import random
import sys
import textwrap

import pytest

from nasplug.cli import main
from nasplug.core.interfaces import SearchesTable

SPACE_MODULE = textwrap.dedent(
    """
    from torch import nn

    from nasplug.core.interfaces import SearchSpace
    from nasplug.core.types import Choice

    OPS = ("p", "q", "r", "s")


    class Table:
        label = "fake accuracy (%) of the test table"
        metric = "table_accuracy"

        def __init__(self):
            self.queries = 0

        def query(self, genotype):
            self.queries += 1
            c = genotype.spec["choices"]
            return 50.0 + 10 * OPS.index(c["a"]) + 3 * OPS.index(c["b"]) + OPS.index(c["c"])

        def best(self):
            return 92.0


    class Net(nn.Module):
        def __init__(self, task):
            super().__init__()
            self.head = nn.Linear(task.input_shape[-1], task.outputs)

        def forward(self, x, weights=None):
            return self.head(x)


    class TableSpace(SearchSpace):
        def __init__(self):
            self.table = Table()

        def choices(self):
            return tuple(Choice(n, OPS) for n in "abc")

        def supernet(self, task):
            return Net(task)

        def build(self, genotype, task):
            return Net(task)

        def benchmark(self):
            return self.table
    """
)


@pytest.fixture
def table_space(tmp_path_factory, monkeypatch):
    """The tiny space's module, installed as the space ``tiny-table`` of a fake distribution."""
    site = tmp_path_factory.mktemp("site")
    (site / "nasplug_tiny_table.py").write_text(SPACE_MODULE)
    info = site / "nasplug_tiny_table-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nasplug-tiny-table\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[nasplug.spaces]\ntiny-table = nasplug_tiny_table:TableSpace\n"
    )
    monkeypatch.delenv("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.syspath_prepend(str(site))
    import nasplug_tiny_table

    yield nasplug_tiny_table
    sys.modules.pop("nasplug_tiny_table", None)


def _strategy(name: str, **opts):
    from nasplug.core import registry

    return registry.load("strategy", name)(**opts)


BUDGETS = {"random": "candidates", "tpe": "trials", "evolution": "candidates"}


@pytest.mark.parametrize("name", ["random", "tpe", "evolution"])
def test_a_table_search_returns_the_tables_best_among_its_queries(table_space, name):
    space = table_space.TableSpace()
    strategy = _strategy(name, method="table", **{BUDGETS[name]: 12})
    assert isinstance(strategy, SearchesTable)
    found = strategy.search_table(space, seed=3, queries=12)
    rows = found.history
    assert len(rows) == 12 == space.table.queries
    fresh = table_space.Table()
    from nasplug.core.types import Genotype

    values = [fresh.query(Genotype.from_dict(r["genotype"])) for r in rows]
    assert [r["metric"] for r in rows] == values  # each row carries its own table value
    assert found.metrics["table_accuracy"] == max(values)
    assert fresh.query(found.genotype) == max(values)
    assert not any(k.startswith("val_") for k in found.metrics)  # nothing was trained


def test_evolution_is_reproducible_under_a_seed(table_space):
    space = table_space.TableSpace()
    evo = _strategy("evolution", population=5, sample=2, method="table")
    runs = [evo.search_table(space, seed=s, queries=30).history for s in (7, 7, 8)]
    genotypes = [[r["genotype"] for r in run] for run in runs]
    assert genotypes[0] == genotypes[1]
    assert genotypes[0] != genotypes[2]


def test_evolution_mutation_changes_exactly_one_decision(table_space):
    from nasplug_builtins.strategies.evolution import mutate

    space = table_space.TableSpace()
    rng = random.Random(0)
    parent = {"a": "p", "b": "q", "c": "r"}
    for _ in range(50):
        genotype, child = mutate(space, parent, rng)
        assert genotype.spec["choices"] == child
        assert sum(child[k] != parent[k] for k in parent) == 1


def test_evolution_mutants_of_a_grouped_space_are_valid_and_differ_from_their_parent():
    from nasplug.searchlib.blackbox import SamplePool
    from nasplug_builtins.spaces.cell import CellSpace
    from nasplug_builtins.strategies.evolution import mutate

    space = CellSpace(channels=4, layers=2, nodes=3)  # each node keeps 2 of its inputs
    pool, rng = SamplePool(space, 0), random.Random(0)
    for i in range(20):
        parent = pool.get(i)
        child, decisions = mutate(space, pool.decisions(i), rng)
        space.one_hot(child)  # a valid genotype: the right number of inputs per node
        assert child != parent
        assert space.sample(lambda name, options, d=decisions: d[name]) == child  # replayable


def test_evolution_ages_out_the_oldest_member(table_space):
    space = table_space.TableSpace()
    evo = _strategy("evolution", population=4, sample=4, method="table")
    rows = evo.search_table(space, seed=0, queries=40).history
    assert [r["origin"] for r in rows[:4]] == ["random"] * 4
    for i, row in enumerate(rows[4:], start=4):
        # With the tournament over the whole population the parent is its best member: the
        # best of the last four evaluated, never an older one however good.
        population = rows[i - 4 : i]
        top = max(r["metric"] for r in population)
        assert row["origin"] in {
            f"mutant of {r['index']}" for r in population if r["metric"] == top
        }
    # The best genotype of all is in the first population; aging removes it after 4 steps.
    first = max(rows[:4], key=lambda r: r["metric"])
    assert all(r["origin"] != f"mutant of {first['index']}" for r in rows[8:])


def test_a_table_run_records_the_tables_value_not_a_trained_one(table_space, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "--space",
            "tiny-table",
            "--strategy",
            "evolution",
            "--strategy-opt",
            "method=table",
            "--strategy-opt",
            "candidates=15",
            "--data",
            "diabetes",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "validation" not in captured.out  # nothing was trained or validated
    metrics = json.loads((out / "metrics.json").read_text())
    candidates = json.loads((out / "candidates.json").read_text())
    assert metrics["table_label"] == "fake accuracy (%) of the test table"
    assert metrics["table_accuracy"] == max(c["metric"] for c in candidates)
    assert metrics["queries"] == 15 and not any(k.startswith("val_") for k in metrics)
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"fake accuracy (%) of the test table: {metrics['table_accuracy']:.2f}" in shown


@pytest.mark.parametrize("name", ["random", "tpe", "evolution"])
def test_method_table_on_a_space_without_a_table_is_one_line_and_writes_nothing(
    tmp_path, capsys, name
):
    out = tmp_path / "bad"
    code = main(
        [
            "run",
            "--space",
            "dense",
            "--strategy",
            name,
            "--strategy-opt",
            "method=table",
            "--data",
            "diabetes",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"strategy {name!r}: method=table needs a space that offers a benchmark table" in err
    assert "space 'dense' has none" in err
    assert not out.exists()


def test_the_curve_command_writes_its_table_and_picture(table_space, tmp_path, capsys):
    out = tmp_path / "curve"
    code = main(
        [
            "curve",
            "--space",
            "tiny-table",
            "--strategies",
            "random,evolution,tpe",
            "--strategy-opt",
            "evolution:population=5",
            "--seeds",
            "3",
            "--queries",
            "30",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = (out / "curve.md").read_text()
    assert table == captured.out
    assert "| strategy | 25 queries | 30 queries | seconds (all seeds) |" in table
    assert {line.split(" | ")[0] for line in table.splitlines()[4:]} == {
        "| random",
        "| evolution",
        "| tpe",
    }
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "curve.json").read_text())
    for runs in data["curves"].values():
        assert len(runs) == 3
        for c in runs:  # best so far: never decreasing, never above the table's best
            assert len(c) == 30 and c == sorted(c) and c[-1] <= data["best"]


def test_the_curve_refuses_a_space_without_a_table_or_a_strategy_without_one(
    table_space, tmp_path, capsys
):
    out = tmp_path / "curve"
    for args, message in (
        (["--space", "dense"], "space 'dense' offers no benchmark table"),
        (
            ["--space", "tiny-table", "--strategies", "random,darts"],
            "strategy 'darts' cannot search by a benchmark table; accepted: evolution, random, tpe",
        ),
    ):
        code = main(["curve", *args, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not out.exists()
