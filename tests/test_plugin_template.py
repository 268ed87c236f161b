"""The template third-party plugin in examples/: discovered, listed, and searching with the built-ins.

When the example is pip-installed (as CI does) the installed distribution is used; otherwise
a ``*.dist-info`` generated from its pyproject.toml, with its ``src`` folder, is put on the path,
which is what pip would leave behind, minus the copying.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from nasplug.cli import main
from nasplug.core import registry
from nasplug.testing import (
    DatasetConformance,
    RelaxationConformance,
    SpaceConformance,
    StrategyConformance,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nasplug-example-plugin"
DIST = "nasplug-example-plugin"
PYPROJECT = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
ENTRY_POINTS: dict[str, dict[str, str]] = PYPROJECT["project"]["entry-points"]
AXIS_OF_GROUP = {group: axis for axis, group in registry.AXES.items()}


def _installed() -> bool:
    try:
        metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> list[str]:
    """Folders to put on sys.path so that the example is discoverable ([] if installed)."""
    if _installed():
        return []
    site = tmp_path_factory.mktemp("site")
    info = site / f"{DIST.replace('-', '_')}-{PYPROJECT['project']['version']}.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {PYPROJECT['project']['version']}\n"
    )
    lines = []
    for group, eps in ENTRY_POINTS.items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in eps.items()), ""]
    info.joinpath("entry_points.txt").write_text("\n".join(lines))
    return [str(site), str(EXAMPLE / "src")]


@pytest.fixture
def on_path(plugin_path, monkeypatch):
    monkeypatch.delenv("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    for p in reversed(plugin_path):
        monkeypatch.syspath_prepend(p)
    yield
    for name in [
        m for m in sys.modules if m == "nasplug_example" or m.startswith("nasplug_example.")
    ]:
        del sys.modules[name]


def nasplug(
    plugin_path: list[str], *args: object, timeout: int = 300
) -> subprocess.CompletedProcess:
    path = os.pathsep.join([*plugin_path, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
    env.pop("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", None)
    p = subprocess.run(
        [sys.executable, "-m", "nasplug", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def test_pyproject_registers_a_plugin_on_three_axes():
    assert PYPROJECT["project"]["name"] == DIST
    axes = {AXIS_OF_GROUP[group] for group in ENTRY_POINTS}
    assert axes == {"relaxation", "space", "strategy"}


def test_installed_distribution_matches_its_pyproject():
    if not _installed():
        pytest.skip(f"{DIST} is not installed (CI installs it with pip)")
    dist = metadata.distribution(DIST)
    assert dist.version == PYPROJECT["project"]["version"]
    found = {(ep.group, ep.name, ep.value) for ep in dist.entry_points}
    assert found == {(g, n, v) for g, eps in ENTRY_POINTS.items() for n, v in eps.items()}


def test_registry_finds_loads_and_lists_the_example(on_path, capsys):
    for group, eps in ENTRY_POINTS.items():
        axis = AXIS_OF_GROUP[group]
        for name, value in eps.items():
            info = registry.info(axis, name)
            assert (info.dist, info.value, info.builtin) == (DIST, value, False)
            assert registry.load(axis, name).__name__ == value.rsplit(":", 1)[1]
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for eps in ENTRY_POINTS.values():
        for name in eps:
            line = next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
            assert f"{DIST} {PYPROJECT['project']['version']} (third-party)" in line
            assert "BROKEN" not in line


TINY_CELL = [
    "--space-opt",
    "channels=4",
    "--space-opt",
    "layers=2",
    "--data-opt",
    "train_per_class=8",
    "--data-opt",
    "test_per_class=4",
    "--batch-size",
    "40",
]


def test_its_relaxation_searches_the_builtin_cell_space_with_darts(plugin_path, tmp_path):
    out = tmp_path / "run"
    p = nasplug(
        plugin_path,
        "run",
        "--space",
        "cell",
        "--relax",
        "fair-sigmoid",
        "--strategy",
        "darts",
        *TINY_CELL,
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
    )
    assert "genotype: normal:" in p.stdout
    config = json.loads((out / "config.json").read_text())
    assert (
        config["versions"]["relaxation:fair-sigmoid"] == f"{DIST} {PYPROJECT['project']['version']}"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["val_accuracy"] <= 1 and "discretisation_gap" in metrics
    assert (out / "report.md").exists() and (out / "figures" / "genotype.png").exists()


def show(run_dir: Path, capsys) -> str:
    assert main(["show", str(run_dir)]) == 0
    return capsys.readouterr().out


def test_its_space_searches_with_builtin_sparsemax(plugin_path, on_path, tmp_path, capsys):
    out = tmp_path / "run"
    p = nasplug(
        plugin_path,
        "run",
        "--no-figures",
        "--space",
        "mlp",
        "--relax",
        "sparsemax",
        "--strategy",
        "darts",
        "--data",
        "diabetes",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
    )
    assert "genotype: mlp:" in p.stdout
    genotype = json.loads((out / "genotype.json").read_text())
    assert set(genotype["spec"]["choices"]) == {
        "width:layer1",
        "activation:layer1",
        "width:layer2",
        "activation:layer2",
    }
    last = [
        json.loads(line)
        for line in (out / "events.jsonl").read_text().splitlines()
        if '"search_epoch"' in line
    ][-1]
    assert last["summary"]["mean_support"] < 4  # sparsemax's annealing left exact zeros
    shown = show(out, capsys)
    assert "genotype: mlp:" in shown and "width:layer1" in shown


def test_its_strategy_searches_the_builtin_dense_space(plugin_path, on_path, tmp_path, capsys):
    out = tmp_path / "run"
    nasplug(
        plugin_path,
        "run",
        "--no-figures",
        "--space",
        "dense",
        "--space-opt",
        "blocks=2",
        "--space-opt",
        "layers=2",
        "--space-opt",
        "width=8",
        "--strategy",
        "example-evolution",
        "--strategy-opt",
        "population=2",
        "--strategy-opt",
        "cycles=2",
        "--data",
        "diabetes",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
    )
    candidates = json.loads((out / "candidates.json").read_text())
    assert [c["candidate"] for c in candidates] == [0, 1, 2, 3]
    shown = show(out, capsys)
    assert "candidates (4):" in shown and "rank correlation (Spearman) with metric:" in shown


@pytest.mark.slow
def test_the_example_passes_its_own_tests(plugin_path):
    path = os.pathsep.join([*plugin_path, str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")])
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(EXAMPLE / "tests")],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": path.strip(os.pathsep), "OMP_NUM_THREADS": "1"},
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]


# ---- the complete examples of docs/plugins.md ------------------------------------------------
DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def docs() -> dict[str, object]:
    """The names defined by the ```python blocks of docs/plugins.md, each block run on its own."""
    import re

    names: dict[str, object] = {}
    for block in re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S):
        scope: dict[str, object] = {"__name__": "plugins_md"}
        exec(compile(block, str(DOCS), "exec"), scope)
        names.update(scope)
    return names


class TestDocsRelaxation(RelaxationConformance):
    @pytest.fixture
    def relaxation(self, docs):
        return docs["AnnealedSoftmax"]()


class TestDocsSpace(SpaceConformance):
    relaxations = ("softmax", "sparsemax", "gumbel-hard")

    @pytest.fixture
    def space(self, docs):
        return docs["ActivationSpace"](width=8)


class TestDocsStrategy(StrategyConformance):
    @pytest.fixture
    def strategy(self, docs):
        return docs["SampleAndTrain"](candidates=2)

    @pytest.fixture
    def space(self, docs):
        return docs["ActivationSpace"](width=8)


class TestDocsDataset(DatasetConformance):
    @pytest.fixture
    def dataset(self, docs):
        return docs["Blobs"](per_class=10)


def test_the_docs_benchmark_table_is_one(docs) -> None:
    from nasplug.core.interfaces import BenchmarkTable
    from nasplug.core.types import Genotype

    table = docs["ActivationTable"]()
    assert isinstance(table, BenchmarkTable)
    assert table.query(Genotype("ActivationSpace", {"choices": {"activation": "tanh"}})) == 89.5
    assert table.best() == 91.0
    with pytest.raises(ValueError, match="not an activation-space genotype"):
        table.query(Genotype("cell", {"normal": []}))
