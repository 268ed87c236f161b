"""Reading a run back: the text of ``nasplug show``, report.md with pictures, TensorBoard scalars.

``write_report(run_dir)`` draws what a run directory holds, finished or not: the derived
architecture (PNG and SVG), the mixing weights of every choice over the epochs, support size,
entropy and step time, loss and metric curves of the search and of any training, and puts them
together with the config, the final metrics, the discretisation gap and the genotype in
``report.md``. ``nasplug report RUN_DIR`` writes it again. ``write_set_report(run_dirs, out)``
(``nasplug report RUN_DIR... --out DIR``) reports on several runs of one dataset: the compare
table and accuracy against each cost the runs record, with the Pareto front marked.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasplug.core.errors import one_line
from nasplug.engine.stats import spearman
from nasplug.run.rundir import (
    CANDIDATES,
    REPORT,
    TABLE_LABEL,
    TABLE_METRIC,
    TENSORBOARD,
    RunDir,
    RunError,
    atomic_write,
)

__all__ = [
    "RunRecord",
    "TensorBoardSink",
    "candidates_text",
    "read_run",
    "summary_text",
    "tensorboard_sink",
    "write_report",
    "write_set_report",
]

FIGURES = "figures"
_CONFIG_KEYS = (
    "space",
    "relax",
    "strategy",
    "data",
    "epochs",
    "batch_size",
    "seed",
    "device",
    "augment",
)
_TRAIN_CONFIG_KEYS = (
    "space",
    "baseline",
    "data",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "device",
    "augment",
    "cutout",
)
#: Scalars of a candidate row that are bookkeeping, not properties worth correlating.
_NOT_PROPERTIES = {"candidate", "trial", "number", "index", "id", "round_added", "round_removed"}


# ---- reading a run ---------------------------------------------------------------------------
@dataclass
class RunRecord:
    """Everything a report shows, read from a run directory (missing parts are empty)."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    genotype: dict[str, Any] | None
    search: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    discretisation: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def is_training(self) -> bool:
        """A run of ``nasplug train`` (a discrete network trained from scratch), not a search."""
        return self.config.get("command") == "train"

    @property
    def resume_command(self) -> str:
        return f"nasplug {'train' if self.is_training else 'run'} --resume {self.path}"

    @property
    def title(self) -> str:
        cfg = self.config
        if self.is_training:
            baseline = cfg.get("baseline")
            what = f"{baseline} baseline" if baseline else f"{cfg.get('space')} genotype"
            return f"nasplug training run: {what} on {cfg.get('data')}"
        parts = (cfg.get(k, "?") for k in ("space", "relax", "strategy", "data"))
        return "nasplug run: " + " · ".join(map(str, parts))

    @property
    def metric(self) -> str:
        """The task's headline metric (from metrics.json, else guessed from the logged splits)."""
        if self.metrics and isinstance(self.metrics.get("metric"), str):
            return self.metrics["metric"]
        if self.discretisation and isinstance(self.discretisation.get("metric"), str):
            return self.discretisation["metric"]
        for rec in self.search + self.training:
            for split in ("val", "test", "train"):
                keys = [k for k in (rec.get(split) or {}) if k != "loss"]
                if keys:
                    return keys[0]
        return "loss"

    @property
    def last_genotype(self) -> dict[str, Any] | None:
        """The final genotype, or the one derived after the last logged epoch of an unfinished run."""
        if self.genotype is not None:
            return self.genotype
        for rec in reversed(self.search):
            if isinstance(rec.get("genotype"), Mapping):
                return dict(rec["genotype"])
        return None

    @property
    def final_edges(self) -> list[dict[str, Any]]:
        if self.discretisation and self.discretisation.get("edges"):
            return list(self.discretisation["edges"])
        return list(self.search[-1].get("edges") or []) if self.search else []

    @property
    def final_groups(self) -> list[dict[str, Any]]:
        """Per group of choices (a cell node): member mass, active members, vertex distance."""
        if self.discretisation and self.discretisation.get("groups"):
            return list(self.discretisation["groups"])
        return list(self.search[-1].get("groups") or []) if self.search else []


