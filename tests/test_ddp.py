"""Data-parallel search under a real ``torchrun``: 2 CPU processes, gloo, tiny budgets.

What a user relies on: every rank derives the same genotype from the same mixing weights;
a data-parallel search equals a single-process search with the same global batch (exactly, up
to float rounding, for spaces without batch statistics; with BatchNorm each rank normalises over
its own shard, as in any data-parallel training); hard Gumbel samples are shared by the ranks; a
killed data-parallel run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nasplug.cli import main
from nasplug.core.types import Data, Task
from nasplug.engine import ddp
from nasplug.engine.trainer import NonFiniteLoss, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
DATA = [
    "--data",
    "fashion-mnist-small",
    "--data-opt",
    "train_per_class=16",
    "--data-opt",
    "test_per_class=8",
    "--device",
    "cpu",
    "--quiet",
]
CELL = [
    "--space",
    "cell",
    "--space-opt",
    "channels=4",
    "--space-opt",
    "layers=2",
    *DATA,
    "--batch-size",
    "32",
]
DENSE = [
    "--space",
    "dense",
    "--space-opt",
    "blocks=4",
    "--space-opt",
    "layers=2",
    "--space-opt",
    "width=16",
    *DATA,
    "--batch-size",
    "16",
]
pytestmark = pytest.mark.slow

RANK_LINE = re.compile(r"nasplug: rank (\d)/2: genotype (\w+), search (\w+)")
#: Largest difference allowed between a 2-process and a 1-process search of the dense space
#: (measured: 4e-10 for the logits, 1.5e-8 for the weights; sums of shard means vs one mean).
TOLERANCE = 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_cmd(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{_free_port()}",
        "-m",
        "nasplug",
        "run",
        *_no_figures(args),
    ]


def _no_figures(args: tuple[str, ...]) -> list[str]:
    """The run's flags, with report.md only unless resuming (a resume keeps its own setting)."""
    args = tuple(map(str, args))
    return list(args) if "--resume" in args else ["--no-figures", *args]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    p = subprocess.run(_torchrun_cmd(*args), capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr[-4000:]}"
    return p


def single(capsys, *args: str) -> None:
    assert main(["run", *_no_figures(args)]) == 0
    capsys.readouterr()


def rank_lines(p: subprocess.CompletedProcess) -> dict[int, tuple[str, str]]:
    found = {int(r): (g, h) for r, g, h in RANK_LINE.findall(p.stderr)}
    assert sorted(found) == [0, 1], p.stderr[-4000:]
    return found


def final_state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "search.pt", weights_only=True)["state"]


def assert_same_search(a: Path, b: Path, tolerance: float) -> None:
    sa, sb = final_state(a), final_state(b)
    for part in ("logits", "net"):
        assert sa[part].keys() == sb[part].keys()
        for k in sa[part]:
            torch.testing.assert_close(
                sb[part][k], sa[part][k], rtol=0, atol=tolerance, msg=f"{part} {k}"
            )
    genotypes = [json.loads((run / "genotype.json").read_text()) for run in (a, b)]
    assert genotypes[0] == genotypes[1]


@pytest.mark.parametrize("relax", ["softmax", "gumbel-hard"])
def test_cell_search_ranks_derive_the_same_genotype(tmp_path, relax):
    out = tmp_path / "run"
    p = torchrun(*CELL, "--relax", relax, "--epochs", "1", "--out", out)
    lines = rank_lines(p)
    # Same genotype, and the same per-epoch mixing weights and metrics on both ranks: the
    # validation metrics agree because BatchNorm statistics are averaged before evaluating.
    assert lines[0] == lines[1]
    assert "warning" not in p.stderr
    assert "genotype:" in p.stdout and p.stdout.count("run directory:") == 1
    assert (out / "genotype.json").exists() and (out / "checkpoints" / "search.pt").exists()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "start" for e in events) == 1  # rank 1 writes nothing


def test_dense_search_on_two_processes_equals_one_process(tmp_path, capsys):
    args = [*DENSE, "--relax", "softmax", "--epochs", "2"]
    single(capsys, *args, "--out", tmp_path / "one")
    p = torchrun(*args, "--out", tmp_path / "two")
    assert rank_lines(p)[0] == rank_lines(p)[1]
    assert_same_search(tmp_path / "one", tmp_path / "two", TOLERANCE)


