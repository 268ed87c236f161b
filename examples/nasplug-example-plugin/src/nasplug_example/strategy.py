"""Regularised evolution (Real et al., 2019), using only the space's ``sample`` and the trainer.

A population of sampled architectures is trained and scored; each cycle picks the best of a
random sample of the population as parent, mutates one of its decisions, trains the child and
retires the oldest member. The strategy never looks inside the space: a genotype is the record
of the answers ``space.sample(suggest)`` got, and a mutation replays a parent's answers but one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, ClassVar

from nasplug.core.interfaces import SearchContext, Strategy
from nasplug.core.types import Genotype, SearchResult
from nasplug.engine.memo import Memo
from nasplug.engine.trainer import NonFiniteLoss

__all__ = ["RegularisedEvolution"]


class RegularisedEvolution(Strategy):
    """Aging evolution over ``space.sample``: ``population`` random members, then ``cycles`` children.

    Each candidate trains from scratch on the weight half for ``train_epochs`` and is scored on
    the architecture half. The search is one checkpointed phase (``evolution``); each candidate's
    randomness is derived from the seed and its number, so a resumed run continues exactly.

    Args:
        population: members alive at any time (the first ones are sampled at random).
        cycles: children bred after the initial population.
        sample_size: members compared to pick each parent (tournament size).
        train_epochs: training epochs per candidate (0: the run's ``--epochs``).
        lr: SGD learning rate of each candidate's training.
    """

    #: Options of a tiny search, for the conformance suites (``nasplug.testing``).
    test_options: ClassVar[dict[str, Any]] = {"population": 3, "cycles": 3, "sample_size": 2}

    def __init__(
        self,
        population: int = 6,
        cycles: int = 10,
        sample_size: int = 3,
        train_epochs: int = 0,
        lr: float = 0.025,
    ) -> None:
        if population < 1 or cycles < 0 or sample_size < 1 or train_epochs < 0:
            raise ValueError(
                "evolution needs population >= 1, cycles >= 0, sample_size >= 1 and "
                "train_epochs >= 0"
            )
        self.population = population
        self.cycles = cycles
        self.sample_size = sample_size
        self.train_epochs = train_epochs
        self.lr = lr

    def search(self, ctx: SearchContext) -> SearchResult:
        trainer, task = ctx.trainer, ctx.task
        memo = Memo(members=[])
        for i in trainer.epochs(self.population + self.cycles, {"memo": memo}, "evolution"):
            rng = random.Random(f"{ctx.seed}/{i}")
            members = memo["members"]
            alive = members[-self.population :]
            if i < self.population:
                parent, decisions = None, {}
                genotype = ctx.space.sample(_recorder(rng, decisions))
            else:
                pool = rng.sample(alive, min(self.sample_size, len(alive)))
                parent = _best(pool, task.better)
                decisions = {}
                genotype = ctx.space.sample(_mutant(rng, parent["decisions"], decisions))
            record = {
                "candidate": i,
                "parent": -1 if parent is None else parent["candidate"],
                "decisions": decisions,
                "genotype": genotype.to_dict(),
                **self._score(ctx, genotype, f"evolution/candidate{i:04d}"),
            }
            members.append(record)
            trainer.log("candidate", **{k: v for k, v in record.items() if k != "decisions"})
            trainer.say(
                f"evolution candidate {i + 1}/{self.population + self.cycles}: "
                f"{task.metric} {record['metric']:.4f} ({record['params']} parameters)"
            )
        rows = [{k: v for k, v in m.items() if k != "decisions"} for m in memo["members"]]
        best = _best(rows, task.better)
        metrics = {
            f"val_{task.metric}": best["metric"],
            "params": float(best["params"]),
            "candidates": float(len(rows)),
        }
        return SearchResult(Genotype.from_dict(best["genotype"]), metrics, rows, rows)

    def _score(self, ctx: SearchContext, genotype: Genotype, phase: str) -> dict[str, Any]:
        trainer = ctx.trainer
        model = ctx.space.build(genotype, ctx.task)
        params = sum(p.numel() for p in model.parameters())
        try:
            hist = trainer.fit(
                model,
                epochs=self.train_epochs or ctx.epochs,
                batch_size=ctx.batch_size,
                phase=phase,
                train_split="weight",
                eval_split="arch",
                lr=self.lr,
            )
            metric = float(hist[-1]["arch"].get(ctx.task.metric, math.nan))
        except NonFiniteLoss:
            metric = math.nan
        if trainer.run is not None and trainer.run.writer:
            # The result is in the search's memo now; the candidate's checkpoint is not needed.
            trainer.run.checkpoint_path(phase).unlink(missing_ok=True)
        return {"metric": metric, "params": params}


def _recorder(rng: random.Random, decisions: dict[str, Any]) -> Any:
    """A random ``suggest`` that records its answers."""

    def suggest(name: str, options: Sequence[Any]) -> Any:
        decisions[name] = rng.choice(list(options))
        return decisions[name]

    return suggest


def _mutant(rng: random.Random, parent: dict[str, Any], decisions: dict[str, Any]) -> Any:
    """A ``suggest`` replaying ``parent``'s answers except one, which changes if it can."""
    mutated = rng.choice(sorted(parent)) if parent else None

    def suggest(name: str, options: Sequence[Any]) -> Any:
        options = list(options)
        if name == mutated:
            others = [o for o in options if o != parent[name]]
            decisions[name] = rng.choice(others or options)
        elif name in parent and parent[name] in options:
            decisions[name] = parent[name]
        else:  # a decision the parent never faced (the mutation changed the structure)
            decisions[name] = rng.choice(options)
        return decisions[name]

    return suggest


def _best(rows: Sequence[dict[str, Any]], better: Any) -> dict[str, Any]:
    """The row with the best finite metric (the first if none is finite)."""
    best = rows[0]
    for row in rows[1:]:
        if math.isfinite(row["metric"]) and (
            not math.isfinite(best["metric"]) or better(row["metric"], best["metric"])
        ):
            best = row
    return best
