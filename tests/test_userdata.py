"""to_data: arrays, tensors and torch Datasets become Data; bad input gives one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasplug.core.types import Task
from nasplug.engine.trainer import Trainer
from nasplug.engine.userdata import to_data


def _arrays(n: int = 40, shape: tuple[int, ...] = (5,)):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, *shape)).astype(np.float32), np.arange(n) % 2


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return np.full((1, 4, 4), float(i), dtype=np.float32), i % 3


def test_numpy_arrays_give_resident_normalised_data_with_a_fixed_test_split():
    x, y = _arrays()
    data = to_data((x, y))
    assert data.task == Task("classification", (5,), 2) and not data.streams
    assert len(data.train[0]) == 32 and len(data.test[0]) == 8
    assert torch.allclose(data.train[0].mean(0), torch.zeros(5), atol=1e-5)
    assert torch.equal(to_data((x, y)).test[0], data.test[0])  # no seed: the same split


def test_tensors_tasks_and_given_statistics():
    x, y = _arrays()
    task = Task("classification", (5,), 2, labels=("no", "yes"))
    data = to_data((torch.from_numpy(x), torch.from_numpy(y)), task=task)
    assert data.task == task
    reg = to_data((x, x[:, 0] * 1.5), test=(x[:5], x[:5, 0]), mean=0.0, std=2.0)
    assert reg.task.kind == "regression" and torch.equal(reg.test[0], torch.from_numpy(x[:5]) / 2)
    multi = to_data((x, np.eye(2)[y]), task="multilabel")
    assert multi.task.outputs == 2 and multi.train[1].dtype == torch.float32


def test_a_torch_dataset_streams_and_the_trainer_reads_it():
    data = to_data(Pairs(30))
    assert data.streams and data.task == Task("classification", (1, 4, 4), 3)
    assert len(data.train) == 24 and len(data.test) == 6
    t = Trainer(data, device="cpu", quiet=True, stream="on", workers=0)
    assert t.size("test") == 6 and sum(len(b) for _, b in t.batches("train", 8)) == 24


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: to_data(3), "the train split is a int; accepted: an \\(x, y\\) pair"),
        (lambda x, y: to_data((x, y.astype(float))), "task kind cannot be inferred"),
        (lambda x, y: to_data((x, y), task="ranking"), "unknown task 'ranking'"),
        (lambda x, y: to_data((x, y), test=Pairs(3)), "splits mix arrays and Datasets"),
        (lambda x, y: to_data((x, y), mean=[1.0, 2.0]), "only one of mean and std"),
        (lambda x, y: to_data((x, y), mean=[1.0, 2.0], std=1.0), "mean has 2 values"),
        (lambda x, y: to_data((x, y), test_fraction=1.5), "test_fraction=1.5 is out of range"),
        (lambda x, y: to_data((x, y[:5])), "40 inputs but 5 targets"),
        (lambda x, y: to_data((x, [0, 1])), "targets are a list"),
        (lambda x, y: to_data(Pairs(0)), "the train split is empty"),
    ],
)
def test_bad_input_gives_one_line_errors(call, match):
    x, y = _arrays()
    with pytest.raises(ValueError, match=match) as info:
        call(x, y)
    assert "\n" not in str(info.value)
