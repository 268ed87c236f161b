"""Comparing runs: ``nasplug compare`` and :func:`nasplug.compare`.

Search and training runs on one dataset, side by side in a Markdown table: the metric on the
architecture half (searches) and on the test split (trained networks), parameters, and search
and training seconds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nasplug.rundir import TABLE_LABEL, TABLE_METRIC
from nasplug.training import TRAIN_JSON

__all__ = ["compare_table"]


def compare_table(paths: Sequence[str | Path], mean: bool = False) -> str:
    """A Markdown table with a row per method; all runs must share one dataset.

    With ``mean``, runs of the same method (the same strategy, relaxation and relaxation options
    that differ from the defaults; e.g. several seeds) share one row: the mean and the sample
    standard deviation of every metric, the mean of parameters and seconds.
    """
    from nasplug.rundir import RunDir, RunError

    rows: list[dict[str, Any]] = []
    dataset: tuple[str | None, str] | None = None  # (name, options); the name may be missing
    metric: tuple[str, bool] | None = None
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
        name = TRAIN_JSON if cfg.get("command") == "train" else "metrics.json"
        res = run.read_json(name)
        if res is None:
            raise RunError(f"{path} has no {name}: the run has not finished")
        this_metric = (res["metric"], bool(res["higher_is_better"]))
        if metric is not None and this_metric != metric:
            raise ValueError(f"runs report different metrics: {metric[0]} and {this_metric[0]}")
        metric = this_metric
        rows.extend(_rows(str(path), cfg, res))
    assert dataset is not None and metric is not None
    m, higher = metric
    if mean:
        rows = _mean_rows(rows)
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
    lines = [
        intro,
        "",
        "| "
        + " | ".join(["method", f"val {m}", f"test {m}", *table_col])
        + " | parameters | search s | training s | run |",
        "| --- | ---: | ---: |" + " ---: |" * len(table_col) + " ---: | ---: | ---: | --- |",
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
        lines.append(
            f"| {r['method']} | {' | '.join(cells)} | {_int_cell(r['params'])} | "
            f"{_secs_cell(r['search_s'])} | {_secs_cell(r['train_s'])} | {r['run']} |"
        )
    return "\n".join(lines) + "\n"


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
            }
        ]
    strategy = cfg.get("strategy")
    relax = _relax_label(cfg.get("relax"), cfg.get("opts", {}).get("relax", {}))
    search_s = res.get("search_seconds", res.get("wall_seconds"))

    table_key = res.get(TABLE_METRIC)
    table = res.get(table_key) if isinstance(table_key, str) else None

    def search_row(method: str, val: Any, params: Any, genotype: bool = True) -> dict[str, Any]:
        return {
            "method": method,
            "val": val,
            "test": None,
            "params": params,
            "run": path,
            "train_s": None,
            "search_s": search_s,
            # The table scores the run's genotype, not a continuous supernet.
            "table": table if genotype else None,
            "table_label": res.get(TABLE_LABEL) or table_key,
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


def _relax_label(relax: Any, opts: Mapping[str, Any]) -> str:
    """The relaxation's name with the options that differ from its current defaults."""
    from nasplug import registry
    from nasplug.options import OptionError, accepted, typed
    from nasplug.registry import PluginError

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
    from nasplug.rundir import RunDir, RunError

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
        for col in ("val", "test", "table", "params", "search_s", "train_s"):
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


def _int_cell(v: Any) -> str:
    return f"{int(v):,}" if _finite(v) else ""


def _secs_cell(v: Any) -> str:
    return f"{v:.1f}" if _finite(v) else ""
