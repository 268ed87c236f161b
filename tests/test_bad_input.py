"""Bad input through the command line, in subprocesses: exit status 2, at most three lines on
stderr and no traceback, nothing written, and an earlier valid run left valid."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY = [
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
    "--epochs",
    "1",
    "--quiet",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
ENV.pop("NASPLUG_DEBUG", None)


def nasplug(*args, cwd=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "nasplug", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        cwd=cwd,
        **kw,
    )


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One finished tiny run that every case must leave as it was."""
    root = tmp_path_factory.mktemp("bad_input")
    run = root / "good"
    p = nasplug("run", "--no-figures", *TINY, "--device", "cpu", "--out", run)
    assert p.returncode == 0, p.stderr
    return run


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


# Each case: (name, args given a scratch folder, what the one line must say). ``OUT`` is the
# path that must not appear.
CASES = [
    *(
        pytest.param(
            lambda d, flags=flags: ["run", *TINY, "--device", "cpu", "--out", d / "OUT", *flags],
            needle,
            id=f"run-budget-{name}",
        )
        for name, flags, needle in [
            ("negative", ["--budget", "params=-5k"], "the value must be positive"),
            (
                "unmeetable",
                ["--relax", "sparsemax", "--budget", "params=100"],
                "cannot be met on space 'cell': the smallest network it can derive costs",
            ),
            ("penalty-alone", ["--budget-penalty", "1"], "budget_penalty needs a budget"),
        ]
    ),
    pytest.param(
        lambda d: ["run", *TINY, "--device", "cuda", "--out", d / "OUT"],
        "CUDA is not available",
        marks=no_cuda,
        id="run-device-cuda",
    ),
    pytest.param(
        lambda d: [
            "run",
            *TINY,
            "--device",
            "cpu",
            "--out",
            d / "OUT",
            "--config",
            _write(d / "c.toml", '[run]\nseed = "abc"\n'),
        ],
        "seed must be an integer from 0",
        id="config-seed-text",
    ),
    pytest.param(
        lambda d: [
            "run",
            *TINY,
            "--out",
            d / "OUT",
            "--config",
            _write(d / "c.toml", "[run]\ndevice = 5\n"),
        ],
        "device must be text",
        id="config-device-number",
    ),
    pytest.param(
        lambda d: ["run", *TINY, "--out", d / "OUT", "--config", _write(d / "c.toml", "run = 5\n")],
        "run must be a table",
        id="config-run-number",
    ),
    pytest.param(
        lambda d: ["run", *TINY, "--device", "cpu", "--config", d, "--out", d / "OUT"],
        "cannot be read (Is a directory)",
        id="config-is-directory",
    ),
    pytest.param(
        lambda d: ["run", *TINY, "--device", "cpu", "--out", _write(d / "OUT", "x")],
        "is an existing file",
        id="out-is-file",
    ),
    pytest.param(
        lambda d: [
            "run",
            "--data",
            "diabetes",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--out",
            d / "OUT",
        ],
        "space 'cell' cannot take the data of 'diabetes'",
        id="cell-space-vector-data",
    ),
    pytest.param(
        lambda d: [
            "train",
            _write(
                d / "g.json",
                '{"space": "cell", "spec": {"normal": 5, '
                '"normal_concat": [2], "reduce": [], "reduce_concat": [2]}}',
            ),
            "--device",
            "cpu",
            "--data-opt",
            "train_per_class=2",
            "--data-opt",
            "test_per_class=2",
            "--out",
            d / "OUT",
        ],
        "the genotype does not fit space 'cell'",
        id="genotype-normal-number",
    ),
    pytest.param(
        lambda d: [
            "train",
            _write(
                d / "g.txt",
                "Genotype(normal=[('skip_connect', 0)], "
                "normal_concat=range(0, 1000000000000), reduce=[], reduce_concat=[2])",
            ),
            "--device",
            "cpu",
            "--out",
            d / "OUT",
        ],
        "at most 1024 accepted",
        id="genotype-huge-range",
    ),
    pytest.param(
        lambda d: ["train", d / "GOOD", "--device", "cuda", "--out", d / "OUT"],
        "CUDA is not available",
        marks=no_cuda,
        id="train-device-cuda",
    ),
]


@pytest.mark.parametrize("make_args,needle", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(good, tmp_path, make_args, needle):
    before = snapshot(good)
    (tmp_path / "GOOD").symlink_to(good)
    args = make_args(tmp_path)
    out = tmp_path / "OUT"
    existed = out.exists()
    p = nasplug(*args, cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    assert 1 <= len(lines) <= 3 and "Traceback" not in p.stderr, p.stderr
    assert needle in lines[-1], lines[-1]
    assert out.exists() == existed and not (tmp_path / "runs").exists()
    assert snapshot(good) == before


def test_output_closed_early_is_one_line(good):
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasplug", "show", str(good)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # like `nasplug show DIR | head` once head has gone
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 2
    assert err.strip().splitlines() == [
        "nasplug: error: output closed before it was all written (broken pipe)"
    ]


def test_the_earlier_run_is_still_valid(good):
    # Runs after the matrix (tests run in file order): show reads it and --resume finishes.
    shown = nasplug("show", good)
    assert shown.returncode == 0 and "genotype:" in shown.stdout
    resumed = nasplug("run", "--resume", good)
    assert resumed.returncode == 0, resumed.stderr
    assert "genotype:" in resumed.stdout and not (good / "nasplug.lock").exists()
