"""DARTS: gradient-based search of a weight-sharing supernet (first order by default).

The search itself is :func:`nasplug.searchlib.supernet.search_supernet`; this strategy runs it once over
the whole budget and derives the genotype.
"""

from __future__ import annotations

from nasplug.core.interfaces import SearchContext, Strategy
from nasplug.core.types import SearchResult
from nasplug.searchlib import supernet_defaults as defaults
from nasplug.searchlib.supernet import WARMUP, search_supernet, supernet_result
from nasplug.searchlib.supernet_options import SupernetOptions

__all__ = ["Darts"]


class Darts(Strategy):
    """DARTS bilevel search (Liu et al., 2019) with the trainer's defaults.

    Args:
        order: 1 for the first-order approximation; 2 for the unrolled gradient with a
            finite-difference Hessian-vector product.
        difference: the second order's finite difference, ``central`` (DARTS) or ``forward``
            (one pass fewer per step).
        lookahead: the second order's look-ahead, ``virtual`` (DARTS) or ``real`` (the real
            weight step serves as the virtual one, one pass fewer per step; central difference
            only). See :func:`nasplug.searchlib.unrolled.second_order_step`.
        w_lr, w_lr_min, w_momentum, w_weight_decay: SGD with cosine schedule for the weights.
        a_lr, a_weight_decay: Adam (betas 0.5, 0.999) for the architecture logits.
        warmup: epochs of weight steps only at the start, the architecture frozen, as P-DARTS
            and PC-DARTS do (at most epochs - 1). See :data:`nasplug.searchlib.supernet.WARMUP` for the default.
    """

    def __init__(
        self,
        order: int = 1,
        w_lr: float = defaults.W_LR,
        w_lr_min: float = defaults.W_LR_MIN,
        w_momentum: float = defaults.W_MOMENTUM,
        w_weight_decay: float = defaults.W_WEIGHT_DECAY,
        a_lr: float = defaults.A_LR,
        a_weight_decay: float = defaults.A_WEIGHT_DECAY,
        difference: str = "central",
        lookahead: str = "virtual",
        warmup: int = WARMUP,
    ) -> None:
        self.options = SupernetOptions(
            order=order,
            w_lr=w_lr,
            w_lr_min=w_lr_min,
            w_momentum=w_momentum,
            w_weight_decay=w_weight_decay,
            a_lr=a_lr,
            a_weight_decay=a_weight_decay,
            difference=difference,
            lookahead=lookahead,
            warmup=warmup,
            strategy="darts",
        )

    def search(self, ctx: SearchContext) -> SearchResult:
        run = search_supernet(
            ctx, ctx.space, epochs=ctx.epochs, phase="search", **self.options.search_kwargs()
        )
        return supernet_result(ctx, run)