def test_killed_hard_gumbel_run_resumes_and_equals_one_process(tmp_path, capsys):
    """Hard Gumbel draws a sample per step; sharing it needs the same RNG on every rank, also
    after a resume (each rank restores the checkpointed generator state)."""
    epochs = 30
    args = [*DENSE, "--relax", "gumbel-hard", "--epochs", str(epochs)]
    single(capsys, *args, "--out", tmp_path / "one")

    out = tmp_path / "two"
    proc = subprocess.Popen(
        _torchrun_cmd(*args, "--out", out),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = out / "checkpoints" / "search.pt"
    try:
        deadline = time.time() + 600
        while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
    finally:
        # torchrun passes SIGTERM on to its workers and waits for them (its workers run in
        # process groups of their own, so killing torchrun alone would orphan them).
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    done = torch.load(ckpt, weights_only=True)["epoch"]
    time.sleep(0.5)
    assert torch.load(ckpt, weights_only=True)["epoch"] == done, "a worker outlived torchrun"
    if done >= epochs:
        pytest.skip("the run finished before it could be killed")
    assert not (out / "genotype.json").exists()

    p = torchrun("--resume", out)
    assert rank_lines(p)[0] == rank_lines(p)[1]
    events = [
        json.loads(line)
        for line in (out / "events.jsonl").read_text().splitlines()
        if line.endswith("}")
    ]
    assert any(e["event"] == "resume" and e["epoch"] == done for e in events)
    assert_same_search(tmp_path / "one", out, TOLERANCE)


# ---- the collectives, in 2 spawned gloo processes ----------------------------------------------
def _collectives(rank: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    res = {}
    # Gradients: averaged; parameters without a gradient are left alone; layouts are kept.
    p = torch.nn.Parameter(torch.zeros(2, 3, 4, 4).contiguous(memory_format=torch.channels_last))
    p.grad = torch.full_like(p, float(rank + 1))
    q = torch.nn.Parameter(torch.zeros(2))
    ddp.average_gradients([p, q])
    res["grad"] = sorted(set(p.grad.flatten().tolist()))
    res["grad_channels_last"] = p.grad.is_contiguous(memory_format=torch.channels_last)
    res["no_grad"] = q.grad is None
    # BatchNorm statistics: averaged; counters from rank 0.
    bn = torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        bn.running_mean.fill_(rank * 2.0)
        bn.num_batches_tracked.fill_(10 + rank)
    ddp.sync_buffers(bn)
    res["running_mean"] = bn.running_mean.tolist()
    res["tracked"] = int(bn.num_batches_tracked)
    # Training metrics: every rank reports the whole global batch.
    task = Task("multilabel", (4,), 2)
    x, y = torch.randn(8, 4), torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 4)
    trainer = Trainer(Data(task, (x, y), (x, y)), device="cpu", quiet=True)
    m = trainer.metrics()
    g = torch.Generator().manual_seed(rank)
    m.update(torch.randn(4, 2, generator=g), y[4 * rank : 4 * rank + 4])
    res["metrics"] = m.compute()
    # A NaN on rank 1's shard only stops every rank at the epoch's end (the deferred check).
    trainer.lazy_sync = True
    trainer.check_finite(torch.tensor(float("nan") if rank == 1 else 1.0), "shard")
    try:
        trainer._raise_if_bad()
        res["stopped"] = ""
    except NonFiniteLoss as e:
        res["stopped"] = str(e)
    Path(out, f"{rank}.json").write_text(json.dumps(res))
    dist.destroy_process_group()


def test_collectives_average_gradients_statistics_metrics_and_nan_flags(tmp_path):
    mp.spawn(_collectives, args=(f"tcp://127.0.0.1:{_free_port()}", str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1  # identical on both ranks
    assert r0["grad"] == [1.5] and r0["grad_channels_last"] and r0["no_grad"]
    assert r0["running_mean"] == [1.0, 1.0] and r0["tracked"] == 10
    # The metrics of the 8 rows together, as one process would compute them.
    from nasplug.engine.tasks import Metrics, Objective

    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 4)
    whole = Metrics(Objective(Task("multilabel", (4,), 2), y))
    outs = [torch.randn(4, 2, generator=torch.Generator().manual_seed(r)) for r in (0, 1)]
    whole.update(torch.cat(outs), y)
    assert r0["metrics"] == pytest.approx(whole.compute(), rel=1e-6)
    assert "NaN or inf" in r0["stopped"] and "NaN or inf" in r1["stopped"]
