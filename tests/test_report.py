"""Reports of runs: pictures, report.md, `nasplug show` / `nasplug report`, TensorBoard scalars."""

from __future__ import annotations

import json
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasplug.cli import main
from nasplug.report import plotting
from nasplug.report import summary as report

TINY = [
    "--space-opt",
    "channels=4",
    "--space-opt",
    "layers=2",
    "--space-opt",
    "nodes=2",
    "--data-opt",
    "train_per_class=8",
    "--data-opt",
    "test_per_class=4",
    "--batch-size",
    "40",
    "--device",
    "cpu",
    "--quiet",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A real tiny DARTS search with sparsemax on the cell space, run once for the module."""
    out = tmp_path_factory.mktemp("runs") / "cell"
    assert main(["run", *TINY, "--relax", "sparsemax", "--epochs", "3", "--out", str(out)]) == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def assert_picture(path: Path) -> None:
    """A valid PNG that is not blank: varied pixels, a fair share of them not background."""
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width >= 400 and im.height >= 250, f"{path.name} is tiny: {im.size}"
        grey = np.asarray(im.convert("L"), dtype=np.float64)
    assert grey.std() > 15, f"{path.name} looks blank"
    assert (grey < 240).mean() > 0.02, f"{path.name} has almost nothing drawn"


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


# ---- a finished run -------------------------------------------------------------------------
def test_a_run_writes_its_report_and_pictures(finished):
    text = (finished / "report.md").read_text()
    for needle in (
        "# nasplug run: cell · sparsemax · darts · fashion-mnist-small",
        "## Final metrics",
        "## Discretisation gap",
        "## Genotype",
        "normal: 2 <-",
        "## Mixing weights",
        "## Configuration",
        "val_accuracy",
    ):
        assert needle in text, needle
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {
        "figures/genotype.png",
        "figures/search-curves.png",
        "figures/sparsity.png",
        "figures/weights-normal.png",
        "figures/weights-reduce.png",
    } <= set(linked)
    for name in linked:
        assert_picture(finished / name)
    shown = json.loads(re.search(r"```json\n(.*?)```", text, flags=re.S).group(1))
    assert shown == json.loads((finished / "genotype.json").read_text())


def test_the_cell_is_drawn_with_op_names_on_its_edges(finished):
    genotype = json.loads((finished / "genotype.json").read_text())
    ops = {op for kind in ("normal", "reduce") for op, _ in genotype["spec"][kind]}
    svg = (finished / "figures" / "genotype.svg").read_text()
    texts = {
        "".join(el.itertext()).strip()
        for el in ET.fromstring(svg).iter()
        if el.tag.endswith("text")
    }
    assert ops <= texts, f"op names missing from the drawing: {ops - texts}"
    assert {"normal cell", "reduce cell"} <= texts


def test_report_command_writes_the_files_again(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    shutil.rmtree(run / "figures")
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(run / "report.md") in printed and str(run / "figures" / "genotype.svg") in printed
    assert all(Path(p).exists() for p in printed)
    assert_picture(run / "figures" / "weights-normal.png")


def test_a_run_without_figures_writes_report_md_only_and_report_draws_them_later(tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["run", *TINY, "--epochs", "1", "--no-figures", "--out", str(out)]) == 0
    assert not (out / "figures").exists()
    text = (out / "report.md").read_text()
    assert "Pictures were not drawn (`figures` off)" in text
    assert "![" not in text
    assert json.loads((out / "config.json").read_text())["figures"] is False
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    drawn = sorted((out / "figures").glob("*.png"))
    assert drawn and "![" in (out / "report.md").read_text()
    assert_picture(drawn[0])


def test_show_prints_config_metrics_genotype_edges_and_gap(finished, capsys):
    assert main(["show", str(finished)]) == 0
    out = capsys.readouterr().out
    for needle in (
        "config: space=cell, relax=sparsemax, strategy=darts",
        "space options: channels=4",
        "metrics:",
        "val_accuracy:",
        "genotype: normal:",
        "reduce:",
        "discretisation gap (accuracy on the architecture half): continuous",
        "discrete with BatchNorm re-estimated on its path",
        "final mixing weights per choice:",
        "choice",
        "support",
        "entropy",
        "dominant",
    ):
        assert needle in out, needle
    edges = [line for line in out.splitlines() if re.match(r"\s+(normal|reduce):\d<-\d\s", line)]
    assert len(edges) == 2 * 5  # two cells of two nodes: 2 + 3 edges each


# ---- runs that did not finish, and directories that are not runs ----------------------------
def test_an_interrupted_run_gets_what_it_has(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    for name in ("metrics.json", "genotype.json", "report.md"):
        (run / name).unlink()
    shutil.rmtree(run / "figures")
    events = (run / "events.jsonl").read_text().splitlines()
    kept = [e for e in events if json.loads(e)["event"] in ("start", "search_epoch")][:-1]
    (run / "events.jsonl").write_text("\n".join(kept) + '\n{"event": "search_ep')  # torn last line
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "**Unfinished**: 2 search epochs logged" in text and "--resume" in text
    assert "## Final metrics" not in text
    for name in ("genotype.png", "weights-normal.png", "sparsity.png"):
        assert_picture(run / "figures" / name)
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "status: unfinished: 2 search epochs logged" in shown
    assert "genotype (derived after the last logged epoch): normal:" in shown


def test_a_run_killed_before_its_first_epoch_gets_a_report_without_pictures(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {
                "space": "cell",
                "relax": "softmax",
                "strategy": "darts",
                "data": "fashion-mnist-small",
            }
        )
    )
    assert main(["report", str(run)]) == 0
    assert "**Unfinished**: 0 search epochs" in (run / "report.md").read_text()
    assert not (run / "figures").exists()


@pytest.mark.parametrize(
    "case,needle",
    [
        ("missing", "does not exist"),
        ("not a run", "is not a nasplug run directory (no config.json)"),
        ("damaged metrics", "metrics.json is damaged"),
    ],
)
def test_report_on_a_bad_directory_is_one_line_and_exit_2(finished, tmp_path, capsys, case, needle):
    target = tmp_path / "x"
    if case == "not a run":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif case == "damaged metrics":
        copy_run(finished, target)
        (target / "metrics.json").write_text('{"val_accuracy": 0.')
    before = sorted(p.name for p in target.rglob("*")) if target.exists() else None
    assert main(["report", str(target)]) == 2
    line = error_line(capsys)
    assert line.startswith("nasplug: error: ") and needle in line
    if case == "not a run":
        assert sorted(p.name for p in target.rglob("*")) == before  # nothing written


# ---- other runs: several phases, training, candidates, other genotype shapes --------------------
def synthetic_run(root: Path) -> Path:
    """A run as a progressive search with two phases, pruned candidates, training and candidates."""
    root.mkdir()
    (root / "config.json").write_text(
        json.dumps({"space": "made-up", "relax": "sparsemax", "strategy": "pdarts", "data": "tiny"})
    )
    events = [{"event": "start"}]
    ops = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"]
    for phase, cands, epochs in (("stage1", ops, 3), ("stage2", ops[1:3], 2)):
        for e in range(epochs):
            rows = []
            for c in ("normal:2<-0", "normal:2<-1", "reduce:2<-0", "reduce:2<-1"):
                w = np.random.default_rng(e).dirichlet(np.ones(len(cands)))
                w[-1] = 0.0 if e else w[-1]
                rows.append(
                    {
                        "choice": c,
                        "candidates": cands,
                        "weights": list(w / w.sum()),
                        "entropy": 1.0,
                        "support": int((w > 0).sum()),
                        "dominant": cands[0],
                    }
                )
            events.append(
                {
                    "event": "search_epoch",
                    "phase": phase,
                    "epoch": e + 1,
                    "train": {"loss": 2.0 - e / 5, "accuracy": 0.3 + e / 10},
                    "val": {"loss": 2.1 - e / 6, "accuracy": 0.25 + e / 10},
                    "edges": rows,
                    "summary": {
                        "mean_support": 3.0 - e,
                        "max_support": 4.0,
                        "mean_entropy": 1.2 - e / 5,
                        "max_entropy": 1.39,
                    },
                    "seconds": 2.0,
                    "step_seconds": 0.1 - e / 50,
                    "genotype": {
                        "space": "cell",
                        "spec": {
                            "normal": [["skip_connect", 0], ["sep_conv_3x3", 1]],
                            "normal_concat": [2],
                            "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]],
                            "reduce_concat": [2],
                        },
                    },
                }
            )
    for e in range(4):
        events.append(
            {
                "event": "train_epoch",
                "phase": "train",
                "epoch": e + 1,
                "train": {"loss": 1.5 - e / 5, "accuracy": 0.5 + e / 20},
                "test": {"loss": 1.6 - e / 6, "accuracy": 0.45 + e / 20},
                "seconds": 1.0,
            }
        )
    (root / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    rng = np.random.default_rng(0)
    rows = [
        {
            "index": i,
            "params": 100 * (i + 1),
            "depth": 3,
            "noise": float(rng.normal()),
            "metric": 0.5 + 0.01 * i,
            "status": "ok",
            "genotype": {"space": "x"},
        }
        for i in range(6)
    ]
    (root / "candidates.json").write_text(json.dumps(rows))
    return root


def test_phases_pruned_candidates_training_and_candidates_are_reported(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "## Training" in text and "## Candidates" in text
    for name in (
        "weights-normal.png",
        "weights-reduce.png",
        "search-curves.png",
        "sparsity.png",
        "training-curves.png",
        "genotype.png",
        "candidates.png",
    ):
        assert_picture(run / "figures" / name)
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "candidates (6):" in out and "rank correlation (Spearman) with metric:" in out
    assert "params: +1.000" in out and "depth: n/a" in out
    assert "index:" not in out  # bookkeeping columns are not correlated


def test_weights_heatmap_names_every_candidate_over_the_phases():
    records = [json.loads(line) for line in synthetic_run_lines()]
    figures = dict(plotting.weights_figures(records))
    assert set(figures) == {"normal", "reduce"}
    ax = figures["normal"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "none",
        "max_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
    ]
    assert len(ax.lines) == 1  # the boundary between the two phases


def synthetic_run_lines() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run = synthetic_run(Path(d) / "run")
        return [
            line
            for line in (run / "events.jsonl").read_text().splitlines()
            if '"search_epoch"' in line
        ]


@pytest.mark.parametrize(
    "spec",
    [
        {
            "edges": [[0, 1], [1, 2], [0, 2], [2, 3], [1, 3]],
            "layers": 2,
            "width": 8,
            "activation": "relu",
        },
        {"choices": {"width:layer1": "32", "activation:layer1": "relu", "width:layer2": "16"}},
    ],
)
def test_dag_and_per_choice_genotypes_are_drawn(spec, tmp_path):
    fig = plotting.genotype_figure({"space": "x", "spec": spec}, "derived")
    (png,) = plotting.save(fig, tmp_path / "g")
    assert_picture(png)


def test_a_genotype_of_unknown_shape_is_not_drawn():
    assert plotting.genotype_figure({"space": "x", "spec": {"layers": 3}}) is None


# ---- TensorBoard ------------------------------------------------------------------------------
def test_tensorboard_without_the_package_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--tensorboard", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert (
        "--tensorboard needs the tensorboard package" in line and "pip install tensorboard" in line
    )
    assert not out.exists()


class FakeWriter:
    scalars: list[tuple[str, float, int]] = []

    def __init__(self, log_dir: str) -> None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_tensorboard_gets_the_scalars_of_every_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_summary_writer", lambda: FakeWriter)
    FakeWriter.scalars = []
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--space",
                "dense",
                "--space-opt",
                "blocks=2",
                "--space-opt",
                "layers=2",
                "--space-opt",
                "width=8",
                "--data",
                "diabetes",
                "--relax",
                "sparsemax",
                "--epochs",
                "2",
                "--batch-size",
                "64",
                "--device",
                "cpu",
                "--quiet",
                "--tensorboard",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    tags = {(tag, step) for tag, _, step in FakeWriter.scalars}
    for step in (1, 2):
        for tag in (
            "search/train/loss",
            "search/val/r2",
            "search/support/mean",
            "search/entropy/mean",
            "search/time/step_seconds",
        ):
            assert (tag, step) in tags, (tag, step)
    assert ("discretisation/r2/gap", 2) in tags
    assert (out / "tensorboard").is_dir()
    assert json.loads((out / "config.json").read_text())["tensorboard"] is True


def test_a_training_run_reports_its_curves_and_test_metrics(finished, tmp_path, capsys):
    run = tmp_path / "train"
    run.mkdir()
    genotype = json.loads((finished / "genotype.json").read_text())
    config = {
        "command": "train",
        "space": "cell",
        "baseline": None,
        "data": "fashion-mnist-small",
        "genotype": genotype,
        "epochs": 3,
        "opts": {"space": {"nodes": 2}, "data": {}},
    }
    (run / "config.json").write_text(json.dumps(config))
    events = [
        {
            "event": "train_epoch",
            "phase": "train",
            "epoch": e + 1,
            "train": {"loss": 2.0 - e / 4, "accuracy": 0.3 + e / 10},
            "test": {"loss": 2.1 - e / 5, "accuracy": 0.25 + e / 10},
        }
        for e in range(3)
    ]
    (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "**Unfinished**: 3 training epochs" in text and "nasplug train --resume" in text
    (run / "train.json").write_text(
        json.dumps(
            {
                "metric": "accuracy",
                "test_accuracy": 0.45,
                "test": {"loss": 1.6, "accuracy": 0.45},
                "params": 999,
            }
        )
    )
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert text.startswith("# nasplug training run: cell genotype on fashion-mnist-small")
    assert "| test_accuracy | 0.4500 |" in text and "Finished: 3 training epochs." in text
    assert_picture(run / "figures" / "training-curves.png")
    assert_picture(run / "figures" / "genotype.png")
    capsys.readouterr()
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert (
        "test_accuracy: 0.4500" in out and "test_loss: 1.6000" in out and "genotype: normal:" in out
    )


def test_a_picture_that_cannot_be_drawn_does_not_cost_the_report(
    finished, tmp_path, monkeypatch, capsys
):
    run = copy_run(finished, tmp_path / "run")
    shutil.rmtree(run / "figures")

    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plotting, "sparsity_figure", broken)
    assert main(["report", str(run)]) == 0
    assert (
        "support size, entropy and step time not drawn: RuntimeError: no ink"
        in capsys.readouterr().err
    )
    text = (run / "report.md").read_text()
    assert "## Pictures not drawn" in text and "figures/sparsity.png" not in text
    assert_picture(run / "figures" / "genotype.png")
    assert_picture(run / "figures" / "weights-normal.png")
