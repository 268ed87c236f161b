"""Discrete candidates, as the black-box strategies (random search, TPE) train and rank them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from nasplug.interfaces import SearchContext
from nasplug.trainer import NonFiniteLoss, Trainer
from nasplug.training import count_params
from nasplug.types import Genotype

__all__ = ["best_candidate", "forget_checkpoint", "train_candidate"]


def train_candidate(
    ctx: SearchContext,
    genotype: Genotype,
    *,
    phase: str,
    epochs: int,
    lr: float = 0.025,
    report: Callable[[int, dict[str, float]], None] | None = None,
    model: nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``genotype``'s network on the weight half and score it on the architecture half.

    Returns a candidate record: genotype, metric (NaN when the training diverged), params and
    status (``ok`` or ``diverged``). A ``report`` callback may raise to stop the training.
    ``model`` is the genotype's network if already built.
    """
    model = model if model is not None else ctx.space.build(genotype, ctx.task)
    params = count_params(model)
    try:
        hist = ctx.trainer.fit(
            model,
            epochs=epochs,
            batch_size=ctx.batch_size,
            phase=phase,
            train_split="weight",
            eval_split="arch",
            lr=lr,
            report=report,
        )
    except NonFiniteLoss as e:
        ctx.trainer.log("candidate_diverged", phase=phase, error=str(e))
        return {
            "genotype": genotype.to_dict(),
            "metric": math.nan,
            "params": params,
            "status": "diverged",
        }
    metric = hist[-1]["arch"].get(ctx.task.metric, math.nan)
    return {"genotype": genotype.to_dict(), "metric": metric, "params": params, "status": "ok"}


def best_candidate(
    rows: list[dict[str, Any]], better: Callable[[float, float], bool]
) -> dict[str, Any]:
    """The row with the best finite metric (the first row if none is finite)."""
    best = rows[0]
    for row in rows[1:]:
        m, b = row["metric"], best["metric"]
        if _finite(m) and (not _finite(b) or better(m, b)):
            best = row
    return best


def forget_checkpoint(trainer: Trainer, phase: str) -> None:
    """Delete a finished candidate's checkpoint: its result is kept in the search's memo."""
    if trainer.run is not None and trainer.run.writer:
        trainer.run.checkpoint_path(phase).unlink(missing_ok=True)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
