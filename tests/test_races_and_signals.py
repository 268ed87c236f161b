"""Processes that meet: many starts on one ``--out`` at once, and SIGTERM mid-epoch."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nasplug import cli
from nasplug.run.rundir import CONFIG, LOCK, RunDir, RunError

TINY = [
    "--no-figures",  # report.md only: no test here looks at the pictures
    "--space-opt",
    "channels=2",
    "--space-opt",
    "layers=1",
    "--data-opt",
    "train_per_class=4",
    "--data-opt",
    "test_per_class=2",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--quiet",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
ENV.pop("NASPLUG_DEBUG", None)


def nasplug(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nasplug", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


# ---- one --out, many processes -------------------------------------------------------------
def _contend(root: str, barrier, results, rounds: int) -> None:
    """Create the same run as every other contender at once, ``rounds`` times."""
    for r in range(rounds):
        barrier.wait(timeout=60)
        try:
            run = RunDir.create(Path(root) / f"round{r}" / "run", {"pid": os.getpid()})
        except RunError as e:
            results.put((r, "lost", str(e)))
        except BaseException as e:  # noqa: BLE001 - reported to the test, which fails on it
            results.put((r, "error", repr(e)))
        else:
            results.put((r, "won", os.getpid()))
            run.close()
        barrier.wait(timeout=60)


def test_processes_creating_one_run_at_once_leave_exactly_one_run_intact(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n, rounds = 8, 25
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_contend, args=(str(tmp_path), barrier, results, rounds))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(n * rounds)]
    for p in procs:
        p.join(timeout=60)
    assert [g for g in got if g[1] == "error"] == []
    winners = Counter(r for r, kind, _ in got if kind == "won")
    assert all(winners[r] == 1 for r in range(rounds)), winners
    for r in range(rounds):
        run = tmp_path / f"round{r}" / "run"
        (winner,) = (who for rr, kind, who in got if rr == r and kind == "won")
        assert json.loads((run / CONFIG).read_text()) == {"pid": winner}
        assert sorted(p.name for p in run.iterdir()) == [CONFIG]  # no lock, no temporary file
    for _, kind, line in got:
        if kind == "lost":
            assert "\n" not in line and "choose another --out" in line


@pytest.mark.slow
def test_concurrent_starts_on_one_out_give_one_complete_run(tmp_path):
    out = tmp_path / "run"
    procs = [nasplug("run", *TINY, "--epochs", "1", "--out", out, cwd=tmp_path) for _ in range(4)]
    done = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    won = [d for d in done if d[0] == 0]
    lost = [d for d in done if d[0] != 0]
    assert len(won) == 1, done
    for code, _, err in lost:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "choose another --out" in err
    assert f"run directory: {out}" in won[0][1]
    for name in ("config.json", "genotype.json", "metrics.json"):
        assert (out / name).is_file(), name
    shown = subprocess.run(
        [sys.executable, "-m", "nasplug", "show", str(out)], env=ENV, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "genotype" in shown.stdout, shown.stderr
    resumed = subprocess.run(
        [sys.executable, "-m", "nasplug", "run", "--resume", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / LOCK).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing else was left behind


# ---- SIGTERM -------------------------------------------------------------------------------
EPOCHS = 2
SLOW_EPOCHS = [
    "--space-opt",
    "channels=2",
    "--space-opt",
    "layers=1",
    "--data-opt",
    "train_per_class=16",
    "--data-opt",
    "test_per_class=4",
    "--batch-size",
    "8",
    "--device",
    "cpu",
    "--epochs",
    str(EPOCHS),
    "--quiet",
]


def _term_after_first_checkpoint(proc: subprocess.Popen, ckpt: Path) -> tuple[int, str]:
    deadline = time.time() + 120
    while not ckpt.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint was written: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120), proc.stderr.read()


@pytest.mark.parametrize("command", ["run", "train"])
def test_sigterm_mid_epoch_stops_in_one_line_keeps_the_checkpoint_and_resumes(
    tmp_path, command, capsys
):
    import torch

    out = tmp_path / "out"
    if command == "run":
        args, phase = ["run", *SLOW_EPOCHS, "--out", out], "search"
    else:
        genotype = tmp_path / "g.txt"
        genotype.write_text(
            "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2], "
            "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])"
        )
        args, phase = ["train", genotype, *SLOW_EPOCHS, "--out", out], "train"
    ckpt = out / "checkpoints" / f"{phase}.pt"
    code, err = _term_after_first_checkpoint(nasplug(*args, cwd=tmp_path), ckpt)
    lines = err.strip().splitlines()
    assert code == 143 and len(lines) == 1, err
    assert lines[0].startswith("nasplug: terminated (SIGTERM)")
    assert f"resume with `nasplug {command} --resume {out}`" in lines[0]
    assert not (out / LOCK).exists() and not list(out.rglob("*.tmp"))
    kept = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= kept < EPOCHS
    assert cli.main([command, "--resume", str(out)]) == 0, capsys.readouterr().err
    resumed = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in resumed if e["event"] == "resume"] == [kept]
    assert torch.load(ckpt, weights_only=True)["epoch"] == EPOCHS
