"""The Python API: search, train and compare from Python, the same code path as the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nasplug
from nasplug.cli import main
from nasplug.core.options import OptionError
from nasplug.core.registry import PluginError
from nasplug.run.rundir import RunError
from nasplug.testing import TinySoftmax, TinySpace

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "space_opts": {"channels": 4, "layers": 2},
    "data_opts": {"train_per_class": 16, "test_per_class": 8},
    "batch_size": 32,
    "device": "cpu",
    "epochs": 1,
    "figures": False,  # report.md only: no test here looks at the pictures
    "quiet": True,
}


def _timeless(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k}


def test_search_by_name_in_memory() -> None:
    found = nasplug.search("cell", "sparsemax", "darts", augment="no-flip", **TINY)
    assert isinstance(found, nasplug.SearchRun)
    assert found.run_dir is None and found.genotype.space == "cell"
    assert 0.0 <= found.metrics["val_accuracy"] <= 1.0
    assert found.history and found.config["relax"] == "sparsemax"
    # The trained supernet and its weights, to look inside.
    assert found.supernet is not None and found.weights is not None
    assert set(found.weights) == {c.name for c in found.space.choices()}
    x = found.data.test[0][:4].float()
    with torch.no_grad():
        assert found.supernet.eval()(x, found.weights).shape == (4, 10)
        assert found.build()(x).shape == (4, 10)
    trained = found.train(epochs=1, batch_size=32, device="cpu", quiet=True)
    assert isinstance(trained, nasplug.TrainRun) and trained.run_dir is None
    assert trained.config["augment"] == "no-flip"  # the search's own setting
    assert found.train(epochs=1, augment="off", quiet=True).config["augment"] == "off"
    assert 0.0 <= trained.metric <= 1.0 and trained.result["params"] > 0
    assert trained.result["method"] == "discrete" and len(trained.history) == 1


def test_search_with_instances() -> None:
    """Plugins as instances: a space and relaxation that are not registered at all."""
    found = nasplug.search(
        TinySpace(widths="4,8"),
        TinySoftmax(),
        "random",
        "fashion-mnist-small",
        strategy_opts={"candidates": 2},
        **{k: v for k, v in TINY.items() if k != "space_opts"},
    )
    assert found.config["space"] == "TinySpace"
    assert found.config["relax"] == "TinySoftmax"
    assert found.supernet is None and found.weights is None
    assert found.build()(found.data.test[0][:2].float()).shape == (2, 10)


def test_cli_and_api_give_the_same_result(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    argv = ["run", "--relax", "sparsemax", "--out", str(out), "--quiet", "--device", "cpu"]
    argv += ["--epochs", "1", "--batch-size", "32"]
    argv += ["--space-opt", "channels=4", "--space-opt", "layers=2"]
    argv += ["--data-opt", "train_per_class=16", "--data-opt", "test_per_class=8"]
    assert main(argv) == 0
    found = nasplug.search(relax="sparsemax", out=tmp_path / "api", **TINY)
    cli_metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "genotype.json").read_text()) == found.genotype.to_dict()
    # Exact equality: the metrics hold strings too, which pytest.approx refuses since pytest 9.2.
    assert _timeless(cli_metrics) == _timeless(found.metrics)
    assert (found.run_dir / "report.md").is_file()
    table = nasplug.compare([out, found])
    assert table.count("sparsemax") >= 2


def test_train_a_run_directory_and_a_baseline(tmp_path: Path) -> None:
    found = nasplug.search(out=tmp_path / "s", **TINY)
    kw = {"epochs": 1, "batch_size": 32, "device": "cpu", "quiet": True}
    trained = nasplug.train(found.run_dir, out=tmp_path / "t", **kw)
    assert (tmp_path / "t" / "train.json").is_file()
    assert trained.config["source"] == str(found.run_dir)
    base = nasplug.train(found, baseline="resnet", channels=4, layers=1, out=tmp_path / "b", **kw)
    assert base.result["method"] == "resnet"
    table = nasplug.compare([found.run_dir, trained, base])
    assert "resnet baseline" in table and "derived network, trained" in table


def test_errors_are_exceptions_with_one_line() -> None:
    with pytest.raises(PluginError, match="unknown relaxation 'nope'; available: .*softmax"):
        nasplug.search(relax="nope", **TINY)
    with pytest.raises(OptionError, match="epochs must be a positive integer, got 0"):
        nasplug.search(**{**TINY, "epochs": 0})
    with pytest.raises(OptionError, match="augment must be one of standard, no-flip, off"):
        nasplug.search(**{**TINY, "augment": "sideways"})
    with pytest.raises(OptionError, match="relax_opts apply to a relax given by name"):
        nasplug.search(relax=TinySoftmax(), relax_opts={"tau": 1}, **TINY)
    with pytest.raises(RunError, match="does not exist"):
        nasplug.search(resume="no/such/run")
    with pytest.raises(OptionError, match="compare reads run directories"):
        nasplug.compare([nasplug.search(**TINY)])


def test_numpy_arrays_and_a_torch_dataset() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype(np.float32)
    y = (x[:, :2].sum(1, keepdims=True) + 0.1 * rng.normal(size=(96, 1))).astype(np.float32)
    kw = {"epochs": 1, "batch_size": 16, "device": "cpu", "quiet": True}
    found = nasplug.search("dense", "sparsemax", data=(x, y), task="regression", **kw)
    fingerprint = found.config["data_fingerprint"]["hash"]
    assert found.config["data"] == f"arrays-{fingerprint[:8]}"
    assert found.data.task.kind == "regression"
    assert "val_r2" in found.metrics

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    ds = torch.utils.data.TensorDataset(xt[24:], yt[24:])
    test = torch.utils.data.TensorDataset(xt[:24], yt[:24])
    streamed = nasplug.search(
        "dense", "sparsemax", data=ds, task="regression", test=test, stream="on", workers=0, **kw
    )
    assert streamed.config["data"].startswith("torch-dataset")
    assert streamed.data.task == found.data.task


@pytest.mark.slow
def test_the_example_script_runs(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "search_from_python.py"), "--tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    assert "genotype:" in p.stdout and "trained from scratch" in p.stdout


def test_the_seed_sets_a_trained_network_s_initial_weights() -> None:
    """With a vanishing learning rate the trained weights are the initial ones."""
    found = nasplug.search(**{**TINY, "epochs": 1})
    kw = {"epochs": 1, "batch_size": 32, "lr": 1e-12, "device": "cpu", "quiet": True}
    a, b, c = (dict(found.train(seed=s, **kw).model.named_parameters()) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.allclose(a[k], c[k], atol=1e-6) for k in a if a[k].dim() > 1)


def test_a_run_records_its_thread_count_and_a_resume_uses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = torch.get_num_threads()
    found = nasplug.search(out=tmp_path / "run", threads=1, **TINY)
    assert found.config["threads"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 1
    assert torch.get_num_threads() == before  # the process's own count is restored
    default = nasplug.search(**TINY)
    assert default.config["threads"] == before

    from nasplug.engine.rng import resumed_threads

    capsys.readouterr()
    torch.set_num_threads(2)
    try:
        assert resumed_threads(1, None) == 1
        assert "resuming with 1 threads as the run started (this process had 2)" in (
            capsys.readouterr().err
        )
        assert resumed_threads(1, 2) == 2
        assert "will not repeat bit for bit" in capsys.readouterr().err
        assert resumed_threads(None, None) is None  # a run from before the count was kept
        assert resumed_threads(2, None) == 2 and capsys.readouterr().err == ""
    finally:
        torch.set_num_threads(before)
    with pytest.raises(OptionError, match="threads must be an integer from 1 to 1024, got 0"):
        nasplug.search(**{**TINY, "threads": 0})
