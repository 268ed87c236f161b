"""Forward and backward of the cell supernet at DARTS's search size (C=16, 8 cells, 3x32x32).

Run: ``python -m pytest benchmarks/test_supernet.py``. ``uniform`` is the dense softmax state
at the start of a search; ``two-per-edge`` a sparse state (two non-zero ops per edge, as
sparsemax reaches), where zero-weight ops are skipped. The dilated-convolution pair compares
``nn.Conv2d`` with the polyphase form that ``dil_conv_*`` ops use.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasplug.core.types import Task
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.spaces.cell.fast import PolyphaseConv2d

TASK = Task("classification", (3, 32, 32), 10)


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _logits(space: CellSpace, state: str) -> dict[str, torch.Tensor]:
    logits = {}
    for c in space.choices():
        row = torch.zeros(len(c.candidates))
        if state == "two-per-edge":
            # Keep two ops other than none (a conv and a parameter-free op): an even mix.
            row.fill_(float("-inf"))
            row[c.candidates.index("sep_conv_3x3")] = 0.0
            row[c.candidates.index("skip_connect")] = 0.0
        logits[c.name] = row.requires_grad_()
    return logits


@pytest.mark.parametrize("state", ["uniform", "two-per-edge"])
@pytest.mark.parametrize("batch", [16, 64])
def test_supernet_forward_backward(benchmark, batch: int, state: str) -> None:
    torch.manual_seed(0)
    space = CellSpace(channels=16, layers=8)
    net = space.supernet(TASK)
    x = torch.randn(batch, *TASK.input_shape)
    y = torch.randint(0, TASK.outputs, (batch,))
    logits = _logits(space, state)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        weights = {name: torch.softmax(v, 0) for name, v in logits.items()}
        F.cross_entropy(net(x, weights), y).backward()

    benchmark.group = f"supernet batch {batch}"
    benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
    assert all(v.grad is not None for v in logits.values())


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("conv", ["nn.Conv2d", "PolyphaseConv2d"])
def test_dilated_depthwise_conv_forward_backward(benchmark, conv: str, kernel: int) -> None:
    layer = {"nn.Conv2d": nn.Conv2d, "PolyphaseConv2d": PolyphaseConv2d}[conv](
        16, 16, kernel, stride=1, padding=kernel - 1, dilation=2, groups=16, bias=False
    )
    layer.to(memory_format=torch.channels_last)
    x = torch.randn(64, 16, 32, 32).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    benchmark.group = f"dilated depthwise {kernel}x{kernel}, batch 64, 16x32x32"
    benchmark.pedantic(step, rounds=10, warmup_rounds=2, iterations=1)
