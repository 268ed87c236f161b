"""One mixed op of the cell supernet, forward and backward, under every registered relaxation.

One edge with the cell space's eight candidates at C=16 on 32x32 maps, channels_last, batch 16
and 64, at two states: ``fresh`` (uniform logits, the start of a search) and ``sparse`` (logits
where sparsemax keeps two ops, as late in a search). Each batch size is one benchmark group, so
the relaxations and states print side by side::

    python -m pytest benchmarks/test_mixed_op.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import pytest
import torch

from nasplug.core import registry
from nasplug_builtins.spaces.cell import MixedOp

CHANNELS, SIZE = 16, 32
#: Logits where sparsemax (and entmax 1.5) at temperature 1 keep sep_conv_3x3 and sep_conv_5x5.
SPARSE_LEADERS = {"sep_conv_3x3": 2.0, "sep_conv_5x5": 1.6}


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _logits(candidates: tuple[str, ...], state: str) -> torch.Tensor:
    if state == "fresh":
        return torch.zeros(len(candidates), requires_grad=True)
    return torch.tensor([SPARSE_LEADERS.get(op, 0.0) for op in candidates], requires_grad=True)


@pytest.mark.parametrize("state", ["fresh", "sparse"])
@pytest.mark.parametrize("relaxation", registry.names("relaxation"))
@pytest.mark.parametrize("batch", [16, 64])
def test_mixed_op_forward_backward(benchmark, batch, relaxation, state):
    benchmark.group = f"mixed op, batch {batch}"
    torch.manual_seed(0)
    candidates = registry.load("space", "cell")().choices()[0].candidates
    op = MixedOp(candidates, CHANNELS, stride=1).to(memory_format=torch.channels_last)
    x = torch.randn(batch, CHANNELS, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn_like(x)
    relax = registry.load("relaxation", relaxation)()
    logits = _logits(candidates, state)

    def step() -> None:
        w = relax.weights(logits)
        # As the supernet does: one host transfer says which ops carry weight exactly zero.
        row = w.detach().tolist()
        out = op(x, w, row)
        if out is not None:  # None: the edge computed nothing (a hard sample of ``none``)
            out.backward(grad_out)
        op.zero_grad(set_to_none=True)
        logits.grad = None
        computed.append(sum(row[k] != 0.0 for k in op.positions))

    computed: list[int] = []
    benchmark.pedantic(step, rounds=7, warmup_rounds=3, iterations=1)
    benchmark.extra_info["mean ops computed"] = sum(computed) / len(computed)
