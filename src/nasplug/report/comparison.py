"""Comparing runs: ``nasplug compare`` and :func:`nasplug.compare`.

Search and training runs on one dataset, side by side in a Markdown table: the metric on the
architecture half (searches) and on the test split (trained networks), parameters, and search
and training seconds. With a resource (``params``, ``flops``, ``latency``) the table also marks
the runs on the Pareto front of accuracy against that cost, and :func:`pareto_of` gives the
front as data and as a picture.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasplug.core.options import OptionError
from nasplug.run.rundir import METRICS, TABLE_LABEL, TABLE_METRIC, TRAIN

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PARETO_COSTS", "Pareto", "ParetoPoint", "compare_table", "pareto_of"]

#: The costs a Pareto front can be drawn against: resource -> (the key under which runs
#: record it in metrics.json or train.json, how a column or axis names it).
PARETO_COSTS = {
    "params": ("params", "parameters"),
    "flops": ("flops", "FLOPs"),
    "latency": ("latency_ms", "latency (ms)"),
}


@dataclass(frozen=True)
class ParetoPoint:
    """One run (or, with ``mean``, one method) on a Pareto plot: its cost and accuracy.

    ``cost`` is None when the run records none (it is listed, not plotted); ``on_front`` says
    that no other point is at most as costly and at least as accurate, one of them strictly.
    """

    method: str
    run: str
    cost: float | None
    accuracy: float | None
    on_front: bool = False


@dataclass(frozen=True)
class Pareto:
    """Accuracy against a cost over a set of runs, with the front marked.

    ``accuracy`` names what the accuracy axis holds: the benchmark table's value where every
    run with the cost records one, else the test metric of trained runs and the validation
    metric of searches' derived networks. ``notes`` hold one line per run left off the plot.
    """

    resource: str
    cost: str
    accuracy: str
    higher_is_better: bool
    points: tuple[ParetoPoint, ...]
    notes: tuple[str, ...]

    @property
    def front(self) -> list[ParetoPoint]:
        """The points on the front, cheapest first."""
        on = [p for p in self.points if p.on_front]
        return sorted(on, key=lambda p: (p.cost, p.method))

    def lines(self) -> list[str]:
        """The front in one line, cheapest first, then the notes."""
        on = self.front
        if not on:
            head = f"Pareto front of {self.accuracy} against {self.cost}: no run records both."
        else:
            names = ", ".join(f"{p.method} ({p.run})" for p in on)
            head = f"Pareto front of {self.accuracy} against {self.cost}, cheapest first: {names}."
        return [head, *self.notes]

    def figure(self) -> Figure | None:
        """The plot (see :func:`nasplug.report.plotting.pareto_figure`); None with nothing to plot."""
        from nasplug.report import plotting

        plotted = []
        for p in self.points:
            if p.cost is not None and p.accuracy is not None:
                # A run by its folder's name; a method's mean over runs (--mean) by the method.
                name = p.method if ", " in p.run else Path(p.run).name or p.run
                plotted.append((name, p.cost, p.accuracy, p.on_front))
        return plotting.pareto_figure(
            plotted,
            cost=self.cost,
            accuracy=self.accuracy,
            higher_is_better=self.higher_is_better,
        )


def pareto_of(paths: Sequence[str | Path], resource: str, *, mean: bool = False) -> Pareto:
    """The Pareto front of accuracy against ``resource`` over the runs at ``paths``.

    Each run gives one point: its derived network (a search) or its trained network, at the
    cost it records (``params``, ``flops`` or ``latency_ms`` in metrics.json, ``params`` in
    train.json). With ``mean``, each method of :func:`compare_table` gives one point at the
    means of its runs.

    Raises:
        OptionError: an unknown resource (one line naming the accepted ones).
        ValueError: runs of different datasets or metrics, as for :func:`compare_table`.
    """
    _check_resource(resource)
    rows, _, (m, higher) = _collect(paths)
    if mean:
        rows = _mean_rows(rows)
    return _pareto(rows, resource, m, higher)


def compare_table(
    paths: Sequence[str | Path], mean: bool = False, pareto: str | None = None
) -> str:
    """A Markdown table with a row per method; all runs must share one dataset.

    With ``mean``, runs of the same method (the same strategy, relaxation and relaxation options
    that differ from the defaults; e.g. several seeds) share one row: the mean and the sample
    standard deviation of every metric, the mean of parameters and seconds.

    With ``pareto`` (a resource of :data:`PARETO_COSTS`), the table gets the resource's column
    (parameters have one already) and a ``front`` column marking each run's point on the Pareto
    front of accuracy against it (see :func:`pareto_of`), followed by a line naming the front
    and one per run that records no such cost.
    """
    if pareto is not None:
        _check_resource(pareto)
    rows, dataset, metric = _collect(paths)
    m, higher = metric
    if mean:
        rows = _mean_rows(rows)
    front = _pareto(rows, pareto, m, higher) if pareto is not None else None
    # A column for the benchmark table's value of each genotype, when some run has one.
    tables = {r["table_label"] for r in rows if _finite(r.get("table"))}
    table_col = ["table"] if tables else []
    intro = (
        f"Dataset: {_data_text(dataset)}. Metric: {m} ({'higher' if higher else 'lower'} is "
        f"better); val: the architecture half of the search data, test: the held-out test "
        f"split."
    )
    if tables:
        intro += f" table: the genotype's {'; '.join(sorted(tables))} (higher is better)."
    # With a Pareto front: the cost's own column (parameters have one) and the front's.
    key, label = PARETO_COSTS[pareto] if pareto is not None else ("", "")
    extra = ([label] if key != "params" else []) + ["front"] if front is not None else []
    lines = [
        intro,
        "",
        "| "
        + " | ".join(["method", f"val {m}", f"test {m}", *table_col])
        + " | parameters | "
        + "".join(f"{e} | " for e in extra)
        + "search s | training s | run |",
        "| --- | ---: | ---: |"
        + " ---: |" * len(table_col)
        + " ---: |"
        + " ---: |" * (len(extra) - 1 if extra else 0)
        + (" :---: |" if extra else "")
        + " ---: | ---: | --- |",
    ]
    best = {}
    for col in ("val", "test", *table_col):
        vals = [r[col] for r in rows if _finite(r.get(col))]
        if vals:
            best[col] = max(vals) if higher or col == "table" else min(vals)
    for r in rows:
        cells = [
            _metric_cell(r.get(col), best.get(col), r.get(f"{col}_sd"))
            for col in ("val", "test", *table_col)
        ]
        marks = []
        if front is not None:
            if key != "params":
                marks.append(_cost_cell(r.get(key), key))
            marks.append(_front_cell(r, front))
        lines.append(
            f"| {r['method']} | {' | '.join(cells)} | {_int_cell(r['params'])} | "
            + "".join(f"{c} | " for c in marks)
            + f"{_secs_cell(r['search_s'])} | {_secs_cell(r['train_s'])} | {r['run']} |"
        )
    if front is not None:
        lines += ["", *front.lines()]
    return "\n".join(lines) + "\n"


def _check_resource(resource: str) -> None:
    if resource not in PARETO_COSTS:
        raise OptionError(
            f"unknown Pareto resource {resource!r}; accepted: {', '.join(PARETO_COSTS)}"
        )


def _pareto(rows: Sequence[dict[str, Any]], resource: str, metric: str, higher: bool) -> Pareto:
    """The front over the rows that stand for a run's network (``point``)."""
    key, label = PARETO_COSTS[resource]
    rows = [r for r in rows if r.get("point")]
    costed = [r for r in rows if _finite(r.get(key))]
    # The table's value where every costed run has one: one scale for all of them.
    by_table = bool(costed) and all(_finite(r.get("table")) for r in costed)
    if by_table:
        labels = sorted({str(r.get("table_label")) for r in costed})
        accuracy, higher = f"table: {'; '.join(labels)}", True
    else:
        trained = {_finite(r.get("test")) for r in costed or rows}
        accuracy = (
            f"test {metric}"
            if trained == {True}
            else f"validation {metric} of the derived network"
            if trained == {False}
            else f"{metric}: test (trained runs), validation (searches)"
        )

    def acc(r: Mapping[str, Any]) -> float | None:
        v: Any
        if by_table:
            v = r.get("table")
        else:
            v = r.get("test") if _finite(r.get("test")) else r.get("val")
        return float(v) if _finite(v) else None

    def better(a: float, b: float) -> bool:
        return a > b if higher else a < b

    scored: list[tuple[dict[str, Any], float, float]] = []
    for r in costed:
        a = acc(r)
        if a is not None:
            scored.append((r, float(r[key]), a))
    points: list[ParetoPoint] = []
    notes: list[str] = []
    for r, c, a in scored:
        dominated = any(
            c2 <= c and (a2 == a or better(a2, a)) and (c2 < c or better(a2, a))
            for _, c2, a2 in scored
        )
        points.append(ParetoPoint(r["method"], r["run"], c, a, not dominated))
    plotted = {id(r) for r, _, _ in scored}
    for r in rows:
        if id(r) in plotted:
            continue
        points.append(ParetoPoint(r["method"], r["run"], None, acc(r)))
        why = f"records no {resource}" if not _finite(r.get(key)) else "records no accuracy"
        notes.append(f"{r['run']} ({r['method']}) {why}: listed, not plotted.")
    return Pareto(resource, label, accuracy, higher, tuple(points), tuple(notes))


