"""P-DARTS: progressive DARTS (Chen et al., 2019).

The search runs in stages. Each stage trains a deeper supernet than the last (closing the depth
gap between search and evaluation networks) over fewer candidates: after every stage but the
last, each choice keeps only its strongest candidates. During each stage the output of a skip
candidate is dropped out at a decaying rate, so that parameter-free skips do not win merely
because they train fastest; and the final genotype holds at most ``max_skips`` skips.

The strategy sees the space only through its interface (``derive``, ``one_hot``) and its
:class:`~nasplug.core.interfaces.Progressive` capability (``with_depth``, ``restrict``), and the
supernet only through its :class:`~nasplug.core.interfaces.DropsCandidates` capability.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from torch import nn

from nasplug.core.interfaces import (
    DropsCandidates,
    Progressive,
    SearchContext,
    SearchSpace,
    Strategy,
    Weights,
)
from nasplug.core.types import Genotype, SearchResult
from nasplug.searchlib import supernet_defaults as defaults
from nasplug.searchlib.supernet import WARMUP, SupernetRun, search_supernet, supernet_result
from nasplug.searchlib.supernet_options import SupernetOptions

__all__ = ["ProgressiveDarts", "cap_candidate", "strongest"]


class ProgressiveDarts(Strategy):
    """Progressive DARTS: deepen the supernet and prune candidates stage by stage.

    The run's epochs are split evenly across the stages (the later stages take any remainder;
    with fewer epochs than stages, every stage runs one).
    Each stage is its own checkpointed phase (``stage1``, ``stage2``, ...), with fresh
    architecture logits, so a killed run resumes in the stage it was in.

    Args:
        stages: number of stages.
        depths: the supernet depth of each stage, comma-separated (P-DARTS: 5,11,17 cells);
            empty keeps the space's own depth throughout.
        keep: how many candidates every choice keeps after each stage but the last,
            comma-separated (P-DARTS: 5,3 of 8).
        skip_op: the candidate that is dropped out and capped; empty turns both off.
        skip_dropout: the dropout rate of ``skip_op``'s output at the start of each stage,
            comma-separated (P-DARTS: 0.0,0.4,0.7 on CIFAR-10).
        dropout_decay: within a stage the rate at epoch ``e`` is ``rate * exp(-dropout_decay * e)``.
        max_skips: the most choices in ``skip_scope`` that may take ``skip_op`` in the final
            genotype; the weakest extra skips are replaced (-1: no cap).
        skip_scope: the cap counts choices whose name starts with this ("" : every choice;
            the cell space's normal cell by default, as in P-DARTS).
        order: 1 or 2, the order of the DARTS architecture gradient.
        difference, lookahead: the second order's finite difference and look-ahead, as for
            ``darts``.
        w_lr, w_lr_min, w_momentum, w_weight_decay, a_lr, a_weight_decay: as for ``darts``.
        warmup: epochs of weight steps only at the start of every stage, the architecture
            frozen (P-DARTS: 10 of 25), at most the stage's epochs - 1; default as ``darts``.
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {
        "stages": 2,
        "depths": "",
        "keep": "2",
        "skip_dropout": "0.0,0.4",
    }

    def __init__(
        self,
        stages: int = 3,
        depths: str = "3,5,8",
        keep: str = "5,3",
        skip_op: str = "skip_connect",
        skip_dropout: str = "0.0,0.4,0.7",
        dropout_decay: float = 0.2,
        max_skips: int = 2,
        skip_scope: str = "normal:",
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
        if stages < 1:
            raise ValueError(f"pdarts needs at least one stage, got stages={stages}")
        self.stages = stages
        self.depths = _numbers(depths, "depths", int, stages, low=1) if depths.strip() else None
        self.keep = _numbers(keep, "keep", int, stages - 1, low=1)
        self.skip_dropout = _numbers(skip_dropout, "skip_dropout", float, stages, low=0.0)
        if any(r >= 1.0 for r in self.skip_dropout):
            raise ValueError(f"skip_dropout rates must be below 1, got {skip_dropout!r}")
        if dropout_decay < 0:
            raise ValueError(f"dropout_decay must be >= 0, got {dropout_decay}")
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
            strategy="pdarts",
        )
        self.skip_op = skip_op.strip()
        self.dropout_decay = dropout_decay
        self.max_skips = max_skips
        self.skip_scope = skip_scope

    def stage_epochs(self, epochs: int) -> list[int]:
        """The epochs of each stage: ``epochs`` split evenly, but at least one per stage."""
        base, extra = divmod(max(epochs, self.stages), self.stages)
        return [base + (1 if i >= self.stages - extra else 0) for i in range(self.stages)]

    def search(self, ctx: SearchContext) -> SearchResult:
        space: SearchSpace = ctx.space
        history: list[dict[str, Any]] = []
        seconds = 0.0
        run: SupernetRun | None = None
        for s, epochs in enumerate(self.stage_epochs(ctx.epochs)):
            stage_space = _deepened(space, self.depths[s]) if self.depths else space
            ctx.trainer.log(
                "stage",
                stage=s + 1,
                epochs=epochs,
                depth=self.depths[s] if self.depths else None,
                candidates={c.name: list(c.candidates) for c in stage_space.choices()},
            )
            run = search_supernet(
                ctx,
                stage_space,
                epochs=epochs,
                phase=f"stage{s + 1}",
                before_epoch=self._dropout_schedule(ctx, stage_space, s),
                **self.options.search_kwargs(),
            )
            history += [{**rec, "stage": s + 1} for rec in run.history]
            seconds += run.seconds
            if s < self.stages - 1:
                weights = run.logits.eval_weights(ctx.relaxation)
                space = _restricted(
                    space, strongest(space, weights, self.keep[s], run.logits.as_dict())
                )
        assert run is not None  # stages >= 1
        weights = run.logits.eval_weights(ctx.relaxation)
        genotype, replaced = run.space.derive(run.logits.derivable(weights)), 0
        if self.skip_op and self.max_skips >= 0:
            genotype, replaced = cap_candidate(
                run.space, weights, self.skip_op, self.max_skips, self.skip_scope
            )
        result = supernet_result(ctx, run, genotype)
        metrics = {
            **result.metrics,
            "search_seconds": seconds,
            "stages": float(self.stages),
            "skips_replaced": float(replaced),
        }
        return dataclasses.replace(result, metrics=metrics, history=history, candidates=())

    def _dropout_schedule(
        self, ctx: SearchContext, space: SearchSpace, stage: int
    ) -> Callable[[int, nn.Module], None] | None:
        rate = self.skip_dropout[stage]
        if not self.skip_op or not any(self.skip_op in c.candidates for c in space.choices()):
            return None

        def before_epoch(epoch: int, net: nn.Module) -> None:
            if not isinstance(net, DropsCandidates):
                if rate > 0 and epoch == 0:
                    ctx.trainer.say(
                        f"pdarts: the {type(net).__name__} supernet has no "
                        f"candidate_dropout; {self.skip_op} is not dropped out"
                    )
                return
            net.candidate_dropout = {self.skip_op: rate * math.exp(-self.dropout_decay * epoch)}

        return before_epoch


def _deepened(space: Progressive, depth: int) -> SearchSpace:
    """``space`` with ``depth`` units: what pdarts needs of a space, typed as its capability."""
    return space.with_depth(depth)


def _restricted(space: Progressive, keep: dict[str, list[str]]) -> SearchSpace:
    """``space`` with only the candidates in ``keep``, typed as the capability pdarts uses."""
    return space.restrict(keep)


def strongest(
    space: SearchSpace, weights: Weights, k: int, logits: Weights | None = None
) -> dict[str, list[str]]:
    """The ``k`` candidates of every choice with the largest weights, in the choice's order.

    Ties, such as the exact zeros of sparse relaxations, go to the larger logit, then to the
    earlier candidate.
    """
    keep = {}
    for c in space.choices():
        w = weights[c.name].detach().float().cpu().tolist()
        lg = (
            logits[c.name].detach().float().cpu().tolist() if logits is not None else [0.0] * len(w)
        )
        ranked = sorted(range(len(c.candidates)), key=lambda i: (-w[i], -lg[i], i))[:k]
        keep[c.name] = [c.candidates[i] for i in sorted(ranked)]
    return keep


def cap_candidate(
    space: SearchSpace, weights: Weights, candidate: str, limit: int, scope: str = ""
) -> tuple[Genotype, int]:
    """Derive a genotype in which at most ``limit`` choices of ``scope`` take ``candidate``.

    P-DARTS's rule: while the derived genotype has too many, the weakest such choice loses the
    candidate (its weight is set below every other) and the genotype is derived again. A choice
    left with no other candidate keeps it. Returns the genotype and how many were replaced.
    """
    w = {k: v.detach().clone().float().cpu() for k, v in weights.items()}
    scoped = [c for c in space.choices() if c.name.startswith(scope) and candidate in c.candidates]
    replaced = 0
    while True:
        genotype = space.derive(w)
        hot = space.one_hot(genotype)
        taken = [c for c in scoped if float(hot[c.name][c.candidates.index(candidate)]) == 1.0]
        removable = [c for c in taken if w[c.name][c.candidates.index(candidate)] > float("-inf")]
        if len(taken) <= limit or not removable:
            return genotype, replaced
        weakest = min(removable, key=lambda c: float(w[c.name][c.candidates.index(candidate)]))
        w[weakest.name][weakest.candidates.index(candidate)] = float("-inf")
        replaced += 1


def _numbers(text: str, name: str, kind: type, count: int, low: float) -> list[Any]:
    """``"5,3"`` -> ``[5, 3]``, checked to hold ``count`` values of ``kind``, each >= ``low``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [kind(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated {kind.__name__}s, got {text!r}") from None
    if len(values) != count:
        raise ValueError(
            f"{name} needs {count} comma-separated values (one per stage"
            f"{' but the last' if name == 'keep' else ''}), got {text!r}"
        )
    if any(v < low for v in values):
        raise ValueError(f"{name} values must be >= {low}, got {text!r}")
    return values
