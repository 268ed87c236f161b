"""DARTS's softmax relaxation, with beta-DARTS's Beta-Decay penalty."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ._common import Schedule, Scheduled

__all__ = ["Softmax"]


class Softmax(Scheduled):
    """DARTS's relaxation: ``softmax(logits / temperature)``; dense, never exact zeros.

    **beta-DARTS** (Ye et al., CVPR 2022), with ``beta > 0``: the architecture step's loss gains
    the Beta-Decay penalty

        lambda * mean over choices of logsumexp(logits / temperature),

    the smooth maximum of each choice's (tempered) logits, whose gradient is the choice's own
    softmax weights (divided by the temperature): it pulls every logit down in proportion to its
    weight, which keeps the leading logits from running away (the paper's "value and variance of
    the activated architecture parameters"). Its weight ``lambda`` grows linearly with the search
    progress, from 0 at the first step to ``beta`` at the last (after any warm-up), on the clock
    of :class:`Scheduled`, which goes into ``state_dict``. As the authors' code: the logsumexp
    per choice, averaged over all choices; only in the architecture step. Where it differs: the
    authors' released search raises ``lambda`` once per epoch, by 0.5 (``50 * epoch / 100``:
    0 at the first of NAS-Bench-201's 100 epochs, 49.5 at the last); here it rises every step
    and reaches ``beta`` exactly. The architecture optimiser (Adam) normalises the scale of
    gradients, so what ``beta`` sets is the penalty's pull against the validation loss's. With
    the default ``beta = 0`` there is no penalty: weights and losses are those of plain DARTS.

    The annealed relaxations of the family (sparsemax, entmax) do not take the option: their
    logits stay hundredths apart while ``tau`` falls to a few thousandths, so the logsumexp of
    the raw logits pulls every candidate nearly alike (a shift, which leaves their weights as
    they are), and that of the tempered logits is about their maximum over ``tau``, a pull of
    ``1 / tau`` on the leader alone.

    Args:
        temperature: the softmax temperature.
        beta: the Beta-Decay penalty's weight at the end of the search; 0: no penalty.
    """

    def __init__(self, temperature: float = 1.0, beta: float = 0.0) -> None:
        if temperature <= 0:
            raise ValueError(f"softmax temperature must be > 0, got {temperature}")
        if not 0.0 <= beta < math.inf:
            raise ValueError(
                f"softmax beta must be a finite number >= 0 (the Beta-Decay penalty's final "
                f"weight; 0: none), got {beta}"
            )
        super().__init__(Schedule("beta_weight", 0.0, beta, "linear"))
        self.temperature = temperature
        self.beta = beta

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)

    @property
    def beta_weight(self) -> float:
        """The Beta-Decay penalty's weight at the current step."""
        return self.value("beta_weight")

    def penalty(self, logits: Mapping[str, torch.Tensor], phase: str) -> torch.Tensor | None:
        if self.beta == 0 or phase != "arch" or not logits:
            return None
        smooth_max = [torch.logsumexp(t / self.temperature, dim=-1) for t in logits.values()]
        return self.beta_weight * torch.stack(smooth_max).mean()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:  # a checkpoint of earlier versions holds no clock for softmax
            super().load_state_dict(state)
