"""The streaming path: the same batches, search results and resume as the resident path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasplug.core.interfaces import SearchContext
from nasplug.core.types import Data, Task
from nasplug.engine import ddp
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.supernet import search_supernet, supernet_result
from nasplug_builtins.relaxations import Softmax
from nasplug_builtins.spaces.cell import CellSpace

TASK = Task("classification", (3, 8, 8), 3)


def _data(n: int = 48) -> Data:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.randn(n, *TASK.input_shape, generator=g) + y.view(-1, 1, 1, 1)
    return Data(TASK, (x, y), (x[:12], y[:12]))


class Items(torch.utils.data.Dataset):
    """Raw images as a torch Dataset: what a streaming plugin returns."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return (self.x[i] * 40 + 100).round(), int(self.y[i])


def _batches(trainer: Trainer, split: str, **kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(trainer.batches(split, 8, epoch=2, stream=1, **kw))


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_and_resident_give_the_same_batches(workers):
    data = _data()
    resident = Trainer(data, device="cpu", quiet=True)
    streamed = Trainer(data, device="cpu", quiet=True, stream="on", workers=workers)
    assert not resident.streaming and streamed.streaming
    for split, kw in (("weight", {}), ("arch", {"cutout": 4}), ("test", {"shuffle": False})):
        a, b = _batches(resident, split, **kw), _batches(streamed, split, **kw)
        assert len(a) == len(b) == resident.steps(split, 8) or not kw.get("shuffle", True)
        for (xa, ta), (xb, tb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ta, tb)
    with pytest.raises(AttributeError, match="stream='off'"):
        _ = streamed.splits


def test_a_dataset_streams_or_loads_resident_with_the_same_normalised_batches():
    data = _data()
    raw = Data(TASK, Items(*data.train), Items(*data.test))
    on = Trainer(raw, device="cpu", quiet=True, stream="on", workers=0)
    auto = Trainer(raw, device="cpu", quiet=True)  # small: loaded resident
    assert on.streaming and not auto.streaming
    x = auto.splits["train"][0]
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    for split in ("weight", "test"):
        a, b = _batches(on, split, cutout=4), _batches(auto, split, cutout=4)
        assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))
    given = Data(TASK, Items(*data.train), Items(*data.test), mean=[100.0] * 3, std=[40.0] * 3)
    xg = Trainer(given, device="cpu", quiet=True, workers=0).splits["test"][0]
    assert torch.allclose(xg, data.test[0], atol=0.5 / 40)  # raw = x * 40 + 100, rounded


def test_the_stream_option_and_bad_values():
    data = _data()
    with pytest.raises(ValueError, match="stream='yes' is not accepted; accepted: auto, on, off"):
        Trainer(data, device="cpu", stream="yes")
    with pytest.raises(ValueError, match="augment='flip' is not accepted; accepted: standard"):
        Trainer(data, device="cpu", augment="flip")
    with pytest.raises(ValueError, match="workers=-1 is not accepted"):
        Trainer(data, device="cpu", workers=-1)


def test_streamed_shards_split_each_global_batch(monkeypatch):
    data = _data()
    whole = [t.tolist() for _, t in Trainer(data, device="cpu", quiet=True).batches("train", 16)]
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    shards = {}
    for r in (0, 1):
        monkeypatch.setattr(ddp, "rank", lambda r=r: r)
        t = Trainer(data, device="cpu", quiet=True, stream="on", workers=0)
        shards[r] = [t.tolist() for _, t in t.batches("train", 16)]
    assert [a + b for a, b in zip(shards[0], shards[1], strict=True)] == whole


def _search(tmp_path: Path | None, stream: str, epochs: int = 2):
    data = _data()
    run = None
    if tmp_path is not None:
        exists = (tmp_path / "config.json").exists()
        run = RunDir.open(tmp_path) if exists else RunDir.create(tmp_path, {"test": True})
    trainer = Trainer(data, run=run, device="cpu", seed=0, quiet=True, stream=stream, workers=0)
    ctx = SearchContext(
        CellSpace(channels=4, layers=2, nodes=2),
        Softmax(),
        trainer,
        data,
        epochs=epochs,
        batch_size=16,
        seed=0,
    )
    return supernet_result(ctx, search_supernet(ctx, ctx.space, epochs=epochs, phase="search"))


def _metrics(result) -> dict:
    return {k: v for k, v in result.metrics.items() if "seconds" not in k}


def test_streaming_and_resident_searches_find_the_same_result():
    a, b = _search(None, "off", epochs=1), _search(None, "on", epochs=1)
    assert a.genotype == b.genotype and _metrics(a) == _metrics(b)


def test_a_killed_streaming_search_resumes_identically(tmp_path, monkeypatch):
    straight = _search(tmp_path / "straight", "on")
    from nasplug.searchlib import supernet as supernet

    real = supernet.edge_stats
    calls = {"n": 0}

    def killed_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed before epoch two's checkpoint
        return real(*args, **kwargs)

    monkeypatch.setattr(supernet, "edge_stats", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "killed", "on")
    monkeypatch.setattr(supernet, "edge_stats", real)
    assert RunDir.open(tmp_path / "killed").load_checkpoint("search")["epoch"] == 1
    torch.manual_seed(123)  # a fresh process: other global random state
    resumed = _search(tmp_path / "killed", "on")
    assert resumed.genotype == straight.genotype and _metrics(resumed) == _metrics(straight)
