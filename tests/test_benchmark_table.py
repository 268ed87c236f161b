"""Runs on a space that offers a benchmark table record and show its value of the genotype.

The core checks the capability (``OffersBenchmark``), never a space's name: a tiny space of the
test suite's own, with a table of its own, stands for any space.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nasplug
from nasplug.core.interfaces import BenchmarkTable, OffersBenchmark
from nasplug.core.options import OptionError
from nasplug.core.types import Genotype
from nasplug.report.summary import summary_text
from nasplug.testing import TinySoftmax, TinySpace

LABEL = "made-up accuracy (%) of a tiny table"
SETTINGS = {
    "data_opts": {"train_per_class": 4, "test_per_class": 2},
    "strategy_opts": {"candidates": 2, "train_epochs": 1},
    "batch_size": 16,
    "device": "cpu",
    "epochs": 1,
}


class WidthTable:
    """A table scoring a TinySpace genotype by its hidden width."""

    label = LABEL
    metric = "table_accuracy"

    def query(self, genotype: Genotype) -> float:
        return 50.0 + int(genotype.spec["choices"]["width"])

    def best(self) -> float:
        return 58.0


class TabledSpace(TinySpace):
    def benchmark(self) -> BenchmarkTable:
        return WidthTable()


class MissingTableSpace(TinySpace):
    def benchmark(self) -> BenchmarkTable:
        raise OptionError('the table needs a package: pip install "made-up[bench]"')


def _search(space: TinySpace, out: Path, quiet: bool = True) -> nasplug.SearchRun:
    return nasplug.search(
        space, TinySoftmax(), "random", "fashion-mnist-small", out=out, quiet=quiet, **SETTINGS
    )


def test_a_run_records_and_shows_the_table_value_of_its_genotype(tmp_path: Path) -> None:
    assert isinstance(TabledSpace(), OffersBenchmark)
    assert isinstance(WidthTable(), BenchmarkTable)
    runs = [_search(TabledSpace(widths=w), tmp_path / f"w{w}") for w in ("4", "8")]
    for run, value in zip(runs, (54.0, 58.0), strict=True):
        assert run.metrics["table_accuracy"] == value
        assert run.metrics["table_label"] == LABEL
        assert f"benchmark table, the genotype's {LABEL}: {value:.2f}" in summary_text(run.run_dir)
        assert f"the genotype's {LABEL}: {value:.2f}." in (run.run_dir / "report.md").read_text()
    table = nasplug.compare([r.run_dir for r in runs])
    assert f"table: the genotype's {LABEL}" in table
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert header.split(" | ")[3] == "table"
    rows = [line for line in table.splitlines() if str(tmp_path) in line]
    assert [row.split(" | ")[3] for row in rows] == ["54.0000", "**58.0000**"]


def test_without_its_table_a_run_still_works_and_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NASPLUG_QUIET", "0")  # the test suite silences runs; this one speaks
    found = _search(MissingTableSpace(), tmp_path / "run", quiet=False)
    assert "table_accuracy" not in found.metrics and "table_label" not in found.metrics
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "benchmark table" in line]
    assert notes == [
        "nasplug: note: no benchmark table value for this run: the table needs a package: "
        'pip install "made-up[bench]"'
    ]
    assert "benchmark table" not in summary_text(found.run_dir)
    assert "| table |" not in nasplug.compare([found.run_dir])


def test_spaces_without_a_table_record_nothing(tmp_path: Path) -> None:
    found = _search(TinySpace(), tmp_path / "run")
    assert not isinstance(TinySpace(), OffersBenchmark)
    assert "table_accuracy" not in found.metrics


def test_a_trained_genotype_records_and_shows_its_table_value(tmp_path: Path) -> None:
    found = _search(TabledSpace(widths="8"), tmp_path / "search")
    trained = found.train(epochs=1, batch_size=16, device="cpu", quiet=True, out=tmp_path / "t")
    assert trained.result["table_accuracy"] == 58.0
    assert trained.result["table_label"] == LABEL
    assert f"the genotype's {LABEL}: 58.00" in summary_text(trained.run_dir)
    table = nasplug.compare([found.run_dir, trained.run_dir])
    trained_row = next(line for line in table.splitlines() if str(trained.run_dir) in line)
    assert trained_row.split(" | ")[3] == "**58.0000**"
