"""Data augmentation of image batches, batched and seeded per batch.

The parameters of a batch (crop offsets, flips, cutout centres) are drawn by :func:`draw` from a
generator that the trainer seeds with (seed, epoch, stream, split, batch index), and applied by
:func:`apply`. Drawing and applying are separate so that the resident path (on the device) and
the streaming path (in loader workers) apply the very same parameters: both give identical
batches, and a resumed run sees the batches of an uninterrupted one.

The crop pads with zeros and cutout writes zeros; both act on normalised inputs, so zero is the
train split's mean (DARTS pads raw pixels with black and cuts out after normalising).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["PAD", "Params", "apply", "crop_pad", "draw"]

#: Padding of the random crop, in pixels (DARTS's 4 of 32), at most.
PAD = 4
#: Images with a shorter side below this are not cropped (a one-pixel shift is an eighth).
MIN_CROP_SIDE = 8


def crop_pad(height: int, width: int) -> int:
    """The random crop's padding for images of ``height`` x ``width``: an eighth of the shorter
    side rounded up, at most :data:`PAD` (4 for 28 and 32 pixels, 2 for 16, 1 for 8); 0, no
    crop, below :data:`MIN_CROP_SIDE` pixels.

    Example:
        >>> [crop_pad(s, s) for s in (32, 28, 16, 8, 4)]
        [4, 4, 2, 1, 0]
    """
    side = min(height, width)
    return 0 if side < MIN_CROP_SIDE else min(PAD, math.ceil(side / 8))


@dataclass(frozen=True)
class Params:
    """One batch's augmentation: crop offsets in ``[0, 2 * pad]``, flips, cutout centres.

    Each field has one row per image (``cutout_yx`` is empty when there is no cutout); slicing
    all rows alike (:meth:`rows`) gives the parameters of a shard of the batch.
    """

    crop_yx: torch.Tensor  # int64 [N, 2]
    flip: torch.Tensor  # bool [N]
    cutout_yx: torch.Tensor  # int64 [N, 2] or [0, 2]
    pad: int
    cutout: int

    def rows(self, index: torch.Tensor) -> Params:
        """The parameters of the images at ``index``."""
        cut = self.cutout_yx[index] if self.cutout > 0 else self.cutout_yx
        return Params(self.crop_yx[index], self.flip[index], cut, self.pad, self.cutout)

    def to(self, device: torch.device) -> Params:
        """On ``device``; to CUDA in pinned, non-blocking copies (no host-device sync)."""
        if device.type == "cpu":
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            return (
                t.pin_memory().to(device, non_blocking=True)
                if device.type == "cuda"
                else t.to(device)
            )

        return Params(
            move(self.crop_yx), move(self.flip), move(self.cutout_yx), self.pad, self.cutout
        )


def draw(
    n: int,
    height: int,
    width: int,
    *,
    flip: bool,
    cutout: int,
    generator: torch.Generator,
    pad: int = PAD,
) -> Params:
    """The parameters of a batch of ``n`` images, drawn on the CPU from ``generator``.

    Always draws the same amount from ``generator`` for given arguments, so the parameters of a
    batch depend only on the generator's seed.
    """
    crop = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros(n, dtype=torch.bool)
    if cutout > 0:
        centre = torch.stack(
            [
                torch.randint(0, height, (n,), generator=generator),
                torch.randint(0, width, (n,), generator=generator),
            ],
            dim=1,
        )
    else:
        centre = torch.zeros(0, 2, dtype=torch.int64)
    return Params(crop, flips, centre, pad, cutout)


def apply(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Random crop with zero padding, horizontal flip and cutout of images ``[N, C, H, W]``.

    Pure indexing and masking, so it gives bit-identical results wherever it runs.
    """
    n, c, h, w = x.shape
    dev = x.device
    crop = params.crop_yx.to(dev)
    rows = crop[:, :1] + torch.arange(h, device=dev)  # [N, H] rows of the padded image
    ahead = torch.arange(w, device=dev)
    cols = crop[:, 1:] + torch.where(params.flip.to(dev).view(n, 1), w - 1 - ahead, ahead)
    p = params.pad
    padded = F.pad(x, (p, p, p, p)) if p > 0 else x
    out = padded[
        torch.arange(n, device=dev).view(n, 1, 1, 1),
        torch.arange(c, device=dev).view(1, c, 1, 1),
        rows.view(n, 1, h, 1),
        cols.view(n, 1, 1, w),
    ]
    if params.cutout > 0:
        out = out * _hole(params.cutout_yx.to(dev), params.cutout, h, w).to(out.dtype)
    return out


def _hole(centre: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """1 outside and 0 inside each image's square around its centre (clipped at the borders),
    shape ``[N, 1, H, W]``: rows ``[cy - size // 2, cy + size // 2)`` and columns likewise, as
    DARTS's Cutout cuts them, so an odd ``size`` cuts a square of side ``size - 1``."""
    half = size // 2
    ys = torch.arange(h, device=centre.device).view(1, h, 1)
    xs = torch.arange(w, device=centre.device).view(1, 1, w)
    cy, cx = centre[:, 0].view(-1, 1, 1), centre[:, 1].view(-1, 1, 1)
    inside = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)
    return (~inside).unsqueeze(1)
