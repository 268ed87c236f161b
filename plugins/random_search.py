"""Random search: the baseline every architecture search should beat (Li and Talwalkar, 2019).

Valid genotypes are drawn with ``space.sample`` from a seeded ``random.Random`` and evaluated
one by one, either by a short training of each discrete network or by the weights they share
in a supernet trained along uniformly sampled paths. The budget is a number of candidates or a
wall-clock time, so that random search can be given the compute of a DARTS run.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

from nasplug.candidates import best_candidate, forget_checkpoint, train_candidate
from nasplug.interfaces import SearchContext, SearchSpace, Strategy
from nasplug.memo import Memo
from nasplug.supernet import SupernetRun, recalibrate_batchnorm, search_supernet
from nasplug.training import count_params
from nasplug.types import Genotype, SearchResult

__all__ = ["METHODS", "RandomSearch", "SamplePool"]

METHODS = ("train", "supernet")
# Consecutive duplicate draws after which a space counts as exhausted.
_DUPLICATE_DRAWS = 200


class RandomSearch(Strategy):
    """Random search over the space's valid genotypes.

    Every finished candidate is checkpointed, so a killed search resumes without redoing any;
    the sequence of candidates depends only on the seed. The time budget counts the time
    spent over all sessions of the run (a supernet's training included) and is checked before
    each candidate: the last one may finish after it; at least one candidate is evaluated.

    Args:
        method: ``train`` (each candidate trains from scratch for ``train_epochs`` on the weight
            half, scored on the architecture half) or ``supernet`` (one weight-sharing supernet
            trained along uniformly sampled paths; each candidate is scored on the architecture
            half with the supernet's weights).
        candidates: how many candidates to evaluate (0: no limit, then ``time_budget`` is needed).
        time_budget: wall-clock seconds for the search (0: no limit).
        train_epochs: training epochs of each candidate (``train``).
        lr: SGD learning rate of each candidate's training (``train``).
        supernet_epochs: epochs of the supernet (``supernet``; 0: the run's epochs).
        recalibrate: batches of the weight half on which BatchNorm statistics are re-estimated
            for each candidate before it is scored (``supernet``; 0: use the shared statistics).
    """

    def __init__(
        self,
        method: str = "train",
        candidates: int = 8,
        time_budget: float = 0.0,
        train_epochs: int = 2,
        lr: float = 0.025,
        supernet_epochs: int = 0,
        recalibrate: int = 4,
    ) -> None:
        if method not in METHODS:
            raise ValueError(
                f"unknown random search method {method!r}; accepted: {', '.join(METHODS)}"
            )
        if candidates < 0 or time_budget < 0:
            raise ValueError("candidates and time_budget must be >= 0")
        if candidates == 0 and time_budget == 0:
            raise ValueError(
                "random search needs a budget: candidates > 0 or time_budget > 0 seconds"
            )
        if train_epochs < 1:
            raise ValueError(f"train_epochs must be at least 1, got {train_epochs}")
        if supernet_epochs < 0 or recalibrate < 0:
            raise ValueError("supernet_epochs and recalibrate must be >= 0")
        self.method = method
        self.candidates = candidates
        self.time_budget = time_budget
        self.train_epochs = train_epochs
        self.lr = lr
        self.supernet_epochs = supernet_epochs
        self.recalibrate = recalibrate

    def search(self, ctx: SearchContext) -> SearchResult:
        trainer, task = ctx.trainer, ctx.task
        spent = 0.0
        if self.method == "supernet":
            run = search_supernet(
                ctx,
                ctx.space,
                epochs=self.supernet_epochs or ctx.epochs,
                phase="supernet",
                sample_paths=True,
            )
            spent = run.seconds
            evaluate = self._shared_weights(ctx, run)
        else:
            evaluate = self._trained(ctx)
        memo = Memo(candidates=[], seconds=0.0)
        pool = SamplePool(ctx.space, ctx.seed)
        limit = self.candidates or 2**62
        for i in trainer.epochs(limit, {"memo": memo}, "random"):
            if i > 0:
                forget_checkpoint(
                    trainer, _phase(i - 1)
                )  # the finished candidate is in the memo now
            if self.time_budget and i > 0 and spent + memo["seconds"] >= self.time_budget:
                break
            genotype = pool.get(i)
            if genotype is None:
                trainer.say(f"random: the space has no more distinct genotypes after {i}")
                break
            t0 = time.time()
            rec = {"index": i, **evaluate(genotype, i)}
            rec["seconds"] = time.time() - t0
            memo["candidates"].append(rec)
            memo["seconds"] += rec["seconds"]
            trainer.log("candidate", **rec)
            trainer.say(
                f"random candidate {i + 1}: {task.metric} {_fmt(rec['metric'])} "
                f"({rec['params']} parameters, {rec['seconds']:.1f}s)"
            )
        rows = list(memo["candidates"])
        if not rows:
            raise ValueError("random search found no valid genotype to evaluate in this space")
        forget_checkpoint(trainer, _phase(len(rows) - 1))
        best = best_candidate(rows, task.better)
        m = task.metric
        metrics = {
            f"val_{m}": best["metric"],
            "params": float(best["params"]),
            "candidates": float(len(rows)),
            "search_seconds": spent + memo["seconds"],
        }
        return SearchResult(Genotype.from_dict(best["genotype"]), metrics, rows, rows)

    def _trained(self, ctx: SearchContext) -> Callable[[Genotype, int], dict[str, Any]]:
        def evaluate(genotype: Genotype, i: int) -> dict[str, Any]:
            return train_candidate(
                ctx, genotype, phase=_phase(i), epochs=self.train_epochs, lr=self.lr
            )

        return evaluate

    def _shared_weights(
        self, ctx: SearchContext, run: SupernetRun
    ) -> Callable[[Genotype, int], dict[str, Any]]:
        trainer, net = ctx.trainer, run.net

        def evaluate(genotype: Genotype, i: int) -> dict[str, Any]:
            hot = {k: v.to(trainer.device) for k, v in ctx.space.one_hot(genotype).items()}
            if self.recalibrate:
                recalibrate_batchnorm(
                    net, lambda x: net(x, hot), trainer, ctx.batch_size, self.recalibrate
                )
            val = trainer.evaluate(lambda x: net(x, hot), "arch", module=net)
            return {
                "genotype": genotype.to_dict(),
                "metric": val.get(ctx.task.metric, math.nan),
                "params": count_params(ctx.space.build(genotype, ctx.task)),
                "status": "ok",
            }

        return evaluate


class SamplePool:
    """Distinct valid genotypes in an order fixed by the seed; ``get(i)`` is the i-th of them."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.space = space
        self.rng = random.Random(seed)
        self.drawn: list[Genotype] = []
        self._seen: set[Genotype] = set()

    def _suggest(self, name: str, options: Any) -> Any:
        return self.rng.choice(list(options))

    def get(self, i: int) -> Genotype | None:
        """The ``i``-th distinct genotype, or None when the space has fewer."""
        misses = 0
        while len(self.drawn) <= i and misses < _DUPLICATE_DRAWS:
            g = self.space.sample(self._suggest)
            if g in self._seen:
                misses += 1
                continue
            self._seen.add(g)
            self.drawn.append(g)
            misses = 0
        return self.drawn[i] if i < len(self.drawn) else None


def _phase(i: int) -> str:
    return f"random/candidate{i:05d}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if _finite(v) else "nan"
