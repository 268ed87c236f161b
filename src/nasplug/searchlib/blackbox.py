"""Black-box search: how the strategies that propose whole genotypes (random search, TPE,
evolution) draw, score and rank them.

A black-box strategy proposes genotypes and needs each one scored. :class:`Evaluation` holds
the ways every built-in one offers (``method=train``, ``supernet`` or ``table``) with their
settings, checked once; :class:`SamplePool` draws distinct valid genotypes (within the run's
budget, when it has one: :attr:`~nasplug.core.interfaces.SearchContext.feasible`) in an order fixed
by the seed and remembers the decisions behind each; :func:`candidate_search` is the loop of a
strategy that proposes one genotype at a time (evaluate, record, checkpoint, rank), and
:func:`table_search` its counterpart on a benchmark table; :func:`benchmark_of` hands over a
space's benchmark table or fails in one line; :func:`table_result` turns a list of table
queries into the search's result.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from nasplug.core import registry
from nasplug.core.interfaces import BenchmarkTable, OffersBenchmark, SearchContext, SearchSpace
from nasplug.core.options import OptionError
from nasplug.core.protocols import TrainerView
from nasplug.core.types import Genotype, SearchResult
from nasplug.engine.memo import Memo
from nasplug.engine.memory import count_params
from nasplug.engine.trainer import NonFiniteLoss
from nasplug.searchlib.supernet import recalibrate_batchnorm, search_supernet

__all__ = [
    "METHODS",
    "Evaluate",
    "Evaluation",
    "Propose",
    "SamplePool",
    "benchmark_of",
    "best_candidate",
    "candidate_phase",
    "candidate_search",
    "forget_checkpoint",
    "infeasible_error",
    "log_queries",
    "table_result",
    "table_search",
    "train_candidate",
]

#: Ways a black-box strategy scores a genotype (see :class:`Evaluation`).
METHODS = ("train", "supernet", "table")
#: ``evaluate(genotype, i) -> record`` scores the i-th candidate of a search.
Evaluate = Callable[[Genotype, int], dict[str, Any]]
#: ``propose(rows, i) -> (genotype, extra)`` gives the i-th candidate of a search from the
#: records of the candidates before it, with the fields to add to its record; None when the
#: space has no more genotypes to offer.
Propose = Callable[[list[dict[str, Any]], int], tuple[Genotype, dict[str, Any]] | None]
# Consecutive duplicate draws after which a space counts as exhausted.
_DUPLICATE_DRAWS = 200
#: Consecutive draws outside the budget after which a sampler gives up: with none feasible
#: before, the budget is too tight (:func:`infeasible_error`); after some, the space holds no
#: more distinct feasible genotypes.
FEASIBLE_DRAWS = 10_000


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


def forget_checkpoint(trainer: TrainerView, phase: str) -> None:
    """Delete a finished candidate's checkpoint: its result is kept in the search's memo."""
    if trainer.run is not None and trainer.run.writer:
        trainer.run.checkpoint_path(phase).unlink(missing_ok=True)


@dataclass(frozen=True)
class Evaluation:
    """How a black-box strategy scores a genotype: the method and its settings, checked once.

    Args:
        method: ``train`` (each candidate trains from scratch for ``train_epochs`` on the weight
            half, scored on the architecture half), ``supernet`` (one weight-sharing supernet
            trained along uniformly sampled paths; each candidate is scored on the architecture
            half with the supernet's weights) or ``table`` (each candidate is looked up in the
            space's benchmark table: no data, no training; see :func:`benchmark_of`).
        train_epochs: training epochs of each candidate (``train``).
        lr: SGD learning rate of each candidate's training (``train``).
        supernet_epochs: epochs of the supernet (``supernet``; 0: the run's epochs).
        recalibrate: batches of the weight half on which BatchNorm statistics are re-estimated
            for each candidate before it is scored (``supernet``; 0: use the shared statistics).
        accepted: the methods the strategy offers (its error messages list them).
        who: how error messages name the strategy (``random search``).
    """

    method: str = "train"
    train_epochs: int = 2
    lr: float = 0.025
    supernet_epochs: int = 0
    recalibrate: int = 4
    accepted: tuple[str, ...] = METHODS
    who: str = "black-box search"

    def __post_init__(self) -> None:
        if self.method not in self.accepted:
            raise ValueError(
                f"unknown {self.who} method {self.method!r}; accepted: {', '.join(self.accepted)}"
            )
        if self.train_epochs < 1:
            raise ValueError(f"train_epochs must be at least 1, got {self.train_epochs}")
        if self.supernet_epochs < 0 or self.recalibrate < 0:
            raise ValueError("supernet_epochs and recalibrate must be >= 0")

    def prepare(self, ctx: SearchContext, strategy: str) -> tuple[Evaluate, float]:
        """The ``evaluate`` function of a search, and the seconds spent preparing it.

        ``supernet`` trains the shared supernet here (phase ``supernet``); ``train`` gives each
        candidate the phase ``{strategy}/candidate{i:05d}`` (delete it with
        :func:`forget_checkpoint` once the candidate's record is safe). ``table`` records carry
        the table's value under ``metric`` and no parameter count.
        """
        if self.method == "table":
            table = benchmark_of(ctx.space, strategy, self.accepted)
            return _queried(table), 0.0
        if self.method == "supernet":
            run = search_supernet(
                ctx,
                ctx.space,
                epochs=self.supernet_epochs or ctx.epochs,
                phase="supernet",
                sample_paths=True,
            )
            return self._shared_weights(ctx, run.net), run.seconds

        def trained(genotype: Genotype, i: int) -> dict[str, Any]:
            return train_candidate(
                ctx,
                genotype,
                phase=candidate_phase(strategy, i),
                epochs=self.train_epochs,
                lr=self.lr,
            )

        return trained, 0.0

    def _shared_weights(self, ctx: SearchContext, net: nn.Module) -> Evaluate:
        trainer = ctx.trainer

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


def candidate_search(
    ctx: SearchContext,
    strategy: str,
    evaluation: Evaluation,
    propose: Propose,
    *,
    candidates: int,
    time_budget: float = 0.0,
) -> SearchResult:
    """The search of a strategy that proposes one genotype at a time: evaluate, record, rank.

    ``evaluation`` is prepared first (:meth:`Evaluation.prepare`). Candidate ``i`` is then
    ``propose(rows, i)`` given the records before it, scored by the evaluation, and recorded
    as ``{"index": i, **evaluated, **extra, "seconds": ...}`` (the seconds of its evaluation).
    Each record is logged as a ``candidate`` event and said in one line, ``{strategy} candidate
    {i + 1}: ...``, with the record's ``origin`` in brackets after the number when the
    proposer gives one. The records are the memo of ``trainer.epochs(n, {"memo": memo},
    strategy)``, so a killed search resumes after its last finished candidate; a trained
    candidate's checkpoint is deleted once its record is saved (:func:`forget_checkpoint`).

    Args:
        ctx: the search's context.
        strategy: the strategy's name: the phase of its loop, its candidates' phases
            (:func:`candidate_phase`) and the first word of its lines.
        evaluation: how each candidate is scored (``train`` or ``supernet``; a search by table
            is :func:`table_search`).
        propose: the genotype of each candidate (see :data:`Propose`); None ends the search.
        candidates: how many candidates to evaluate (0: no limit; then ``time_budget`` must
            end the search).
        time_budget: wall-clock seconds, the evaluation's preparation included, over all
            sessions of the run; checked before each candidate after the first (0: no limit).

    Returns:
        The best candidate (:func:`best_candidate`), with metrics ``val_<task.metric>``,
        ``params``, ``candidates`` and ``search_seconds``; the records are both the history
        and the candidates.

    Raises:
        ValueError: the search evaluated no candidate (the space offered none).
    """
    trainer, task = ctx.trainer, ctx.task
    evaluate, spent = evaluation.prepare(ctx, strategy)
    memo = Memo(candidates=[], seconds=0.0)
    for i in trainer.epochs(candidates or 2**62, {"memo": memo}, strategy):
        if i > 0:  # the finished candidate is in the memo now
            forget_checkpoint(trainer, candidate_phase(strategy, i - 1))
        if time_budget and i > 0 and spent + memo["seconds"] >= time_budget:
            break
        proposed = propose(memo["candidates"], i)
        if proposed is None:
            trainer.say(f"{strategy}: the space has no more distinct genotypes after {i}")
            break
        genotype, extra = proposed
        _check_feasible(ctx.feasible, genotype, strategy)
        t0 = time.time()
        rec = {"index": i, **evaluate(genotype, i), **extra}
        rec["seconds"] = time.time() - t0
        memo["candidates"].append(rec)
        memo["seconds"] += rec["seconds"]
        trainer.log("candidate", **rec)
        origin = f" ({rec['origin']})" if "origin" in rec else ""
        trainer.say(
            f"{strategy} candidate {i + 1}{origin}: {task.metric} {_fmt(rec['metric'])} "
            f"({rec['params']} parameters, {rec['seconds']:.1f}s)"
        )
    rows = list(memo["candidates"])
    if not rows:
        raise ValueError(f"{evaluation.who} found no valid genotype to evaluate in this space")
    forget_checkpoint(trainer, candidate_phase(strategy, len(rows) - 1))
    best = best_candidate(rows, task.better)
    metrics = {
        f"val_{task.metric}": best["metric"],
        "params": float(best["params"]),
        "candidates": float(len(rows)),
        "search_seconds": spent + memo["seconds"],
    }
    return SearchResult(Genotype.from_dict(best["genotype"]), metrics, rows, rows)


def table_search(
    space: SearchSpace,
    strategy: str,
    propose: Propose,
    *,
    queries: int,
    accepted: Sequence[str] | None = None,
    feasible: Callable[[Genotype], bool] | None = None,
) -> SearchResult:
    """:func:`candidate_search` on the space's benchmark table: no data, no training.

    Query ``i`` is ``propose(rows, i)`` given the rows before it, looked up in the table
    (:func:`benchmark_of`, which names ``strategy`` and ``accepted`` if the space has none),
    and recorded as ``{"index": i, "genotype": ..., "metric": value, **extra}``. The search
    stops after ``queries`` queries, or earlier when ``propose`` returns None. A proposed
    genotype that ``feasible`` refuses is a ValueError, as in :func:`candidate_search`.

    Returns:
        :func:`table_result` of the rows, the seconds counting from before the table is asked
        for.
    """
    t0 = time.perf_counter()
    table = benchmark_of(space, strategy, accepted)
    rows: list[dict[str, Any]] = []
    for i in range(queries):
        proposed = propose(rows, i)
        if proposed is None:
            break
        genotype, extra = proposed
        _check_feasible(feasible, genotype, strategy)
        rows.append(
            {"index": i, "genotype": genotype.to_dict(), "metric": table.query(genotype), **extra}
        )
    return table_result(table, rows, time.perf_counter() - t0)


def candidate_phase(strategy: str, i: int) -> str:
    """The checkpoint phase of a strategy's ``i``-th trained candidate."""
    return f"{strategy}/candidate{i:05d}"


class SamplePool:
    """Distinct valid genotypes in an order fixed by the seed; ``get(i)`` is the i-th of them.

    Each genotype is drawn by ``space.sample`` with a seeded ``random.choice``;
    ``decisions(i)`` says what that draw answered to each ``suggest(name, options)`` call, so a
    strategy can replay a genotype's decisions with one of them changed (a mutation).

    With ``feasible`` (the run's budget, see
    :attr:`~nasplug.core.interfaces.SearchContext.feasible`) a draw it refuses is rejected and drawn
    again, up to :data:`FEASIBLE_DRAWS` draws in a row: the pool then holds every feasible
    genotype it will find, or, having found none, raises :func:`infeasible_error`. Without it
    the draws are exactly those of a pool that knows no budget.
    """

    def __init__(
        self, space: SearchSpace, seed: int, feasible: Callable[[Genotype], bool] | None = None
    ) -> None:
        self.space = space
        self.feasible = feasible
        self.rng = random.Random(seed)
        self.drawn: list[Genotype] = []
        self._decisions: list[dict[str, Any]] = []
        self._seen: set[Genotype] = set()
        self._current: dict[str, Any] = {}

    def _suggest(self, name: str, options: Sequence[Any]) -> Any:
        value = self.rng.choice(list(options))
        self._current[name] = value
        return value

    def get(self, i: int) -> Genotype | None:
        """The ``i``-th distinct genotype, or None when the space has fewer.

        Raises:
            OptionError: ``feasible`` refused :data:`FEASIBLE_DRAWS` draws in a row and no
                draw before them.
        """
        misses = rejected = 0
        while len(self.drawn) <= i and misses < _DUPLICATE_DRAWS:
            self._current = {}
            g = self.space.sample(self._suggest)
            if g in self._seen:
                misses += 1
                continue
            if self.feasible is not None and not self.feasible(g):
                rejected += 1
                if rejected < FEASIBLE_DRAWS:
                    continue
                if not self.drawn:
                    raise infeasible_error(FEASIBLE_DRAWS)
                break
            self._seen.add(g)
            self.drawn.append(g)
            self._decisions.append(self._current)
            misses = rejected = 0
        return self.drawn[i] if i < len(self.drawn) else None

    def decisions(self, i: int) -> dict[str, Any]:
        """``{name: option}`` of every decision behind :meth:`get`'s ``i``-th genotype."""
        return dict(self._decisions[i])


def infeasible_error(draws: int) -> OptionError:
    """The one-line error of a sampler that found no genotype within the budget in ``draws``."""
    return OptionError(
        f"none of {draws} genotypes drawn met the budget; the budget may be too tight for "
        f"this space: raise it"
    )


def benchmark_of(
    space: SearchSpace, strategy: str, accepted: Sequence[str] | None = None
) -> BenchmarkTable:
    """The space's benchmark table, or an :class:`~nasplug.core.options.OptionError` in one line.

    ``strategy`` and ``accepted`` (its methods, when known) name what the user asked for and
    what else would do in the message.
    """
    if not isinstance(space, OffersBenchmark):
        others = [m for m in accepted or () if m != "table"]
        instead = f"method={', '.join(others)}" if others else "another method"
        raise OptionError(
            f"strategy {strategy!r}: method=table needs a space that offers a benchmark "
            f"table, and space {registry.name_of(space)!r} has none; accepted: {instead}, "
            f"or a space with a table"
        )
    return space.benchmark()


def table_result(table: BenchmarkTable, rows: list[dict[str, Any]], seconds: float) -> SearchResult:
    """The result of a search by table: the best queried genotype (the first of equals).

    ``rows`` hold one query each, in order, with the table's value under ``metric``. The
    metrics carry the best value under ``table.metric``, what it is (``table``: its label), the
    number of queries and the seconds spent; no trained accuracy, since nothing was trained.
    The table's value is maximised.
    """
    if not rows:
        raise ValueError("the search queried no genotype: the space has none to draw")
    best = rows[0]
    for row in rows[1:]:
        if row["metric"] > best["metric"]:
            best = row
    metrics = {
        table.metric: best["metric"],
        "queries": float(len(rows)),
        "best_query": float(rows.index(best)),
        "search_seconds": seconds,
    }
    return SearchResult(Genotype.from_dict(best["genotype"]), metrics, rows, rows)


def log_queries(ctx: SearchContext, strategy: str, result: SearchResult) -> None:
    """Log a search by table into the run's events and say its outcome in one line."""
    for row in result.history:
        ctx.trainer.log("candidate", **row)
    table = benchmark_of(ctx.space, strategy)
    ctx.trainer.say(
        f"{strategy}: best {table.metric} {result.metrics[table.metric]:.4f} in "
        f"{int(result.metrics['queries'])} table queries ({table.label})"
    )


def _check_feasible(
    feasible: Callable[[Genotype], bool] | None, genotype: Genotype, strategy: str
) -> None:
    if feasible is not None and not feasible(genotype):
        raise ValueError(
            f"strategy {strategy!r} proposed a genotype outside the budget; a black-box "
            f"strategy must propose only genotypes that SearchContext.feasible accepts"
        )


def _queried(table: BenchmarkTable) -> Evaluate:
    def evaluate(genotype: Genotype, i: int) -> dict[str, Any]:
        return {"genotype": genotype.to_dict(), "metric": table.query(genotype), "status": "ok"}

    return evaluate


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if _finite(v) else "nan"
