"""The query-budget curve: the best benchmark value found against the number of table queries.

Every black-box strategy that can search by a table alone (a
:class:`~nasplug.core.interfaces.SearchesTable`) runs on a space's benchmark table under many
seeds; the curve is the best value among the first ``n`` queries, averaged over the seeds. No
data, trainer or run directory is involved, so a strategy's cost is its own proposal logic.

Example:
    >>> import nasplug
    >>> found = nasplug.curve("nb201", ["random", "evolution"], seeds=10, queries=100)  # doctest: +SKIP
    >>> print(found.table())                                                         # doctest: +SKIP
    >>> found.save("curves/")                                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MARKS", "QueryCurves", "curve"]

#: Query counts at which :meth:`QueryCurves.table` reports the best value (those within budget).
MARKS = (25, 50, 100, 200)


@dataclass(frozen=True)
class QueryCurves:
    """Best-so-far table values of several strategies over seeds, and their wall time.

    ``curves[strategy][k][n - 1]`` is the best value among the first ``n`` queries of the
    ``k``-th seed (a search that ran out of distinct genotypes keeps its last best).
    ``seconds[strategy]`` is the wall time of all its seeds together.
    """

    space: str
    label: str
    metric: str
    best: float
    queries: int
    seeds: tuple[int, ...]
    curves: Mapping[str, Sequence[Sequence[float]]]
    seconds: Mapping[str, float]

    def at(self, strategy: str, n: int) -> tuple[float, float]:
        """Mean and sample sd over seeds of the best value within ``n`` queries (sd NaN for
        one seed)."""
        values = [c[n - 1] for c in self.curves[strategy]]
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        return statistics.fmean(values), sd

    def marks(self) -> list[int]:
        """The query counts the table reports: :data:`MARKS` within budget, and the budget."""
        return sorted({n for n in MARKS if n <= self.queries} | {self.queries})

    def table(self) -> str:
        """A Markdown table: mean ± sd of the best value at each mark, and the wall time."""
        marks = self.marks()
        head = ["strategy", *(f"{n} queries" for n in marks), "seconds (all seeds)"]
        lines = [
            f"{self.label}, space {self.space}: best {self.metric} found (mean ± sd over "
            f"{len(self.seeds)} seeds); the table's best is {self.best:.2f}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join("---" for _ in head) + "|",
        ]
        for name in self.curves:
            cells = [name]
            for n in marks:
                mean, sd = self.at(name, n)
                cells.append(f"{mean:.2f} ± {sd:.2f}" if math.isfinite(sd) else f"{mean:.2f}")
            cells.append(f"{self.seconds[name]:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "label": self.label,
            "metric": self.metric,
            "best": self.best,
            "queries": self.queries,
            "seeds": list(self.seeds),
            "curves": {k: [list(c) for c in v] for k, v in self.curves.items()},
            "seconds": dict(self.seconds),
        }

    def save(self, out: str | Path) -> list[Path]:
        """Write ``curve.md`` (the table), ``curve.json`` (every seed's curve) and
        ``curve.png`` (mean and a band of one sd over seeds) into the folder ``out``."""
        from nasplug.report import plotting
        from nasplug.run.rundir import atomic_write

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "curve.md", self.table().encode())
        atomic_write(folder / "curve.json", json.dumps(self.to_dict()).encode())
        fig = plotting.query_curve_figure(
            self.curves,
            f"{self.label}; space {self.space}",
            best=self.best,
            seeds=len(self.seeds),
        )
        return [folder / "curve.md", folder / "curve.json", *plotting.save(fig, folder / "curve")]


def curve(
    space: Any = "nb201",
    strategies: Sequence[Any] = ("random", "tpe", "evolution"),
    *,
    seeds: int | Sequence[int] = 100,
    queries: int = 200,
    space_opts: Mapping[str, Any] | None = None,
    strategy_opts: Mapping[str, Mapping[str, Any]] | None = None,
) -> QueryCurves:
    """Run every strategy by the space's benchmark table under each seed and collect the curves.

    Args:
        space: a registered space name or an instance that offers a benchmark table.
        strategies: registered strategy names or instances of strategies that can search by a
            table (:class:`~nasplug.core.interfaces.SearchesTable`).
        seeds: how many seeds (0, 1, ...), or the seeds themselves.
        queries: table queries per search.
        space_opts: options of a space given by name.
        strategy_opts: per strategy name, its options (``{"tpe": {"multivariate": True}}``).

    Everything is checked before any search runs; bad input raises a one-line
    :class:`~nasplug.core.options.OptionError`.
    """
    from nasplug.core import registry
    from nasplug.core.interfaces import OffersBenchmark
    from nasplug.core.options import OptionError, instantiate

    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or queries < 1:
        raise OptionError(
            f"seeds={seeds!r}, queries={queries!r}; accepted: at least one seed and queries >= 1"
        )
    if not strategies:
        raise OptionError("no strategy given; accepted: black-box strategies such as random")
    if isinstance(space, str):
        space = instantiate(registry.load("space", space), space_opts or {}, f"space {space!r}")
    elif space_opts:
        raise OptionError("space_opts apply to a space given by name")
    space_name = registry.name_of(space)
    if not isinstance(space, OffersBenchmark):
        raise OptionError(
            f"space {space_name!r} offers no benchmark table; accepted: a space with one "
            f"(a space whose class has benchmark())"
        )
    table = space.benchmark()
    opts = dict(strategy_opts or {})
    built: dict[str, Any] = {}
    for given in strategies:
        name = given if isinstance(given, str) else registry.name_of(given)
        if name in built:
            raise OptionError(f"strategy {name!r} given twice")
        if isinstance(given, str):
            cls = registry.load("strategy", given)
            built[name] = instantiate(cls, opts.pop(name, {}), f"strategy {name!r}")
        else:
            built[name] = given
        if not callable(getattr(built[name], "search_table", None)):
            raise OptionError(
                f"strategy {name!r} cannot search by a benchmark table; accepted: "
                f"{', '.join(table_strategies()) or 'none installed'}"
            )
    if opts:
        raise OptionError(
            f"options given for strategy {sorted(opts)[0]!r}, which is not among {', '.join(built)}"
        )
    curves: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}
    for name, strategy in built.items():
        t0 = time.perf_counter()
        curves[name] = [
            _best_so_far(strategy.search_table(space, seed=s, queries=queries).history, queries)
            for s in seed_list
        ]
        seconds[name] = time.perf_counter() - t0
    return QueryCurves(
        space=space_name,
        label=table.label,
        metric=table.metric,
        best=table.best(),
        queries=queries,
        seeds=tuple(seed_list),
        curves=curves,
        seconds=seconds,
    )


def table_strategies() -> list[str]:
    """The registered strategies that can search by a benchmark table (imports each one)."""
    from nasplug.core import registry

    found = []
    for name in registry.names("strategy"):
        try:
            cls = registry.load("strategy", name)
        except registry.PluginError:
            continue
        if callable(getattr(cls, "search_table", None)):
            found.append(name)
    return found


def _best_so_far(rows: Sequence[Mapping[str, Any]], queries: int) -> list[float]:
    out: list[float] = []
    best = -math.inf
    for row in rows[:queries]:
        best = max(best, float(row["metric"]))
        out.append(best)
    return out + [best] * (queries - len(out))
