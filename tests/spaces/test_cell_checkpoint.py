"""The cell supernet's memory saver (``checkpoint_cells``) changes memory, never results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasplug.core.types import Task
from nasplug_builtins.spaces.cell import CellSpace

TASK = Task("classification", (1, 12, 12), 10)


def _pair(**space_opts):
    """Two supernets with equal weights, without and with the memory saver."""
    torch.manual_seed(0)
    plain = CellSpace(channels=4, layers=3, **space_opts).supernet(TASK)
    saver = CellSpace(channels=4, layers=3, checkpoint_cells=True, **space_opts).supernet(TASK)
    saver.load_state_dict(plain.state_dict())
    assert saver.checkpoint_cells and not plain.checkpoint_cells
    return plain, saver


def _weights(space: CellSpace, sparse: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = {}
    for c in space.choices():
        logits = torch.randn(len(c.candidates), generator=g)
        if sparse:  # exact zeros: those candidates are skipped in both passes
            logits[torch.randperm(len(c.candidates), generator=g)[:5]] = float("-inf")
        out[c.name] = logits.requires_grad_()
    return out


def _step(net, logits, x, y, seed=3):
    torch.manual_seed(seed)  # the same dropout masks in both nets
    weights = {k: torch.softmax(v, 0) for k, v in logits.items()}
    loss = F.cross_entropy(net(x, weights), y)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("sparse", [False, True])
def test_gradients_and_running_statistics_equal_with_and_without_the_saver(sparse, impl):
    plain, saver = _pair(impl=impl)
    space = CellSpace(channels=4, layers=3)
    x, y = torch.randn(6, *TASK.input_shape), torch.randint(0, 10, (6,))
    # Dropout on candidates makes recomputation depend on the restored RNG state.
    plain.candidate_dropout = saver.candidate_dropout = {"skip_connect": 0.3}
    la, lb = _weights(space, sparse), _weights(space, sparse)
    plain.train(), saver.train()
    assert torch.equal(_step(plain, la, x, y), _step(saver, lb, x, y))
    for (name, p), q in zip(plain.named_parameters(), saver.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7, msg=name)
    for k in la:
        torch.testing.assert_close(lb[k].grad, la[k].grad, rtol=1e-6, atol=1e-7, msg=k)
    # Recomputation must not update BatchNorm statistics a second time.
    for (name, a), b in zip(plain.named_buffers(), saver.buffers(), strict=True):
        assert torch.equal(a, b), name


def test_evaluation_is_unchanged_and_not_checkpointed():
    plain, saver = _pair()
    x = torch.randn(4, *TASK.input_shape)
    weights = {
        k: torch.softmax(v.detach(), 0)
        for k, v in _weights(CellSpace(channels=4, layers=3), False).items()
    }
    plain.eval(), saver.eval()
    with torch.no_grad():
        assert torch.equal(plain(x, weights), saver(x, weights))


def test_the_option_reaches_the_supernet_and_survives_variants():
    space = CellSpace(channels=4, layers=3, checkpoint_cells=True)
    assert space.with_depth(2).supernet(TASK).checkpoint_cells
    assert space.restrict({"normal:2<-0": ["skip_connect"]}).supernet(TASK).checkpoint_cells
    assert not CellSpace(channels=4, layers=3).supernet(TASK).checkpoint_cells
