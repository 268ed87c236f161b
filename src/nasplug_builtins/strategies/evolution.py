"""Regularized (aging) evolution: the baseline every NAS benchmark reports (Real et al., 2019).

A population of ``population`` genotypes starts as distinct random draws. Each step samples
``sample`` members at random, mutates the best of them (one decision changed) into a child,
evaluates the child, adds it and removes the *oldest* member, whatever its score: the
population is always the ``population`` most recently evaluated genotypes. Candidates are
evaluated as random search evaluates them (a short training, a shared supernet, or the space's
benchmark table; see :class:`nasplug.searchlib.blackbox.Evaluation`).

Under a resource budget every candidate is within it: the initial draws are rejection-sampled
(see :class:`nasplug.searchlib.blackbox.SamplePool`) and a mutation whose child is outside the budget
is retried with another single change; after :data:`MUTATION_TRIES` such children the next
best contender of the tournament is the parent.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from nasplug.core.interfaces import SearchContext, SearchSpace, Strategy
from nasplug.core.types import Genotype, SearchResult
from nasplug.searchlib.blackbox import (
    Evaluation,
    SamplePool,
    candidate_search,
    log_queries,
    table_search,
)

__all__ = ["MUTATION_TRIES", "Evolution", "mutate"]

#: Children outside the budget after which a parent is given up for another one.
MUTATION_TRIES = 50


class Evolution(Strategy):
    """Aging evolution over the space's valid genotypes, for any space.

    A mutation replays the parent's decisions through ``space.sample`` with one of them
    answered differently (see :func:`mutate`), so the child is always a valid genotype of the
    space. Every step's randomness depends only on the seed and the step, and every finished
    candidate is checkpointed, so a killed search resumes without redoing any and ends as an
    uninterrupted one would. Each evaluation counts against ``candidates``, a child equal to an
    earlier genotype included. With ``method=table`` the search takes no data and no training.
    With ``ctx.feasible`` (a resource budget) every candidate meets it (see the module's
    docstring); when no contender of a step has a feasible child, the step evaluates a copy
    of the best contender.

    Args:
        population: members of the population (the first ``population`` candidates are
            distinct random genotypes).
        sample: members drawn at random (without replacement) for each tournament; the best of
            them is the parent. The defaults (10 and 5) were chosen on the nb201 table (see
            docs/benchmarks.md).
        candidates: genotypes evaluated in all, the initial population included.
        method: ``train``, ``supernet`` or ``table`` (see :class:`~nasplug.searchlib.blackbox.Evaluation`).
        train_epochs: training epochs of each candidate (``train``).
        lr: SGD learning rate of each candidate's training (``train``).
        supernet_epochs: epochs of the supernet (``supernet``; 0: the run's epochs).
        recalibrate: batches on which BatchNorm statistics are re-estimated for each candidate
            (``supernet``; 0: use the shared statistics).
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {
        "population": 2,
        "sample": 2,
        "candidates": 3,
        "train_epochs": 1,
    }

    def __init__(
        self,
        population: int = 10,
        sample: int = 5,
        candidates: int = 20,
        method: str = "train",
        train_epochs: int = 2,
        lr: float = 0.025,
        supernet_epochs: int = 0,
        recalibrate: int = 4,
    ) -> None:
        self.evaluation = Evaluation(
            method, train_epochs, lr, supernet_epochs, recalibrate, who="evolution"
        )
        if population < 1 or candidates < 1:
            raise ValueError(
                f"population and candidates must be at least 1, got {population} and {candidates}"
            )
        if not 1 <= sample <= population:
            raise ValueError(
                f"sample must be between 1 and population ({population}), got {sample}"
            )
        self.population = population
        self.sample = sample
        self.candidates = candidates
        self.method = method

    def search(self, ctx: SearchContext) -> SearchResult:
        if self.method == "table":
            result = self.search_table(
                ctx.space, seed=ctx.seed, queries=self.candidates, feasible=ctx.feasible
            )
            log_queries(ctx, "evolution", result)
            return result
        propose = _Proposer(
            ctx.space, ctx.seed, self.population, self.sample, ctx.task.better, ctx.feasible
        )
        return candidate_search(
            ctx, "evolution", self.evaluation, propose, candidates=self.candidates
        )

    def search_table(
        self,
        space: SearchSpace,
        *,
        seed: int,
        queries: int,
        feasible: Callable[[Genotype], bool] | None = None,
    ) -> SearchResult:
        """``queries`` evaluations under ``seed``, each a lookup in the space's table (only of
        genotypes ``feasible`` accepts, when given)."""
        propose = _Proposer(space, seed, self.population, self.sample, _greater, feasible)
        return table_search(
            space,
            "evolution",
            propose,
            queries=queries,
            accepted=self.evaluation.accepted,
            feasible=feasible,
        )


def mutate(
    space: SearchSpace,
    decisions: dict[str, Any],
    rng: random.Random,
    feasible: Callable[[Genotype], bool] | None = None,
) -> tuple[Genotype, dict[str, Any]] | None:
    """A child of the genotype that ``decisions`` drew: one decision answered differently.

    ``decisions`` maps every ``suggest(name, options)`` call of the parent's ``space.sample``
    to its answer. The child replays them through ``space.sample``; one decision, picked at
    random among those with another option, gets a different option, picked at random. A
    decision the parent never took (a space whose later decisions depend on earlier ones) is
    drawn at random. Decision names must be unique within one draw, as in every built-in space.
    With ``feasible``, a child it refuses is replaced by another single change (the decisions
    taken in turn, again and again), up to :data:`MUTATION_TRIES` children.
    Returns the child and its decisions, or None when no decision has another option (or no
    feasible child was found).
    """
    names = list(decisions)
    rng.shuffle(names)
    refused = 0
    while True:
        changed = False
        for target in names:
            child = _replay(space, decisions, target, rng)
            if child is None:
                continue
            if feasible is None or feasible(child[0]):
                return child
            changed, refused = True, refused + 1
            if refused >= MUTATION_TRIES:
                return None
        if not changed:
            return None


def _replay(
    space: SearchSpace, decisions: dict[str, Any], target: str, rng: random.Random
) -> tuple[Genotype, dict[str, Any]] | None:
    """The parent's draw replayed with decision ``target`` changed; None if it has no other
    option."""
    child: dict[str, Any] = {}
    changed = False

    def suggest(name: str, options: Sequence[Any]) -> Any:
        nonlocal changed
        options = list(options)
        parent = decisions.get(name)
        others = [o for o in options if o != parent] if name == target else []
        if others:
            changed = True
            child[name] = rng.choice(others)
        elif name in decisions and parent in options:
            child[name] = parent
        else:
            child[name] = rng.choice(options)
        return child[name]

    genotype = space.sample(suggest)
    return (genotype, child) if changed else None


class _Proposer:
    """The genotype of each step: the initial draws, then tournaments and mutations."""

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        population: int,
        sample: int,
        better: Callable[[float, float], bool],
        feasible: Callable[[Genotype], bool] | None = None,
    ) -> None:
        self.space, self.seed, self.feasible = space, seed, feasible
        self.population, self.sample, self.better = population, sample, better
        self.pool = SamplePool(space, seed, feasible)

    def __call__(self, rows: list[dict[str, Any]], i: int) -> tuple[Genotype, dict[str, Any]]:
        """The i-th candidate, its decisions and where it came from, given the rows before it."""
        if i < self.population:
            genotype = self.pool.get(i)
            if genotype is not None:
                return genotype, {"decisions": self.pool.decisions(i), "origin": "random"}
        rng = random.Random(f"evolution/{self.seed}/{i}")
        members = rows[-self.population :]
        contenders = rng.sample(range(len(members)), min(self.sample, len(members)))
        ranked = self._ranked(members, contenders)
        # Without a budget only the tournament's winner is tried, as it always was.
        tried = ranked if self.feasible is not None else ranked[:1]
        for parent in tried:
            mutated = mutate(self.space, members[parent]["decisions"], rng, self.feasible)
            if mutated is not None:
                genotype, decisions = mutated
                origin = f"mutant of {members[parent]['index']}"
                return genotype, {"decisions": decisions, "origin": origin}
        # A space of one genotype, or no contender with a child within the budget.
        row = members[ranked[0]]
        copy = {"decisions": dict(row["decisions"]), "origin": "copy"}
        return Genotype.from_dict(row["genotype"]), copy

    def _ranked(self, members: list[dict[str, Any]], contenders: list[int]) -> list[int]:
        """The contenders, best first: the tournament's winner, then the winner of the rest..."""
        left, ranked = list(contenders), []
        while left:
            best = left[0]
            for k in left[1:]:
                m, b = members[k]["metric"], members[best]["metric"]
                if _finite(m) and (not _finite(b) or self.better(m, b)):
                    best = k
            ranked.append(best)
            left.remove(best)
        return ranked


def _greater(a: float, b: float) -> bool:
    return a > b


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
