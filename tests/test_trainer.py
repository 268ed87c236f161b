"""The shared trainer: NaN guards, atomic checkpoints, exact resume, deterministic batches,
data-parallel sharding, and the CUDA-only code paths exercised on the CPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nasplug.core.types import Data, Task
from nasplug.engine import ddp
from nasplug.engine.compiling import check_compile
from nasplug.engine.memo import Memo
from nasplug.engine.trainer import NonFiniteLoss, Trainer
from nasplug.run.rundir import RunDir, RunError

TASK = Task("classification", (6,), 3)


def _data(n: int = 40, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.arange(n) % 3
    return Data(TASK, (x, y), (x[:12], y[:12]))


class Poisoned(nn.Module):
    """A small MLP whose outputs become NaN once ``poisoned`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        self.poisoned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out * float("nan") if self.poisoned else out


def _trainer(tmp_path: Path | None = None, **kw) -> Trainer:
    run = RunDir.create(tmp_path / "run", {"test": True}) if tmp_path is not None else None
    return Trainer(_data(), run=run, device="cpu", quiet=True, **kw)


# ---- NaN guards --------------------------------------------------------------------------------
def test_nan_at_epoch_two_stops_fit_and_keeps_the_epoch_one_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    model = Poisoned()

    def poison_after_first_epoch(epoch, metrics):
        model.poisoned = True

    with pytest.raises(NonFiniteLoss, match="last good checkpoint"):
        trainer.fit(model, epochs=3, batch_size=8, phase="train", report=poison_after_first_epoch)
    ckpt = trainer.run.load_checkpoint("train")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state"]["model"].values())
    assert len(ckpt["state"]["memo"]["history"]) == 1


def test_deferred_nan_check_is_flagged_at_epoch_end_before_the_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.lazy_sync = True  # the accelerator path: no host read per step
    model = Poisoned()
    seen = []
    with pytest.raises(NonFiniteLoss, match="epoch ending at p epoch 2"):
        for epoch in trainer.epochs(3, {"model": model}, "p"):
            model.poisoned = epoch == 1
            for x, t in trainer.batches("train", 8, epoch=epoch):
                trainer.check_finite(trainer.loss(model(x), t), f"p epoch {epoch + 1}")
                seen.append(epoch)  # the loop went on past the NaN: no per-step sync
    assert seen.count(1) == trainer.steps("train", 8)
    assert trainer.run.load_checkpoint("p")["epoch"] == 1


def test_immediate_nan_check_on_the_cpu():
    trainer = _trainer()
    with pytest.raises(NonFiniteLoss, match="became nan in here"):
        trainer.check_finite(torch.tensor(float("nan")), "here")


def test_autocast_is_a_no_op_on_the_cpu():
    trainer = _trainer()
    with trainer.autocast():
        assert not torch.is_autocast_enabled("cpu")
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.float32


# ---- checkpoints ------------------------------------------------------------------------------
def test_a_checkpoint_write_that_dies_midway_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    run = RunDir.create(tmp_path / "run", {})
    run.save_checkpoint("p", {"epoch": 1, "w": torch.ones(3)})
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("killed")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        run.save_checkpoint("p", {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = run.load_checkpoint("p")
    assert ckpt["epoch"] == 1 and torch.equal(ckpt["w"], torch.ones(3))


def test_a_failed_rename_leaves_the_old_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    from nasplug.run import rundir as rundir

    run = RunDir.create(tmp_path / "run", {})
    run.save_checkpoint("p", {"epoch": 1})

    def no_replace(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(rundir.os, "replace", no_replace)
    with pytest.raises(OSError):
        run.save_checkpoint("p", {"epoch": 2})
    monkeypatch.undo()
    assert run.load_checkpoint("p")["epoch"] == 1
    assert [p.name for p in run.checkpoint_path("p").parent.iterdir()] == ["p.pt"]


def test_a_truncated_checkpoint_is_reported_with_what_to_do(tmp_path):
    run = RunDir.create(tmp_path / "run", {})
    run.save_checkpoint("p", {"epoch": 1})
    path = run.checkpoint_path("p")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(RunError, match="delete it to redo phase 'p'"):
        run.load_checkpoint("p")


# ---- resume -----------------------------------------------------------------------------------
def _epochs_with_draws(trainer: Trainer, model: nn.Module, memo: Memo, n: int, stop: int | None):
    """Run ``n`` epochs that draw from the global RNG and train ``model``; break in ``stop``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in trainer.epochs(n, {"model": model, "opt": opt, "memo": memo}, "p"):
        if epoch == stop:
            return  # killed during this epoch: its work is lost, the previous checkpoint kept
        memo.setdefault("draws", []).append(torch.rand(2).tolist())
        memo.setdefault("epochs", []).append(epoch)
        for x, t in trainer.batches("train", 8, epoch=epoch):
            trainer.update(trainer.loss(model(x), t), opt)


def test_resume_restores_rng_and_yields_the_remaining_epochs(tmp_path):
    torch.manual_seed(0)
    straight = Poisoned()
    ref = Memo()
    _epochs_with_draws(_trainer(tmp_path / "a"), straight, ref, 4, stop=None)

    torch.manual_seed(0)
    model = Poisoned()
    trainer = _trainer(tmp_path / "b")
    _epochs_with_draws(trainer, model, Memo(), 4, stop=2)
    assert trainer.run.load_checkpoint("p")["epoch"] == 2

    torch.manual_seed(123)  # a fresh process: other RNG state, other initial weights
    resumed_model, memo = Poisoned(), Memo()
    resumed = Trainer(_data(), run=RunDir.open(tmp_path / "b" / "run"), device="cpu", quiet=True)
    _epochs_with_draws(resumed, resumed_model, memo, 4, stop=None)
    assert memo["epochs"] == [0, 1, 2, 3]  # two restored from the memo, two run now
    assert memo["draws"] == ref["draws"]
    for a, b in zip(straight.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(e["event"] == "resume" and e["epoch"] == 2 for e in resumed.run.events())


def test_a_finished_phase_yields_nothing_and_leaves_its_final_state(tmp_path):
    trainer = _trainer(tmp_path)
    model = Poisoned()
    for _ in trainer.epochs(1, {"model": model}, "p"):
        with torch.no_grad():
            model.body[0].weight.fill_(0.5)
    again = Poisoned()
    assert list(trainer.epochs(1, {"model": again}, "p")) == []
    assert torch.equal(again.body[0].weight, torch.full_like(again.body[0].weight, 0.5))


# ---- batches ----------------------------------------------------------------------------------
_ORDER_SCRIPT = """
import json, torch
from nasplug.engine.trainer import Trainer
from nasplug.core.types import Data, Task
x = torch.arange(40.0).unsqueeze(1).repeat(1, 6); y = torch.arange(40) % 3
orders = []
for seed, epoch, stream in {keys}:
    t = Trainer(Data(Task("classification", (6,), 3), (x, y), (x, y)), device="cpu", seed=seed,
                quiet=True)
    orders.append([xb[:, 0].tolist() for xb, _ in t.batches("weight", 8, epoch=epoch,
                                                            stream=stream)])
print(json.dumps(orders))
"""


def test_batches_depend_only_on_seed_epoch_and_stream_across_processes():
    x = torch.arange(40.0).unsqueeze(1).repeat(1, 6)
    y = torch.arange(40) % 3
    torch.manual_seed(999)  # the global RNG plays no part
    here = Trainer(Data(TASK, (x, y), (x, y)), device="cpu", seed=3, quiet=True)
    mine = [xb[:, 0].tolist() for xb, _ in here.batches("weight", 8, epoch=1, stream=0)]
    keys = [(3, 1, 0), (3, 2, 0), (3, 1, 1), (4, 1, 0)]
    out = subprocess.run(
        [sys.executable, "-c", _ORDER_SCRIPT.format(keys=keys)],
        check=True,
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1"},
    )
    same, other_epoch, other_stream, other_seed = json.loads(out.stdout)
    assert same == mine
    assert sorted(v for b in mine for v in b) == sorted(here.splits["weight"][0][:, 0].tolist())
    assert mine not in (other_epoch, other_stream, other_seed)


def test_shards_split_each_global_batch_equally_among_ranks(monkeypatch):
    trainer = _trainer()  # 40 samples, batches of 16: 16, 16 and a last one of 8
    whole = [t.tolist() for _, t in trainer.batches("train", 16, epoch=0)]
    xs = {x[:, 0].tolist().__repr__() for x, _ in trainer.batches("train", 16, epoch=0)}
    assert len(xs) == 3
    shards = {}
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    for r in (0, 1):
        monkeypatch.setattr(ddp, "rank", lambda r=r: r)
        shards[r] = [t.tolist() for _, t in trainer.batches("train", 16, epoch=0)]
    assert [len(b) for b in shards[0]] == [8, 8, 4] == [len(b) for b in shards[1]]
    assert [a + b for a, b in zip(shards[0], shards[1], strict=True)] == whole
    assert trainer.steps("train", 16) == 3
    with pytest.raises(ValueError, match="batch size 15 does not split evenly over 2 processes"):
        next(trainer.batches("train", 15))
    # Unshuffled passes (evaluation) are never sharded.
    assert sum(len(t) for _, t in trainer.batches("test", 5, shuffle=False)) == 12


def test_a_last_batch_smaller_than_the_ranks_is_left_out(monkeypatch):
    trainer = _trainer()  # 40 samples in batches of 39: 39 and 1
    monkeypatch.setattr(ddp, "world_size", lambda: 3)
    monkeypatch.setattr(ddp, "rank", lambda: 2)
    assert [len(t) for _, t in trainer.batches("train", 39)] == [13]
    assert trainer.steps("train", 39) == 1


# ---- torch.compile ----------------------------------------------------------------------------
def test_compile_with_an_unknown_backend_names_the_available_ones():
    with pytest.raises(ValueError, match="unknown compile backend 'nope'; available: .*inductor"):
        _trainer(compile="nope")


def test_compile_reports_a_broken_toolchain_before_the_search(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    check_compile.cache_clear()  # a probe that passed earlier in this process is remembered
    with pytest.raises(
        ValueError,
        match="torch.compile does not work on cpu here .*no C\\+\\+ "
        "compiler.*run without --compile",
    ):
        check_compile("inductor", torch.device("cpu"))


def _fit_history(tmp_path: Path, backend: str | None) -> tuple[list, list]:
    torch.manual_seed(0)
    trainer = _trainer(tmp_path, compile=backend)
    model = Poisoned()
    history = trainer.fit(model, epochs=2, batch_size=8, phase="fit")  # 10 updates
    return history, list(trainer.run.events("compile"))


def test_compile_keeps_results_and_logs_the_compile_time(tmp_path):
    eager, none = _fit_history(tmp_path / "eager", None)
    compiled, events = _fit_history(tmp_path / "compiled", "aot_eager")
    assert none == [] and len(events) == 1
    assert events[0]["backend"] == "aot_eager" and math.isfinite(events[0]["seconds"])
    assert events[0]["first_updates_seconds"] > events[0]["update_seconds"] > 0
    assert compiled[-1]["test"]["loss"] == pytest.approx(eager[-1]["test"]["loss"], rel=1e-5)


def test_inductor_compiles_a_tiny_model_on_the_cpu(tmp_path):
    try:
        check_compile("inductor", torch.device("cpu"))
    except ValueError as e:  # reported clearly: a missing toolchain is not a failure of nasplug
        pytest.skip(str(e))
    eager, _ = _fit_history(tmp_path / "eager", None)
    compiled, events = _fit_history(tmp_path / "compiled", "inductor")
    assert len(events) == 1
    assert compiled[-1]["test"]["loss"] == pytest.approx(eager[-1]["test"]["loss"], rel=1e-4)
