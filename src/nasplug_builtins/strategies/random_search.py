"""Random search: the baseline every architecture search should beat (Li and Talwalkar, 2019).

Valid genotypes are drawn with ``space.sample`` from a seeded ``random.Random`` and evaluated
one by one: by a short training of each discrete network, by the weights they share in a
supernet trained along uniformly sampled paths, or by the space's benchmark table. The budget
is a number of candidates or a wall-clock time, so that random search can be given the compute
of a DARTS run. Under a resource budget only genotypes within it are drawn (rejection
sampling; see :class:`nasplug.searchlib.blackbox.SamplePool`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from nasplug.core.interfaces import SearchContext, SearchSpace, Strategy
from nasplug.core.types import Genotype, SearchResult
from nasplug.searchlib.blackbox import (
    Evaluation,
    Propose,
    SamplePool,
    candidate_search,
    log_queries,
    table_search,
)

__all__ = ["RandomSearch"]


class RandomSearch(Strategy):
    """Random search over the space's valid genotypes.

    Every finished candidate is checkpointed, so a killed search resumes without redoing any;
    the sequence of candidates depends only on the seed. The time budget counts the time
    spent over all sessions of the run (a supernet's training included) and is checked before
    each candidate: the last one may finish after it; at least one candidate is evaluated.
    With ``method=table`` the search takes no data and no training: ``candidates`` is the
    number of table queries, and the run records the table's best value under the table's own
    metric name (see :class:`nasplug.searchlib.blackbox.Evaluation`).

    Args:
        method: ``train``, ``supernet`` or ``table`` (see :class:`~nasplug.searchlib.blackbox.Evaluation`).
        candidates: how many candidates to evaluate (0: no limit, then ``time_budget`` is needed).
        time_budget: wall-clock seconds for the search (0: no limit).
        train_epochs: training epochs of each candidate (``train``).
        lr: SGD learning rate of each candidate's training (``train``).
        supernet_epochs: epochs of the supernet (``supernet``; 0: the run's epochs).
        recalibrate: batches of the weight half on which BatchNorm statistics are re-estimated
            for each candidate before it is scored (``supernet``; 0: use the shared statistics).
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {"candidates": 2, "train_epochs": 1}

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
        self.evaluation = Evaluation(
            method, train_epochs, lr, supernet_epochs, recalibrate, who="random search"
        )
        if candidates < 0 or time_budget < 0:
            raise ValueError("candidates and time_budget must be >= 0")
        if candidates == 0 and time_budget == 0:
            raise ValueError(
                "random search needs a budget: candidates > 0 or time_budget > 0 seconds"
            )
        if method == "table" and candidates == 0:
            raise ValueError("method=table counts table queries: give candidates > 0")
        self.method = method
        self.candidates = candidates
        self.time_budget = time_budget

    def search(self, ctx: SearchContext) -> SearchResult:
        if self.method == "table":
            result = self.search_table(
                ctx.space, seed=ctx.seed, queries=self.candidates, feasible=ctx.feasible
            )
            log_queries(ctx, "random", result)
            return result
        return candidate_search(
            ctx,
            "random",
            self.evaluation,
            _drawn(SamplePool(ctx.space, ctx.seed, ctx.feasible)),
            candidates=self.candidates,
            time_budget=self.time_budget,
        )

    def search_table(
        self,
        space: SearchSpace,
        *,
        seed: int,
        queries: int,
        feasible: Callable[[Genotype], bool] | None = None,
    ) -> SearchResult:
        """``queries`` distinct genotypes drawn under ``seed`` (only those ``feasible``
        accepts, when given), each looked up in the table."""
        propose = _drawn(SamplePool(space, seed, feasible))
        return table_search(
            space,
            "random",
            propose,
            queries=queries,
            accepted=self.evaluation.accepted,
            feasible=feasible,
        )


def _drawn(pool: SamplePool) -> Propose:
    """The pool's i-th distinct genotype, whatever the candidates before it scored."""

    def propose(rows: list[dict[str, Any]], i: int) -> tuple[Genotype, dict[str, Any]] | None:
        genotype = pool.get(i)
        return None if genotype is None else (genotype, {})

    return propose