def read_run(run_dir: RunDir | str | Path) -> RunRecord:
    """Read a run directory; a missing or non-run directory is a :class:`RunError`."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir, writer=False)
    config = run.config()
    disc = list(run.events("discretisation"))
    candidates = run.candidates() or []
    if not isinstance(candidates, list):
        raise RunError(f"{run.path / CANDIDATES} is damaged; it should hold a JSON list")
    metrics, genotype = run.metrics(), run.genotype()
    if config.get("command") == "train":  # written by `nasplug train`
        metrics = _flat(run.train_result())
        genotype = config.get("genotype") if isinstance(config.get("genotype"), Mapping) else None
    return RunRecord(
        path=run.path,
        config=config,
        metrics=metrics,
        genotype=genotype,
        search=_named_search_epochs(run),
        training=list(run.events("train_epoch")),
        discretisation=disc[-1] if disc else None,
        candidates=[c for c in candidates if isinstance(c, dict)],
    )


def _named_search_epochs(run: RunDir) -> list[dict[str, Any]]:
    """The ``search_epoch`` events, their rows given candidate names where the log has them.

    A strategy that changes the candidates of choices logs the new ones in an event with a
    ``candidates`` mapping (``{choice: [names]}``, e.g. P-DARTS's ``stage``); the rows of later
    epochs whose weights have that length are named by it.
    """
    names: dict[str, list[str]] = {}
    out = []
    for ev in run.events():
        cands = ev.get("candidates")
        if ev.get("event") != "search_epoch":
            if isinstance(cands, Mapping):
                names.update(
                    {k: [str(n) for n in v] for k, v in cands.items() if isinstance(v, list)}
                )
            continue
        for row in ev.get("edges") or []:
            known = names.get(row.get("choice"))
            if "candidates" not in row and known and len(known) == len(row.get("weights") or []):
                row["candidates"] = known
        out.append(ev)
    return out


def _flat(result: Any) -> dict[str, Any] | None:
    """A training result's scalars, with nested split metrics as ``<split>_<metric>``."""
    if not isinstance(result, Mapping):
        return None
    out: dict[str, Any] = {}
    for k, v in result.items():
        if isinstance(v, Mapping):
            if k != "genotype":
                out.update(
                    {f"{k}_{kk}": vv for kk, vv in v.items() if not isinstance(vv, (Mapping, list))}
                )
        elif not isinstance(v, list):
            out[k] = v
    return out


# ---- text ------------------------------------------------------------------------------------
def table_text(metrics: Mapping[str, Any] | None) -> str | None:
    """The benchmark table's value of a run's genotype, with the table's label; None without."""
    if not metrics or not isinstance(metrics.get(TABLE_METRIC), str):
        return None
    value = metrics.get(metrics[TABLE_METRIC])
    if not isinstance(value, (int, float)):
        return None
    return f"{metrics.get(TABLE_LABEL) or metrics[TABLE_METRIC]}: {value:.2f}"


def _listed(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics to list one per line: all but the table's naming (shown in its own line)."""
    return {k: v for k, v in metrics.items() if k not in (TABLE_METRIC, TABLE_LABEL)}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return "-" if v is None else str(v)


def summary_text(run: RunDir | str | Path) -> str:
    """Config, final metrics, genotype, per-choice diagnostics, discretisation gap and candidates."""
    rec = read_run(run)
    cfg = rec.config
    lines = [f"run: {rec.path}"]
    keys = _TRAIN_CONFIG_KEYS if rec.is_training else _CONFIG_KEYS
    lines.append(
        "config: " + ", ".join(f"{k}={cfg.get(k)}" for k in keys if k in cfg or not rec.is_training)
    )
    for axis, opts in (cfg.get("opts") or {}).items():
        if opts:
            lines.append(f"  {axis} options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))
    if rec.metrics is None:
        logged = len(rec.training) if rec.is_training else len(rec.search)
        what = "training" if rec.is_training else "search"
        state = f"unfinished: {logged} {what} epochs logged" if logged else "unfinished"
        lines.append(f"status: {state}; resume with `{rec.resume_command}`")
    else:
        lines.append("metrics:")
        lines += [f"  {k}: {_fmt(v)}" for k, v in _listed(rec.metrics).items()]
        table = table_text(rec.metrics)
        if table:
            lines.append(f"benchmark table, the genotype's {table}")
    genotype = rec.last_genotype
    if genotype is not None:
        label = (
            "genotype"
            if rec.genotype is not None
            else "genotype (derived after the last logged epoch)"
        )
        lines.append(f"{label}: {_genotype_text(cfg, genotype)}")
    gap = gap_text(rec)
    if gap:
        lines.append(gap)
    edges = rec.final_edges
    if edges:
        lines.append("final mixing weights per choice:")
        lines += [
            "  " + line
            for line in _table(
                ["choice", "support", "entropy", "dominant"],
                [
                    [
                        r.get("choice"),
                        r.get("support"),
                        _num(r.get("entropy"), 3),
                        r.get("dominant"),
                    ]
                    for r in edges
                ],
            )
        ]
    groups = rec.final_groups
    if groups:
        lines.append("final mass per group (node) of choices:")
        lines += [
            "  " + line
            for line in _table(
                ["group", "k", "active", "distance to a vertex", "mass per member"],
                [
                    [
                        r.get("group"),
                        r.get("k"),
                        r.get("active"),
                        _num(r.get("distance"), 3),
                        " ".join(_num(m, 2) for m in r.get("mass", [])),
                    ]
                    for r in groups
                ],
            )
        ]
    if rec.candidates:
        lines.append(candidates_text(rec.candidates, rec.metric))
    return "\n".join(lines)


def _gap_values(rec: RunRecord) -> tuple[str, Any, Any, Any, Any]:
    """The discretisation record's metric, continuous, one-hot, re-estimated scores and gap."""
    d = rec.discretisation or {}
    m = d.get("metric", rec.metric)
    return (
        m,
        *((d.get(k) or {}).get(m) for k in ("continuous", "discrete", "recalibrated")),
        d.get("gap"),
    )


def gap_text(rec: RunRecord) -> str:
    """One line on the discretisation gap, or "" when the run has not measured it."""
    if not rec.discretisation:
        return ""
    m, cont, disc, recal, gap = _gap_values(rec)
    return (
        f"discretisation gap ({m} on the architecture half): continuous {_fmt(cont)} vs "
        f"discrete {_fmt(disc)} = {_fmt(gap)}"
        + (
            f"; discrete with BatchNorm re-estimated on its path {_fmt(recal)}"
            if recal is not None
            else ""
        )
    )


def _num(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else _fmt(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def _cell(v: Any) -> str:
    text = _num(v) if isinstance(v, float) else _fmt(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _genotype_text(cfg: Mapping[str, Any], genotype: Mapping[str, Any]) -> str:
    from nasplug.core.types import Genotype

    g = Genotype.from_dict(genotype)
    try:
        return _space(cfg).describe(g)
    except Exception:  # noqa: BLE001 - the space's plugin code may be gone or changed: the JSON says everything
        return g.to_json()


def _space(cfg: Mapping[str, Any]) -> Any:
    from nasplug.core import registry
    from nasplug.core.options import instantiate

    return instantiate(
        registry.load("space", cfg["space"]),
        (cfg.get("opts") or {}).get("space", {}),
        f"space {cfg['space']!r}",
    )


def _metric_column(rows: Sequence[Mapping[str, Any]], metric: str) -> str | None:
    keys = [k for k in rows[0]]
    for k in ("metric", f"val_{metric}", metric, "value", "objective"):
        if k in keys and _numeric_column(rows, k):
            return k
    return next((k for k in keys if metric in k and _numeric_column(rows, k)), None)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numeric_column(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    values = [r.get(key) for r in rows]
    return any(_is_number(v) for v in values) and all(v is None or _is_number(v) for v in values)


def candidate_correlations(
    rows: Sequence[Mapping[str, Any]], metric: str
) -> tuple[str | None, dict[str, float | None]]:
    """The metric column of candidate rows and the Spearman correlation of every numeric column with it."""
    if not rows:
        return None, {}
    target = _metric_column(rows, metric)
    if target is None:
        return None, {}
    cols = [
        k for k in rows[0] if k != target and k not in _NOT_PROPERTIES and _numeric_column(rows, k)
    ]
    ys = [r.get(target) for r in rows]
    return target, {k: spearman([r.get(k) for r in rows], ys) for k in cols}


def candidates_text(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> str:
    """A table of candidate records and the rank correlation of each numeric column with the metric."""
    if not rows:
        return "candidates: none"
    cols = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
    out = [f"candidates ({len(rows)}):"]
    out += ["  " + line for line in _table(cols, [[r.get(c) for c in cols] for r in rows])]
    target, corr = candidate_correlations(rows, metric)
    if target is not None and corr:
        out.append(f"rank correlation (Spearman) with {target}:")
        out += [f"  {k}: {'n/a' if v is None else f'{v:+.3f}'}" for k, v in corr.items()]
    return "\n".join(out)


# ---- report.md and pictures ------------------------------------------------------------------
def write_report(run_dir: str | Path, *, figures: bool = True) -> list[Path]:
    """Write report.md and the pictures of a run (finished or not); return the files written.

    Without ``figures``, report.md only, saying how to draw them later (``nasplug report``).
    """
    run = RunDir.open(run_dir)
    rec = read_run(run)
    written: list[Path] = []
    if figures:
        sections = _pictures(rec, rec.path / FIGURES, written)
    else:
        sections = {section: [] for section in _SECTIONS}
    text = _markdown(rec, sections, drawn=figures)
    atomic_write(rec.path / REPORT, text.encode())
    return [rec.path / REPORT, *written]


def write_set_report(run_dirs: Sequence[str | Path], out: str | Path) -> list[Path]:
    """Write ``out/report.md`` on several runs of one dataset; return the files written.

    The report holds :func:`nasplug.report.comparison.compare_table` of the runs and, for each cost of
    :data:`~nasplug.report.comparison.PARETO_COSTS` that some run records, the plot of accuracy against
    it with the Pareto front marked (``out/figures/pareto-<resource>.png``), the front and the
    runs left off the plot. Runs of different datasets or metrics are a ValueError, before
    anything is written.
    """
    from nasplug.core.options import OptionError
    from nasplug.report import plotting
    from nasplug.report.comparison import PARETO_COSTS, compare_table, pareto_of

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"--out {folder} is an existing file; accepted: a folder")
    table = compare_table(run_dirs)
    fronts = [pareto_of(run_dirs, resource) for resource in PARETO_COSTS]
    md = [f"# Report of {len(run_dirs)} runs", "", table]
    written: list[Path] = []
    for front in fronts:
        fig = front.figure()
        if fig is None:
            continue
        png = plotting.save(fig, folder / FIGURES / f"pareto-{front.resource}")[0]
        written.append(png)
        md += [
            f"## {front.accuracy[:1].upper()}{front.accuracy[1:]} against {front.cost}",
            "",
            f"![{front.accuracy} against {front.cost}]({png.relative_to(folder).as_posix()})",
            "",
            *(f"{line}\n" for line in front.lines()),
        ]
    atomic_write(folder / REPORT, "\n".join(md).encode())
    return [folder / REPORT, *written]


#: The report's sections that hold pictures, and ``failed``: pictures that could not be drawn.
_SECTIONS = ("genotype", "search", "weights", "training", "candidates", "failed")


def _pictures(
    rec: RunRecord, folder: Path, written: list[Path]
) -> dict[str, list[tuple[str, Path]]]:
    """Draw every picture the run's data allows; returns (caption, png) lists by report section.

    A picture that cannot be drawn is left out with a warning, under section ``failed``, so that
    one bad record does not cost the rest of the report.
    """
    from nasplug.report import plotting

    out: dict[str, list[tuple[str, Path]]] = {section: [] for section in _SECTIONS}

    def keep(
        section: str,
        caption: str,
        draw: Callable[[], Any],
        name: str,
        formats: Sequence[str] = ("png",),
    ) -> None:
        try:
            fig = draw()
            if fig is None:
                return
            paths = plotting.save(fig, folder / name, formats)
        except Exception as e:  # noqa: BLE001 - a report is a view of saved results (plugins' records included): show what can be shown
            print(
                f"nasplug: warning: {caption} not drawn: {one_line(e, with_type=True)}",
                file=sys.stderr,
            )
            out["failed"].append((f"{caption}: {one_line(e, with_type=True)}", folder / name))
            return
        written.extend(paths)
        out[section].append((caption, paths[0]))

    genotype = rec.last_genotype
    if genotype is not None:
        if rec.genotype is None:
            title = f"architecture derived after epoch {rec.search[-1].get('epoch', '?')} (run unfinished)"
        else:
            title = "trained architecture" if rec.is_training else "derived architecture"
        keep(
            "genotype",
            title,
            lambda: plotting.genotype_figure(genotype, title),
            "genotype",
            ("png", "svg"),
        )
    metric = rec.metric
    if rec.search:
        keep(
            "search",
            "loss and metric of the search",
            lambda: plotting.curves_figure(
                rec.search, metric, "search: supernet loss and metric per epoch", sequential=True
            ),
            "search-curves",
        )
        keep(
            "search",
            "support size, entropy and step time",
            lambda: plotting.sparsity_figure(rec.search),
            "sparsity",
        )
        keep(
            "search",
            "per node: edge mass, active edges and distance to the nearest vertex",
            lambda: plotting.groups_figure(rec.search),
            "nodes",
        )
        try:
            groups = plotting.weights_figures(rec.search, _candidates_by_choice(rec))
        except Exception as e:  # noqa: BLE001 - as in keep()
            print(
                f"nasplug: warning: mixing weights not drawn: {one_line(e, with_type=True)}",
                file=sys.stderr,
            )
            out["failed"].append((f"mixing weights: {one_line(e, with_type=True)}", folder))
            groups = []
        for group, fig in groups:
            keep(
                "weights",
                f"mixing weights of the {group} choices",
                _drawn(fig),
                f"weights-{plotting.slug(group)}",
            )
    if rec.training:
        keep(
            "training",
            "training of discrete networks",
            lambda: plotting.curves_figure(
                rec.training, metric, "training: loss and metric per epoch"
            ),
            "training-curves",
        )
    target, corr = candidate_correlations(rec.candidates, metric)
    if target is not None:
        higher = bool((rec.metrics or {}).get("higher_is_better", True))
        label = f"validation {metric}" if target == "metric" else target
        done = rec.metrics or {}
        if target == "metric" and f"val_{metric}" not in done and TABLE_METRIC in done:
            label = str(done[TABLE_METRIC])  # a search by table: its candidates hold its values
        keep(
            "candidates",
            "candidates",
            lambda: plotting.candidates_figure(rec.candidates, target, corr, higher, label),
            "candidates",
        )
    return out


def _drawn(fig: Any) -> Callable[[], Any]:
    """A draw function for a figure drawn already; it holds this figure, not the loop's last."""
    return lambda: fig


def _candidates_by_choice(rec: RunRecord) -> dict[str, list[str]]:
    """Candidate names by choice, from the space of the run's config (none if it cannot be built)."""
    try:
        return {c.name: list(c.candidates) for c in _space(rec.config).choices()}
    except Exception:  # noqa: BLE001 - a report must not depend on the space's plugin code working
        return {}


def _markdown(
    rec: RunRecord, pictures: Mapping[str, list[tuple[str, Path]]], *, drawn: bool = True
) -> str:
    cfg = rec.config
    md = [f"# {rec.title}", ""]
    if rec.finished:
        counts = [
            f"{len(rec.search)} search epochs" if rec.search else "",
            f"{len(rec.training)} training epochs" if rec.training else "",
        ]
        md.append("Finished: " + (", ".join(c for c in counts if c) or "no epochs logged") + ".")
    else:
        logged = len(rec.training) if rec.is_training else len(rec.search)
        what = "training" if rec.is_training else "search"
        md.append(
            f"**Unfinished**: {logged} {what} epochs logged so far; resume with "
            f"`{rec.resume_command}`."
        )
    md.append("")
    if rec.metrics:
        md += ["## Final metrics", "", "| metric | value |", "| --- | --- |"]
        md += [f"| {k} | {_fmt(v)} |" for k, v in _listed(rec.metrics).items()]
        md.append("")
        table = table_text(rec.metrics)
        if table:
            md += [f"Benchmark table, the genotype's {table}.", ""]
    gap = gap_text(rec)
    if gap:
        md += ["## Discretisation gap", "", _gap_sentence(rec), ""]
    genotype = rec.last_genotype
    if genotype is not None:
        md += ["## Genotype", ""]
        md += _images(pictures["genotype"], rec.path)
        md += [
            "```text",
            _genotype_text(cfg, genotype),
            "```",
            "",
            "<details><summary>JSON</summary>",
            "",
            "```json",
            _compact_json(genotype),
            "```",
            "",
            "</details>",
            "",
        ]
    if rec.search:
        md += ["## Search", ""]
        md += _images(pictures["search"], rec.path)
        md += _epoch_table(rec)
    if pictures["weights"]:
        md += [
            "## Mixing weights",
            "",
            "Each panel is one choice: rows are candidates, columns epochs. White cells are exact "
            "zeros, which the supernet did not compute.",
            "",
        ]
        md += _images(pictures["weights"], rec.path)
    edges = rec.final_edges
    if edges:
        md += [
            "### Final mixing weights per choice",
            "",
            "| choice | support | entropy | dominant |",
            "| --- | --- | --- | --- |",
        ]
        md += [
            f"| {r.get('choice')} | {r.get('support')} | {_num(r.get('entropy'), 3)} | "
            f"{r.get('dominant')} |"
            for r in edges
        ]
        md.append("")
    if rec.training:
        md += ["## Training", ""]
        md += _images(pictures["training"], rec.path)
    if rec.candidates:
        md += ["## Candidates", ""]
        md += _images(pictures["candidates"], rec.path)
        md += ["```text", candidates_text(rec.candidates, rec.metric), "```", ""]
    if not drawn:
        md += ["Pictures were not drawn (`figures` off); `nasplug report RUN_DIR` draws them.", ""]
    if pictures.get("failed"):
        md += ["## Pictures not drawn", ""] + [f"- {what}" for what, _ in pictures["failed"]] + [""]
    md += ["## Configuration", "", "```json", _compact_json(cfg), "```", ""]
    return "\n".join(md)


def _compact_json(value: Any, indent: int = 0) -> str:
    """JSON with one line per short list (a genotype's ``[op, input]`` pairs stay on one line)."""
    pad = "  " * (indent + 1)
    if isinstance(value, Mapping) and value:
        items = [
            f"{pad}{json.dumps(str(k))}: {_compact_json(v, indent + 1)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and value and any(isinstance(v, (list, Mapping)) for v in value):
        flat = json.dumps(value)
        if len(flat) <= 80 - 2 * indent:
            return flat
        items = [f"{pad}{_compact_json(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)


def _gap_sentence(rec: RunRecord) -> str:
    m, cont, disc, recal, gap = _gap_values(rec)
    return (
        f"On the architecture half, the supernet scores {m} {_fmt(cont)} with its continuous "
        f"weights and {_fmt(disc)} with the one-hot weights of the derived genotype "
        f"(no retraining): a gap of **{_fmt(gap)}**."
        + (
            f" With BatchNorm statistics re-estimated on the derived path (no weight changed), "
            f"the one-hot weights score {_fmt(recal)}."
            if recal is not None
            else ""
        )
    )


def _images(items: Sequence[tuple[str, Path]], root: Path) -> list[str]:
    out = []
    for caption, path in items:
        out += [f"![{caption}]({path.relative_to(root).as_posix()})", ""]
    return out


def _epoch_table(rec: RunRecord) -> list[str]:
    m = rec.metric
    md = [
        "| phase | epoch | train loss | val loss | val " + m + " | mean support | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rec.search:
        md.append(
            f"| {r.get('phase', '')} | {r.get('epoch')} | {_num((r.get('train') or {}).get('loss'))} | "
            f"{_num((r.get('val') or {}).get('loss'))} | {_num((r.get('val') or {}).get(m))} | "
            f"{_num((r.get('summary') or {}).get('mean_support'), 2)} | {_num(r.get('seconds'), 1)} |"
        )
    return md + [""]


# ---- TensorBoard -----------------------------------------------------------------------------
class TensorBoardSink:
    """Forwards trainer events to TensorBoard scalars under ``log_dir``.

    ``search_epoch`` gives ``<phase>/<split>/<metric>``, ``<phase>/support/mean``, ``.../entropy``
    and ``<phase>/time/step_seconds``; ``train_epoch`` gives ``<phase>/<split>/<metric>``;
    ``discretisation`` gives ``discretisation/<metric>/{continuous,discrete,gap}``.
    """

    def __init__(self, log_dir: str | Path) -> None:
        writer_cls = _summary_writer()
        self.writer = writer_cls(log_dir=str(log_dir))
        self._last_epoch = 0

    def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        phase = str(fields.get("phase", event))
        # Events without an epoch (the discretisation) are placed at the last epoch seen.
        step = int(fields.get("epoch", self._last_epoch) or 0)
        self._last_epoch = step
        scalars: dict[str, Any] = {}
        if event in ("search_epoch", "train_epoch"):
            for split, values in fields.items():
                if isinstance(values, Mapping) and split not in (
                    "summary",
                    "genotype",
                    "candidates_changed",
                ):
                    scalars.update({f"{phase}/{split}/{k}": v for k, v in values.items()})
            summary = fields.get("summary") or {}
            scalars.update(
                {
                    f"{phase}/support/{k.replace('_support', '')}": v
                    for k, v in summary.items()
                    if k.endswith("_support")
                }
            )
            scalars.update(
                {
                    f"{phase}/entropy/{k.replace('_entropy', '')}": v
                    for k, v in summary.items()
                    if k.endswith("_entropy")
                }
            )
            for k in ("step_seconds", "seconds"):
                if k in fields:
                    scalars[f"{phase}/time/{k}"] = fields[k]
        elif event == "discretisation":
            m = fields.get("metric", "metric")
            scalars = {
                f"discretisation/{m}/continuous": (fields.get("continuous") or {}).get(m),
                f"discretisation/{m}/discrete": (fields.get("discrete") or {}).get(m),
                f"discretisation/{m}/gap": fields.get("gap"),
            }
        for tag, value in scalars.items():
            if _is_number(value):
                self.writer.add_scalar(tag, float(value), step)
        if scalars:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError(
            "--tensorboard needs the tensorboard package, which is not installed: "
            "pip install tensorboard"
        ) from e
    return SummaryWriter


def tensorboard_sink(run_dir: str | Path) -> Callable[[str, Mapping[str, Any]], None]:
    """A trainer event sink writing TensorBoard scalars into ``RUN_DIR/tensorboard``."""
    return TensorBoardSink(Path(run_dir) / TENSORBOARD)


def check_tensorboard() -> None:
    """Raise a one-line ValueError now if TensorBoard logging cannot work."""
    _summary_writer()
