"""The options shared by the strategies built on :func:`nasplug.searchlib.supernet.search_supernet`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasplug.searchlib import supernet_defaults as defaults
from nasplug.searchlib.supernet import WARMUP, ArchStepFactory
from nasplug.searchlib.unrolled import check_options, second_order

__all__ = ["SupernetOptions"]


@dataclass(frozen=True)
class SupernetOptions:
    """The options of a strategy built on :func:`~nasplug.searchlib.supernet.search_supernet`, checked once.

    Args:
        order: 1 for the first-order approximation; 2 for the unrolled gradient with a
            finite-difference Hessian-vector product (:mod:`nasplug.searchlib.unrolled`).
        difference: the second order's finite difference, ``central`` (DARTS) or ``forward``.
        lookahead: the second order's look-ahead, ``virtual`` (DARTS) or ``real``.
        w_lr, w_lr_min, w_momentum, w_weight_decay: SGD with cosine schedule for the weights.
        a_lr, a_weight_decay: Adam (betas 0.5, 0.999) for the architecture logits.
        warmup: epochs of weight steps only at the start, the architecture frozen (see
            :data:`nasplug.searchlib.supernet.WARMUP`).
        strategy: the strategy's name, for messages.
    """

    order: int = 1
    w_lr: float = defaults.W_LR
    w_lr_min: float = defaults.W_LR_MIN
    w_momentum: float = defaults.W_MOMENTUM
    w_weight_decay: float = defaults.W_WEIGHT_DECAY
    a_lr: float = defaults.A_LR
    a_weight_decay: float = defaults.A_WEIGHT_DECAY
    difference: str = "central"
    lookahead: str = "virtual"
    warmup: int = WARMUP
    strategy: str = "darts"

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"{self.strategy} order must be 1 or 2, got {self.order}")
        check_options(self.difference, self.lookahead)  # at any order
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 epochs, got {self.warmup}")

    @property
    def arch_step(self) -> ArchStepFactory | None:
        """The architecture step's factory for :func:`search_supernet` (None: first order)."""
        return second_order(self.difference, self.lookahead) if self.order == 2 else None

    def search_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`search_supernet` these options set."""
        return dict(
            w_lr=self.w_lr,
            w_lr_min=self.w_lr_min,
            w_momentum=self.w_momentum,
            w_weight_decay=self.w_weight_decay,
            a_lr=self.a_lr,
            a_weight_decay=self.a_weight_decay,
            warmup=self.warmup,
            arch_step=self.arch_step,
        )