def _front_cell(row: Mapping[str, Any], front: Pareto) -> str:
    """``yes`` for a row whose point is on the front, ``no`` for one off it, blank otherwise."""
    if not row.get("point"):
        return ""
    for p in front.points:
        if p.run == row["run"] and p.method == row["method"]:
            return "" if p.cost is None else "yes" if p.on_front else "no"
    return ""


def _collect(
    paths: Sequence[str | Path],
) -> tuple[list[dict[str, Any]], tuple[str | None, str], tuple[str, bool]]:
    """The rows of every run, their dataset and their metric (all runs must share both)."""
    from nasplug.run.rundir import RunDir, RunError

    rows: list[dict[str, Any]] = []
    dataset: tuple[str | None, str] | None = None  # (name, options); the name may be missing
    metric: tuple[str, bool] | None = None
    fingerprint: tuple[str | Path, str] | None = None  # the first run that has one
    for path in paths:
        run = RunDir.open(path, writer=False)
        cfg = run.config()
        this = (cfg.get("data"), _opts_text(cfg.get("opts", {}).get("data", {})))
        if dataset is None:
            dataset, first = this, path
        elif this != dataset:
            raise ValueError(
                f"runs are on different datasets: {first} on {_data_text(dataset)}, "
                f"{path} on {_data_text(this)}; compare runs of one dataset"
            )
        # Data of one name can still differ (in-memory data named by the user; runs from
        # before fingerprints are taken as they are).
        hashed = (cfg.get("data_fingerprint") or {}).get("hash")
        if hashed and fingerprint is None:
            fingerprint = (path, hashed)
        elif hashed and fingerprint is not None and hashed != fingerprint[1]:
            raise ValueError(
                f"runs are on different data named {_data_text(this)}: {fingerprint[0]} has "
                f"fingerprint {fingerprint[1]}, {path} {hashed}; compare runs of one dataset"
            )
        name = TRAIN if cfg.get("command") == "train" else METRICS
        res = run.read_json(name)
        if res is None:
            raise RunError(f"{path} has no {name}: the run has not finished")
        this_metric = (res["metric"], bool(res["higher_is_better"]))
        if metric is not None and this_metric != metric:
            raise ValueError(f"runs report different metrics: {metric[0]} and {this_metric[0]}")
        metric = this_metric
        rows.extend(_rows(str(path), cfg, res))
    assert dataset is not None and metric is not None
    return rows, dataset, metric


