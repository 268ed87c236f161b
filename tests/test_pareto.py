"""The Pareto report: accuracy against a recorded cost over a set of runs, the front marked.

Run directories are written by hand as runs write them (config.json, then metrics.json for a
search or train.json for a trained network), so the front is known in advance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nasplug
from nasplug.cli import main
from nasplug.report.comparison import pareto_of
from nasplug.run.rundir import TABLE_LABEL, TABLE_METRIC, TRAIN, RunDir

PNG = b"\x89PNG\r\n\x1a\n"


def _search(root: Path, name: str, val: float, params: int, **extra) -> Path:
    """A finished random search on digits whose derived network scored ``val``."""
    path = root / name
    run = RunDir.create(
        path,
        {"command": "run", "data": "digits", "strategy": "random", "relax": "softmax", "opts": {}},
    )
    metrics = {
        "metric": "accuracy",
        "higher_is_better": True,
        "val_accuracy": val,
        "params": params,
        "candidates": 4,
        **extra,
    }
    run.write_json("metrics.json", metrics)
    run.close()
    return path


def _trained(root: Path, name: str, test: float, params: int) -> Path:
    path = root / name
    run = RunDir.create(
        path, {"command": "train", "data": "digits", "space": "cell", "source": "g.json"}
    )
    result = {
        "metric": "accuracy",
        "higher_is_better": True,
        "test_accuracy": test,
        "params": params,
        "seconds": 2.0,
    }
    run.write_json(TRAIN, result)
    run.close()
    return path


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """Seven searches: ``a`` and ``g`` tie on accuracy and ``g`` is cheaper, ``b`` and ``d``
    tie exactly, ``f`` costs as much as them for less, ``c`` is beaten by them, ``e`` records
    no FLOPs."""
    made = {
        "a": (0.80, 1000, 5e5),
        "g": (0.80, 800, 4e5),
        "b": (0.85, 3000, 2e6),
        "d": (0.85, 3000, 2e6),
        "f": (0.83, 3000, 2e6),
        "c": (0.82, 5000, 3e7),
        "e": (0.90, 50000, None),
    }
    out = {}
    for name, (val, params, flops) in made.items():
        extra = {} if flops is None else {"flops": flops}
        out[name] = _search(tmp_path / "runs", name, val, params, **extra)
    return out


def _front(front) -> dict[str, bool]:
    return {Path(p.run).name: p.on_front for p in front.points}


def test_the_front_keeps_the_undominated_runs_ties_included(runs):
    front = pareto_of(list(runs.values()), "params")
    assert _front(front) == {
        "a": False,  # g is as accurate and cheaper
        "g": True,
        "b": True,  # b and d tie exactly: neither beats the other
        "d": True,
        "f": False,  # as costly as b, less accurate
        "c": False,
        "e": True,
    }
    assert [Path(p.run).name for p in front.front] == ["g", "b", "d", "e"]  # cheapest first
    assert front.accuracy == "validation accuracy of the derived network"
    assert not front.notes


def test_a_run_without_the_cost_is_listed_but_left_off_the_plot(runs):
    front = pareto_of(list(runs.values()), "flops")
    assert _front(front)["e"] is False
    assert [p.cost for p in front.points if Path(p.run).name == "e"] == [None]
    assert front.notes == (
        f"{runs['e']} (random search (best of 4) [augment off]) records no flops: listed, not plotted.",
    )
    assert _front(front)["c"] is False and _front(front)["b"] is True


def test_trained_runs_are_placed_by_their_test_metric(tmp_path):
    small = _trained(tmp_path, "small", 0.90, 2000)
    large = _trained(tmp_path, "large", 0.88, 9000)
    front = pareto_of([small, large], "params")
    assert _front(front) == {"small": True, "large": False}
    assert front.accuracy == "test accuracy"


def test_runs_with_a_benchmark_table_are_placed_by_the_tables_value(tmp_path):
    label = "CIFAR-10 accuracy (%) of a table"
    table = {TABLE_METRIC: "table_accuracy", TABLE_LABEL: label}
    # The validation metric would put x first; the table, y.
    x = _search(tmp_path, "x", 0.9, 1000, table_accuracy=80.0, **table)
    y = _search(tmp_path, "y", 0.5, 1000, table_accuracy=90.0, **table)
    front = pareto_of([x, y], "params")
    assert _front(front) == {"x": False, "y": True}
    assert front.accuracy == f"table: {label}"


def test_compare_adds_the_cost_and_front_columns_and_writes_the_plot(runs, tmp_path, capsys):
    out = tmp_path / "cmp" / "table.md"
    code = main(["compare", *map(str, runs.values()), "--pareto", "flops", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.read_text() == captured.out
    lines = captured.out.splitlines()
    assert "| parameters | FLOPs | front | search s |" in lines[2]
    rows = {line.split(" | ")[-1].rstrip(" |"): line for line in lines[4:11]}
    assert "| 500,000 | no |" in rows[str(runs["a"])]
    assert "| 400,000 | yes |" in rows[str(runs["g"])]
    assert "| 50,000 |  |  |" in rows[str(runs["e"])]  # no FLOPs: no cost, no place on the front
    assert f"{runs['e']} (random search (best of 4) [augment off]) records no flops" in captured.out
    plot = out.parent / "table-pareto-flops.png"
    assert plot.read_bytes()[:8] == PNG
    assert f"wrote {plot}" in captured.err
    # The API gives the same table.
    assert nasplug.compare(list(runs.values()), pareto="flops").strip() == captured.out.strip()


def test_an_unknown_resource_is_one_line_and_writes_nothing(runs, tmp_path, capsys):
    out = tmp_path / "table.md"
    code = main(["compare", str(runs["a"]), "--pareto", "size", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown Pareto resource 'size'; accepted: params, flops, latency" in err
    assert not out.exists() and not list(tmp_path.glob("*.png"))


def test_the_report_of_a_set_of_runs_plots_each_recorded_cost(runs, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["report", *map(str, runs.values()), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = (out / "report.md").read_text()
    for resource in ("params", "flops"):
        assert (out / "figures" / f"pareto-{resource}.png").read_bytes()[:8] == PNG
        assert f"](figures/pareto-{resource}.png)" in text
    assert not (out / "figures" / "pareto-latency.png").exists()  # no run records latency
    assert "Pareto front of validation accuracy of the derived network against FLOPs" in text
    assert "records no flops: listed, not plotted." in text


def test_a_report_of_several_runs_needs_a_folder(runs, capsys):
    code = main(["report", str(runs["a"]), str(runs["b"])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "a report of 2 runs needs --out DIR" in err


def test_a_supernet_search_is_placed_by_its_derived_network_not_the_supernet(tmp_path):
    def supernet_run(name: str, **scores: float) -> Path:
        path = tmp_path / name
        run = RunDir.create(
            path,
            {"command": "run", "data": "digits", "strategy": "darts", "relax": "softmax"},
        )
        metrics = {"metric": "accuracy", "higher_is_better": True, "params": 1000, **scores}
        run.write_json("metrics.json", {**metrics, "supernet_params": 90000})
        run.close()
        return path

    # The continuous supernet (0.99) is no network one can deploy; the derived one is, with
    # BatchNorm statistics re-estimated when the run measured that.
    plain = supernet_run("plain", val_accuracy_continuous=0.99, val_accuracy_discrete=0.7)
    recal = supernet_run(
        "recal",
        val_accuracy_continuous=0.99,
        val_accuracy_discrete=0.6,
        val_accuracy_discrete_recalibrated=0.8,
    )
    front = pareto_of([plain, recal], "params")
    assert {Path(p.run).name: (p.cost, p.accuracy) for p in front.points} == {
        "plain": (1000.0, 0.7),
        "recal": (1000.0, 0.8),
    }
    assert _front(front) == {"plain": False, "recal": True}
