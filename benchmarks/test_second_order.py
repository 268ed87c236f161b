"""One DARTS search step, first order against second order, at DARTS's search size.

The cell supernet with C=16, 8 cells, 3x32x32 input, 10 classes, dense softmax weights, 2
threads. A step is what ``search_supernet`` does per batch: the architecture step on a batch of
the architecture half, then the weight step on a batch of the weight half.

Run: ``python -m pytest benchmarks/test_second_order.py``. ``test_step`` times each order on
its own; ``test_second_order_ratio`` interleaves the two (the machine is shared and noisy) and
checks the target: a second-order step costs at most 2.5 first-order steps.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import pytest
import torch

from nasplug.trainer import ArchLogits, Trainer
from nasplug.types import Data, Task
from nasplug_plugins.darts import SupernetRun, first_order_step
from nasplug_plugins.relaxations import Softmax
from nasplug_plugins.unrolled import second_order_step
from nasplug_spaces.cell import CellSpace

TASK = Task("classification", (3, 32, 32), 10)
TARGET_RATIO = 2.5


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _search_step(order: int, batch: int) -> Callable[[], None]:
    """A closure running one search step of ``order`` (a fresh supernet per call of this)."""
    torch.manual_seed(0)
    x = torch.randn(2 * batch, *TASK.input_shape)
    y = torch.randint(0, TASK.outputs, (2 * batch,))
    trainer = Trainer(Data(TASK, (x, y), (x[:1], y[:1])), device="cpu", quiet=True)
    space = CellSpace(channels=16, layers=8)
    net = trainer.place(space.supernet(TASK))
    logits = ArchLogits(space.choices())
    relax = Softmax()
    w_params = list(net.parameters())
    a_params = list(logits.parameters())
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(a_params, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    arch_step = (first_order_step if order == 1 else second_order_step)(a_opt)
    run = SupernetRun(space, net, logits)
    (xw, tw), (xa, ta) = trainer.splits["weight"], trainer.splits["arch"]

    def step() -> None:
        # search_supernet's loop body: each half-step freezes the other parameter group.
        for p in w_params:
            p.requires_grad_(False)
        arch_step(run, trainer, relax, (xa, ta), (xw, tw), w_opt)
        for p in w_params:
            p.requires_grad_(True)
        for p in a_params:
            p.requires_grad_(False)
        weights = {k: w.detach() for k, w in logits.weights(relax).items()}
        trainer.update(trainer.loss(net(xw, weights), tw), w_opt, w_params)
        for p in a_params:
            p.requires_grad_(True)

    return step


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("batch", [16, 64])
def test_step(benchmark, batch: int, order: int) -> None:
    step = _search_step(order, batch)
    benchmark.group = f"darts step batch {batch}"
    benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("batch", [16, 64])
def test_second_order_ratio(batch: int) -> None:
    """Interleaved medians of the two orders, printed with their ratio (run with ``-s``)."""
    steps = {1: _search_step(1, batch), 2: _search_step(2, batch)}
    for step in steps.values():  # warm-up: first steps are slow (allocator, kernel choice)
        step()
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(3):
        for order, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[order].append(time.perf_counter() - t0)
    first, second = (statistics.median(times[o]) for o in (1, 2))
    ratio = second / first
    print(f"\nbatch {batch}: first order {first:.3f} s, second order {second:.3f} s, "
          f"ratio {ratio:.2f}")
    assert ratio <= TARGET_RATIO