def _rows(path: str, cfg: Mapping[str, Any], res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of one run, each method named with the augmentation it ran with when that is
    not the default (so ``--mean`` never averages runs with and without it)."""
    rows = _method_rows(path, cfg, res)
    label = _augment_label(cfg)
    return [{**r, "method": f"{r['method']} [{label}]"} for r in rows] if label else rows


def _augment_label(cfg: Mapping[str, Any]) -> str:
    """How a run's images were augmented, if not the default; a run from before augmentation
    existed (no ``augment`` in its config) had none."""
    augment = cfg.get("augment", "off")
    parts = [] if augment == "standard" else [f"augment {augment}"]
    cutout = cfg.get("cutout") if cfg.get("command") == "train" else None
    if cutout is not None and not (augment == "off" and cutout == 0):  # off means no cutout
        parts.append(f"cutout {cutout}")
    return ", ".join(parts)


def _method_rows(path: str, cfg: Mapping[str, Any], res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A supernet search gives a row for its continuous supernet and rows for its derived
    genotype one-hot in it, with the supernet's BatchNorm statistics and with re-estimated ones."""
    m = res["metric"]
    if cfg.get("command") == "train":
        search = cfg.get("search") or {}
        if cfg.get("baseline"):
            method = f"{cfg['baseline']} baseline"
        elif search.get("supernet"):
            relax = _relax_label(search.get("relax"), _search_relax_opts(search.get("run")))
            method = f"{search['strategy']} ({relax}): derived network, trained"
        elif search.get("strategy"):
            method = f"{search['strategy']} search: best candidate, trained"
        else:
            method = (
                f"{cfg.get('space')} genotype from {Path(str(cfg.get('source'))).name}, trained"
            )
        return [
            {
                "method": method,
                "val": None,
                "test": res.get(f"test_{m}"),
                "params": res.get("params"),
                "search_s": res.get("search_seconds"),
                "train_s": res.get("seconds"),
                "run": path,
                "point": True,
                **_cost_cells(res),
                **_table_cells(res),
            }
        ]
    strategy = cfg.get("strategy")
    relax = _relax_label(cfg.get("relax"), cfg.get("opts", {}).get("relax", {}))
    search_s = res.get("search_seconds", res.get("wall_seconds"))

    table = _table_cells(res)

    def search_row(method: str, val: Any, params: Any, genotype: bool = True) -> dict[str, Any]:
        return {
            "method": method,
            "val": val,
            "test": None,
            "params": params,
            "run": path,
            "train_s": None,
            "search_s": search_s,
            # The run's point on a Pareto plot: its derived genotype (the last such row).
            "point": genotype,
            # The table and the costs are the run's genotype's, not a continuous supernet's.
            **(_cost_cells(res) if genotype else {}),
            **(table if genotype else {}),
        }

    cont = res.get(f"val_{m}_continuous")
    if cont is not None:
        rows = [
            search_row(
                f"{strategy} ({relax}): continuous supernet",
                cont,
                res.get("supernet_params"),
                genotype=False,
            ),
            search_row(
                f"{strategy} ({relax}): derived, one-hot in the supernet",
                res.get(f"val_{m}_discrete"),
                res.get("params"),
            ),
        ]
        if f"val_{m}_discrete_recalibrated" in res:
            rows[-1]["point"] = False  # the re-estimated statistics score it better
            rows.append(
                search_row(
                    f"{strategy} ({relax}): derived, one-hot, BatchNorm re-estimated",
                    res[f"val_{m}_discrete_recalibrated"],
                    res.get("params"),
                )
            )
        return rows
    n = res.get("candidates", res.get("trials"))
    what = f"best of {int(n)}" if _finite(n) else "best"
    return [search_row(f"{strategy} search ({what})", res.get(f"val_{m}"), res.get("params"))]


def _cost_cells(res: Mapping[str, Any]) -> dict[str, Any]:
    """The costs a run records of its network besides its parameters (see :data:`PARETO_COSTS`)."""
    return {key: res.get(key) for key, _ in PARETO_COSTS.values() if key != "params"}


def _table_cells(res: Mapping[str, Any]) -> dict[str, Any]:
    """The benchmark table's value of a run's genotype and the table's label, if it has one."""
    key = res.get(TABLE_METRIC)
    if not isinstance(key, str):
        return {}
    return {"table": res.get(key), "table_label": res.get(TABLE_LABEL) or key}


def _relax_label(relax: Any, opts: Mapping[str, Any]) -> str:
    """The relaxation's name with the options that differ from its current defaults."""
    from nasplug.core import registry
    from nasplug.core.options import OptionError, accepted, typed
    from nasplug.core.registry import PluginError

    try:
        cls = registry.load("relaxation", str(relax))
        defaults = accepted(cls)
        changed = {
            k: opts[k]
            for k, v in typed(cls, opts, f"relaxation {relax!r}").items()
            if v != defaults[k]
        }
    except (PluginError, OptionError):  # gone or changed since: name every option
        changed = dict(opts)
    return f"{relax} {_opts_text(changed)}" if changed else str(relax)


def _search_relax_opts(path: Any) -> Mapping[str, Any]:
    """The relaxation options of the search run a training run came from, if it is still there."""
    from nasplug.run.rundir import RunDir, RunError

    try:
        return RunDir.open(str(path), writer=False).config().get("opts", {}).get("relax", {})
    except (RunError, OSError, TypeError):
        return {}


def _mean_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: mean and sample sd of the metrics, mean of the rest."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    out = []
    for method, rs in groups.items():
        row: dict[str, Any] = {
            "method": f"{method} (n={len(rs)})" if len(rs) > 1 else method,
            "run": ", ".join(r["run"] for r in rs),
        }
        labels = [r["table_label"] for r in rs if r.get("table_label")]
        row["table_label"] = labels[0] if labels else None
        row["point"] = rs[0].get("point", False)
        costs = [key for key, _ in PARETO_COSTS.values() if key != "params"]
        for col in ("val", "test", "table", "params", *costs, "search_s", "train_s"):
            vals = [r[col] for r in rs if _finite(r.get(col))]
            row[col] = statistics.fmean(vals) if vals else None
            if col in ("val", "test", "table") and len(vals) > 1:
                row[f"{col}_sd"] = statistics.stdev(vals)
        out.append(row)
    return out


def _opts_text(opts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={opts[k]}" for k in sorted(opts))


def _data_text(dataset: tuple[str | None, str]) -> str:
    name, opts = dataset
    return f"{name} ({opts})" if opts else str(name)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _metric_cell(v: Any, best: float | None, sd: float | None = None) -> str:
    if not _finite(v):
        return ""
    text = f"{v:.4f}"
    text = f"**{text}**" if best is not None and v == best else text
    return f"{text} ± {sd:.4f}" if sd is not None else text


def _cost_cell(v: Any, key: str) -> str:
    if not _finite(v):
        return ""
    return f"{v:.3f}" if key == "latency_ms" else f"{int(v):,}"


def _int_cell(v: Any) -> str:
    return f"{int(v):,}" if _finite(v) else ""


def _secs_cell(v: Any) -> str:
    return f"{v:.1f}" if _finite(v) else ""
