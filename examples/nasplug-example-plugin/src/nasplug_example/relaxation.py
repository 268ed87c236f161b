"""FairDARTS's relaxation (Chu et al., 2020): independent sigmoids and a zero-one loss.

Softmax makes the candidates of a choice compete, so an early lead (often a parameter-free
skip) starves the others. FairDARTS weighs each candidate by its own sigmoid instead: the
weights need not sum to one, and a zero-one loss term pushes every weight towards 0 or 1 so
that the final weights say clearly which candidates to keep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from nasplug.core.interfaces import Relaxation

__all__ = ["FairSigmoid"]


class FairSigmoid(Relaxation):
    """``sigmoid(logits)`` per candidate, with FairDARTS's zero-one loss on the architecture step.

    The penalty added to the architecture loss is ``-zero_one * ramp * mean((w - 0.5) ** 2)``
    over every candidate of every choice, where ``ramp`` rises linearly from 0 at the first
    epoch to 1 at the last (with ``warmup``) or is always 1. The epoch clock goes into
    ``state_dict``, so a resumed search continues with the same penalty weight.

    For evaluation and derivation, candidates whose weight is below ``threshold`` get exactly
    zero (FairDARTS keeps candidates above 0.85); the strongest candidate of a choice is always
    kept. A sigmoid has no exact zeros in training, so skipping is trivially exact.

    Args:
        zero_one: weight of the zero-one loss (FairDARTS: 10).
        warmup: ramp the zero-one weight up over the search instead of applying it fully at once.
        threshold: evaluation weights below this are set to zero (0: keep every candidate).
    """

    skip_is_exact = True

    def __init__(self, zero_one: float = 10.0, warmup: bool = True, threshold: float = 0.0) -> None:
        if zero_one < 0:
            raise ValueError(f"zero_one must be >= 0, got {zero_one}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        self.zero_one = zero_one
        self.warmup = warmup
        self.threshold = threshold
        self._epoch, self._epochs = 0, 1

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def eval_weights(self, logits: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(logits)
        if self.threshold <= 0:
            return w
        keep = (w >= self.threshold) | (w == w.max(dim=-1, keepdim=True).values)
        return torch.where(keep, w, torch.zeros_like(w))

    def penalty(self, logits: Mapping[str, torch.Tensor], phase: str) -> torch.Tensor | None:
        if phase != "arch" or self.zero_one == 0 or not logits:
            return None
        w = torch.cat([torch.sigmoid(row).flatten() for row in logits.values()])
        return -self.zero_one * self.ramp * ((w - 0.5) ** 2).mean()

    @property
    def ramp(self) -> float:
        """The share of ``zero_one`` applied now."""
        if not self.warmup:
            return 1.0
        return self._epoch / max(self._epochs - 1, 1)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        self._epoch, self._epochs = epoch, epochs

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "epochs": self._epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._epoch, self._epochs = int(state["epoch"]), int(state["epochs"])
