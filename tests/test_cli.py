"""The command line end to end, in subprocesses, on tiny budgets."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = [
    "--no-figures",  # report.md only: no test here looks at the pictures
    "--space-opt",
    "channels=4",
    "--space-opt",
    "layers=2",
    "--data-opt",
    "train_per_class=16",
    "--data-opt",
    "test_per_class=8",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
]


def nasplug(*args, check=False, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "nasplug", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def last_error_line(p):
    lines = [line for line in p.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_run_then_show(tmp_path):
    out = tmp_path / "run"
    p = nasplug("run", *TINY, "--epochs", "1", "--out", out, check=True)
    assert "genotype:" in p.stdout and "validation accuracy" in p.stdout
    for name in (
        "config.json",
        "events.jsonl",
        "genotype.json",
        "metrics.json",
        "checkpoints/search.pt",
    ):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["val_accuracy"] <= 1 and "discretisation_gap" in metrics
    shown = nasplug("show", out, check=True).stdout
    assert "space=cell" in shown and "genotype:" in shown and "val_accuracy" in shown


def test_list_shows_every_axis_with_its_distribution():
    p = nasplug("list", check=True)
    for word in (
        "spaces:",
        "relaxations:",
        "strategies:",
        "datasets:",
        "cell",
        "softmax",
        "darts",
        "fashion-mnist-small",
        "nasplug 0.1.0",
    ):
        assert word in p.stdout


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[run]\nepochs = 1\nseed = 3\nrelax = "softmax"\n[space]\nchannels = 4\nlayers = 2\n'
        "[data]\ntrain_per_class = 16\ntest_per_class = 8\n"
    )
    out = tmp_path / "run"
    nasplug(
        "run",
        "--config",
        cfg,
        "--seed",
        "5",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--out",
        out,
        check=True,
    )
    conf = json.loads((out / "config.json").read_text())
    assert conf["seed"] == 5 and conf["epochs"] == 1 and conf["opts"]["space"]["channels"] == 4


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--relax", "sparsmax"], "unknown relaxation 'sparsmax'; available:"),
        (["--space-opt", "chanels=4"], "unknown option 'chanels' for space 'cell'; accepted:"),
        (
            ["--space-opt", "channels=four"],
            "option channels='four' of space 'cell' expects an integer",
        ),
        (["--space-opt", "channels"], "--space-opt takes KEY=VALUE"),
        (["--epochs", "0"], "epochs must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "run"
    p = nasplug("run", *TINY, "--epochs", "1", "--out", out, *args)
    assert p.returncode == 2
    assert needle in last_error_line(p)
    assert len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_malformed_toml_and_missing_run_dir(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nepochs=")
    p = nasplug("run", "--config", bad)
    assert p.returncode == 2 and "not valid TOML" in last_error_line(p)
    p = nasplug("show", tmp_path / "nope")
    assert p.returncode == 2 and "does not exist" in last_error_line(p)
    p = nasplug("run", "--resume", tmp_path)
    assert p.returncode == 2 and "not a nasplug run directory" in last_error_line(p)


def test_corrupt_checkpoint_is_reported_and_left_alone(tmp_path):
    out = tmp_path / "run"
    nasplug("run", *TINY, "--epochs", "1", "--out", out, check=True)
    ckpt = out / "checkpoints" / "search.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    (out / "metrics.json").unlink()  # unfinished: a resume of a finished run reads no checkpoint
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    p = nasplug("run", "--resume", out)
    assert p.returncode == 2
    assert "corrupt or truncated" in last_error_line(p) and "search.pt" in last_error_line(p)
    after = {
        p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "events.jsonl"
    }
    assert all(before[k] == v for k, v in after.items())


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    out = tmp_path / "run"
    p = nasplug("run", *TINY, "--epochs", "1", "--out", out, "--strategy-opt", "w_lr=1e30")
    assert p.returncode == 1
    assert "loss became" in last_error_line(p) and "no checkpoint was written" in last_error_line(p)
    # Nothing to resume: the directory is removed, so the next try may use the same --out.
    assert "removed" in last_error_line(p) and not out.exists()


def test_module_and_script_entry_points_agree():
    p = subprocess.run(["nasplug", "--help"], capture_output=True, text=True)
    q = nasplug("--help")
    assert p.returncode == q.returncode == 0
    assert "run" in p.stdout and p.stdout.split("\n", 1)[1] == q.stdout.split("\n", 1)[1]


def _logits(run_dir: Path):
    state = torch.load(run_dir / "checkpoints" / "search.pt", weights_only=True)
    return state["state"]["logits"], state["epoch"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    args = [
        "run",
        "--space-opt",
        "channels=4",
        "--space-opt",
        "layers=2",
        "--data-opt",
        "train_per_class=100",
        "--data-opt",
        "test_per_class=8",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--seed",
        "7",
        "--quiet",
        "--relax",
        "gumbel-hard",
    ]
    ref = tmp_path / "ref"
    nasplug(*args, "--out", ref, check=True)

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasplug", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed / "checkpoints" / "search.pt"
    deadline = time.time() + 240
    while time.time() < deadline:
        # The first epoch's checkpoint, not only its event: on a loaded machine writing the
        # checkpoint can take longer than the pause below.
        if checkpoint.exists() and _logits(killed)[1] == 1:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("first epoch never finished")
    time.sleep(0.3)  # inside the second epoch (an epoch takes seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    _, done = _logits(killed)
    assert done == 1

    p = nasplug("run", "--resume", killed, check=True)
    assert "genotype:" in p.stdout
    ref_logits, ref_epoch = _logits(ref)
    res_logits, res_epoch = _logits(killed)
    assert ref_epoch == res_epoch == 2
    for k in ref_logits:
        assert torch.equal(ref_logits[k], res_logits[k]), k
    assert json.loads((ref / "genotype.json").read_text()) == json.loads(
        (killed / "genotype.json").read_text()
    )


def test_bad_data_fails_before_the_run_directory_is_written(tmp_path):
    import numpy as np

    bad = tmp_path / "bad.npz"
    x = np.random.rand(20, 5).astype("float32")
    x[3, 2] = np.nan
    np.savez(bad, X=x, y=np.arange(20) % 2)
    out = tmp_path / "run"
    p = nasplug(
        "run",
        "--space",
        "dense",
        "--data",
        "npz",
        "--data-opt",
        f"path={bad}",
        "--out",
        out,
        "--epochs",
        "1",
        "--quiet",
    )
    assert p.returncode == 2 and "NaN" in last_error_line(p)
    assert not out.exists()
