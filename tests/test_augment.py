"""Image augmentation: seeded per batch, different between batches, absent when off and in
evaluation, ignored by non-image tasks."""

from __future__ import annotations

import torch

from nasplug.core.types import Data, Task
from nasplug.engine import augment
from nasplug.engine.trainer import Trainer

IMAGES = Task("classification", (2, 8, 8), 2)


def _data(task: Task = IMAGES, n: int = 32) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *task.input_shape, generator=g)
    y = torch.arange(n) % 2
    return Data(task, (x, y), (x[:8], y[:8]))


def _trainer(**kw) -> Trainer:
    return Trainer(_data(), device="cpu", seed=5, quiet=True, **kw)


def _inputs(trainer: Trainer, **kw) -> list[torch.Tensor]:
    return [x for x, _ in trainer.batches("weight", 8, **kw)]


def _plain(trainer: Trainer, **kw) -> list[torch.Tensor]:
    """The batches' rows, unaugmented: the same order, read from the resident split."""
    x = trainer.splits["weight"][0]
    off = Trainer(_data(), device="cpu", seed=5, quiet=True, augment="off")
    got = _inputs(off, **kw)
    assert all(any(torch.equal(row, r) for r in x) for b in got for row in b)
    return got


def test_augmentation_is_reproducible_and_differs_between_batches_and_epochs():
    a, b = _inputs(_trainer(), epoch=1), _inputs(_trainer(), epoch=1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    plain = _plain(_trainer(), epoch=1)
    assert not any(torch.equal(p, q) for p, q in zip(a, plain, strict=True))
    # Each batch draws its own parameters.
    params = [
        augment.draw(8, 8, 8, flip=True, cutout=0, generator=torch.Generator().manual_seed(s))
        for s in (1, 2)
    ]
    assert not torch.equal(params[0].crop_yx, params[1].crop_yx)
    other_epoch = _inputs(_trainer(), epoch=2)
    assert not torch.equal(a[0], other_epoch[0])


def test_off_and_evaluation_batches_are_not_augmented():
    t = _trainer(augment="off")
    x = t.splits["weight"][0]
    for batch in _inputs(t, epoch=0):
        assert all(any(torch.equal(row, r) for r in x) for row in batch)
    standard = _trainer()
    evaluation = [x for x, _ in standard.batches("test", 4, shuffle=False)]
    assert torch.equal(torch.cat(evaluation), standard.splits["test"][0])


def test_crop_flip_and_cutout_do_what_they_say():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    none = augment.Params(
        torch.full((2, 2), 2), torch.zeros(2, dtype=torch.bool), torch.zeros(0, 2), 2, 0
    )
    assert torch.equal(augment.apply(x, none), x)  # centred crop of the padded image
    flipped = augment.Params(
        torch.full((2, 2), 2), torch.ones(2, dtype=torch.bool), none.cutout_yx, 2, 0
    )
    assert torch.equal(augment.apply(x, flipped), x.flip(3))
    shifted = augment.Params(torch.zeros(2, 2, dtype=torch.int64), none.flip, none.cutout_yx, 2, 0)
    out = augment.apply(x, shifted)
    assert (out[:, :, :2, :] == 0).all() and torch.equal(out[:, :, 2:, 2:], x[:, :, :2, :2])
    cut = augment.Params(none.crop_yx, none.flip, torch.tensor([[0, 0], [2, 2]]), 2, 2)
    out = augment.apply(x, cut)
    assert (out[0, 0, :1, :1] == 0).all() and int((out[0] == 0).sum()) == 1
    assert (out[1, 0, 1:3, 1:3] == 0).all() and int((out[1] == 0).sum()) == 4
    odd = augment.Params(none.crop_yx, none.flip, torch.tensor([[2, 2], [2, 2]]), 2, 3)
    out = augment.apply(x, odd)  # as DARTS: size // 2 either side of the centre, end excluded
    assert (out[:, 0, 1:3, 1:3] == 0).all() and int((out == 0).sum()) == 2 * 4


def test_no_flip_never_flips_and_fit_cuts_out_half_the_side_by_default():
    p = augment.draw(64, 8, 8, flip=False, cutout=4, generator=torch.Generator().manual_seed(0))
    assert not p.flip.any() and p.cutout_yx.shape == (64, 2)
    assert _trainer().cutout_size() == 4 and _trainer(augment="off").cutout_size() == 0
    assert _trainer(augment="off").cutout_size(3) == 3


def test_non_image_tasks_ignore_augmentation():
    vectors = Task("classification", (6,), 2)
    t = Trainer(_data(vectors), device="cpu", seed=5, quiet=True, augment="standard")
    x = t.splits["weight"][0]
    assert t.cutout_size() == 0
    for batch, _ in t.batches("weight", 8, cutout=4):
        assert all(any(torch.equal(row, r) for r in x) for row in batch)
