"""Pictures of a run: the derived architecture, mixing weights over time, sparsity, and curves.

Every function returns a matplotlib :class:`~matplotlib.figure.Figure` built without pyplot
(so no GUI backend is ever chosen), or None when there is nothing to draw. The input is the
plain data of a run directory (genotype JSON, event records), never a live model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

__all__ = [
    "candidates_figure",
    "curves_figure",
    "genotype_figure",
    "pareto_figure",
    "query_curve_figure",
    "save",
    "slug",
    "sparsity_figure",
    "weights_figures",
]

_DPI = 150
_INPUT_COLOUR = "#cfe2f3"
_NODE_COLOUR = "#d9ead3"
_OUTPUT_COLOUR = "#fff2cc"
_EDGE_GREY = "#999999"
_GAP_COLOUR = "#d0d0d0"
#: Weights at or below this are drawn white: exact zeros, not computed.
_ZERO = 1e-12


def _figure(width: float, height: float, *, top: float = 0.75, wspace: float = 0.3) -> Figure:
    """A figure with fixed margins in inches (a layout engine would cost a second per figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    fig.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.2 / width,
        bottom=0.6 / height,
        top=1 - top / height,
        wspace=wspace,
    )
    return fig


def save(fig: Figure, stem: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format (text stays text in SVG)."""
    import matplotlib

    paths = []
    stem.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "nasplug"}):
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            # Fast PNG compression: the default level costs seconds on large heatmap grids.
            extra = (
                {"pil_kwargs": {"compress_level": 1}}
                if fmt == "png"
                else {"metadata": {"Date": None}}
            )
            fig.savefig(path, format=fmt, dpi=_DPI, facecolor="white", **extra)
            paths.append(path)
    return paths


# ---- the genotype ------------------------------------------------------------------------------
def genotype_figure(genotype: Mapping[str, Any], title: str = "") -> Figure | None:
    """The derived architecture as a graph with op names on its edges.

    Three genotype shapes are drawn: DARTS cells (``normal``/``reduce`` lists of ``(op, input)``
    pairs: one panel per cell type), DAGs (``edges`` as ``[i, j]`` pairs, with ``layers`` naming
    the vertices ``in``/``out`` when present) and per-choice genotypes (``choices``). Any other
    shape returns None.
    """
    spec = genotype.get("spec", {}) if isinstance(genotype, Mapping) else {}
    cells = [k for k in ("normal", "reduce") if _is_pairs(spec.get(k))]
    if cells:
        panels = [_cell_panel(kind, spec[kind], spec.get(f"{kind}_concat")) for kind in cells]
        palette = _palette(sorted({p[0] for k in cells for p in spec[k]}))
        for panel in panels:
            panel.colour_by(palette)
    elif _is_pairs_of_ints(spec.get("edges")):
        panels = [_dag_panel(spec)]
    elif isinstance(spec.get("choices"), Mapping) and spec["choices"]:
        panels = [_choices_panel(spec["choices"])]
    else:
        return None
    return _render(panels, title)


def _is_pairs(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and len(value) % 2 == 0
        and all(
            isinstance(p, (list, tuple))
            and len(p) == 2
            and isinstance(p[0], str)
            and isinstance(p[1], int)
            and not isinstance(p[1], bool)
            for p in value
        )
    )


def _is_pairs_of_ints(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(
            isinstance(p, (list, tuple))
            and len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
            for p in value
        )
    )


def _palette(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


#: Inches per data unit of the graph panels: fixed, so that text sizes are known in data units.
_INCH = 0.55
_LABEL_PT = 8.0


@dataclass
class _Node:
    key: Any
    xy: tuple[float, float]
    text: str
    colour: str
    shape: str = "box"  # "box" or "circle"


@dataclass
class _Edge:
    source: Any
    target: Any
    label: str = ""
    rad: float | None = None  # curvature of matplotlib's arc3; None: the clearest of a few
    dashed: bool = False
    colour: Any = "#3c78d8"
    width: float = 1.6


@dataclass
class _Panel:
    """A graph drawn in data units of :data:`_INCH` inches, with its bounds."""

    title: str
    nodes: list[_Node]
    edges: list[_Edge]
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def colour_by(self, palette: Mapping[str, Any]) -> None:
        for e in self.edges:
            if e.label in palette:
                e.colour = palette[e.label]


def _cell_panel(kind: str, pairs: Sequence[Sequence[Any]], concat: Sequence[int] | None) -> _Panel:
    n = len(pairs) // 2
    gap = 2.5
    nodes = [
        _Node(0, (0.0, 1.7), "$c_{k-2}$", _INPUT_COLOUR),
        _Node(1, (0.0, -1.7), "$c_{k-1}$", _INPUT_COLOUR),
    ]
    for i in range(n):
        # Zig-zag the intermediate nodes, so that long edges pass between the short ones.
        nodes.append(
            _Node(
                i + 2,
                (gap * (i + 1), 0.85 if i % 2 == 0 else -0.85),
                str(i + 2),
                _NODE_COLOUR,
                "circle",
            )
        )
    nodes.append(_Node("out", (gap * (n + 1), 0.0), "$c_{k}$", _OUTPUT_COLOUR))
    edges = []
    for e, (op, source) in enumerate(pairs):
        target = 2 + e // 2
        edges.append(_Edge(source, target, op))
    for i in concat or range(2, n + 2):
        edges.append(_Edge(i, "out", "", dashed=True, colour=_EDGE_GREY, width=1.0))
    return _Panel(f"{kind} cell", nodes, edges, (-0.9, gap * (n + 1) + 0.9), (-2.4, 2.4))


def _dag_panel(spec: Mapping[str, Any]) -> _Panel:
    edges_in = [tuple(e) for e in spec["edges"]]
    layers = spec.get("layers")
    top = max(max(e) for e in edges_in)
    if isinstance(layers, int) and not isinstance(layers, bool):
        top = max(top, layers + 1)
    else:
        layers = None
    act, width = spec.get("activation"), spec.get("width")
    gap = 2.2
    used = {v for e in edges_in for v in e}
    nodes = []
    for v in range(top + 1):
        if layers is not None and v in (0, layers + 1):
            nodes.append(_Node(v, (gap * v, 0.0), "in" if v == 0 else "out", _INPUT_COLOUR))
        else:
            text = f"{v}\n{width or ''} {act or ''}".rstrip() if (act or width) else str(v)
            nodes.append(_Node(v, (gap * v, 0.0), text, _NODE_COLOUR if v in used else "#eeeeee"))
    edges = []
    for k, (i, j) in enumerate(edges_in):
        span = j - i
        rad = 0.0 if span == 1 else (-0.45 if k % 2 else 0.45)
        edges.append(_Edge(i, j, "" if span == 1 else f"skip {span}", rad))
    parts = [
        f"{layers} layers" if layers is not None else "",
        f"width {width}" if width else "",
        str(act) if act else "",
        f"{len(edges_in)} edges",
    ]
    lift = 0.6 + 0.25 * gap * max(j - i for i, j in edges_in)
    return _Panel(
        "DAG: " + ", ".join(p for p in parts if p),
        nodes,
        edges,
        (-1.0, gap * top + 1.0),
        (-lift, lift),
    )


def _choices_panel(choices: Mapping[str, Any]) -> _Panel:
    items = list(choices.items())
    cols = min(len(items), 4)
    nodes, edges = [], []
    for k, (name, value) in enumerate(items):
        nodes.append(
            _Node(k, (3.4 * (k % cols), -1.6 * (k // cols)), f"{name}\n{value}", _NODE_COLOUR)
        )
        if k:
            edges.append(_Edge(k - 1, k, "", 0.0, colour=_EDGE_GREY, width=1.0))
    rows = math.ceil(len(items) / cols)
    return _Panel(
        "chosen candidate of every choice",
        nodes,
        edges,
        (-1.7, 3.4 * (cols - 1) + 1.7),
        (-1.6 * (rows - 1) - 0.8, 0.8),
    )


def _render(panels: Sequence[_Panel], title: str) -> Figure:
    from matplotlib.figure import Figure

    head = 0.45 if title else 0.1
    sizes = [
        ((p.xlim[1] - p.xlim[0]) * _INCH, (p.ylim[1] - p.ylim[0]) * _INCH + 0.35) for p in panels
    ]
    width = max(w for w, _ in sizes) + 0.2
    height = sum(h for _, h in sizes) + head
    fig = Figure(figsize=(width, height), dpi=_DPI)
    top = height - head
    for panel, (w, h) in zip(panels, sizes, strict=True):
        top -= h
        ax = fig.add_axes(((width - w) / 2 / width, top / height, w / width, (h - 0.35) / height))
        ax.set_xlim(*panel.xlim)
        ax.set_ylim(*panel.ylim)
        ax.axis("off")
        ax.set_title(panel.title, fontsize=11, fontweight="bold")
        _draw_panel(ax, panel)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    return fig


def _draw_panel(ax: Axes, panel: _Panel) -> None:
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

    patches: dict[Any, Patch] = {}
    boxes: list[tuple[float, float, float, float]] = []  # occupied (x0, y0, x1, y1), data units
    for node in panel.nodes:
        lines = node.text.split("\n")
        w = max(0.9, _text_width(max(lines, key=len), 10) + 0.35)
        h = 0.5 + 0.3 * (len(lines) - 1)
        x, y = node.xy
        patch: Patch
        if node.shape == "circle":
            patch = Circle(node.xy, 0.3, facecolor=node.colour, edgecolor="#444444", zorder=3)
            w = h = 0.6
        else:
            patch = FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0.02,rounding_size=0.12",
                facecolor=node.colour,
                edgecolor="#444444",
                zorder=3,
            )
        ax.add_patch(patch)
        ax.text(x, y, node.text, ha="center", va="center", fontsize=10, zorder=4)
        patches[node.key] = patch
        boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    where = {n.key: n.xy for n in panel.nodes}
    labelled: list[tuple[_Edge, tuple[float, float], tuple[float, float], float]] = []
    for e in panel.edges:
        a, b = where[e.source], where[e.target]
        if e.rad is None:
            others = [
                box
                for n, box in zip(panel.nodes, boxes, strict=True)
                if n.key not in (e.source, e.target)
            ]
            e.rad = _clear_rad(a, b, others)
        rad = e.rad
        ax.add_patch(
            FancyArrowPatch(
                a,
                b,
                patchA=patches[e.source],
                patchB=patches[e.target],
                arrowstyle="-|>",
                mutation_scale=13,
                shrinkA=1,
                shrinkB=1,
                connectionstyle=f"arc3,rad={rad}",
                color=e.colour,
                linewidth=e.width,
                linestyle="--" if e.dashed else "-",
                zorder=2,
            )
        )
        if e.label:
            labelled.append((e, a, b, rad))
    # Labels last, each at the first point along its curve where it covers no node or label.
    for e, a, b, rad in labelled:
        w, h = _text_width(e.label, _LABEL_PT) + 0.2, 0.42
        x, y = _free_spot(a, b, rad, w, h, boxes)
        boxes.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        ax.text(
            x,
            y,
            e.label,
            ha="center",
            va="center",
            fontsize=_LABEL_PT,
            zorder=5,
            bbox={
                "boxstyle": "round,pad=0.2",
                "facecolor": "white",
                "edgecolor": e.colour,
                "linewidth": 1.2,
            },
        )


def _text_width(text: str, points: float) -> float:
    """Approximate width of ``text`` in data units (DejaVu Sans averages 0.6 em per character)."""
    return len(text) * 0.6 * points / 72 / _INCH


def _curve(
    a: tuple[float, float], b: tuple[float, float], rad: float, t: float
) -> tuple[float, float]:
    """The point at ``t`` of matplotlib's arc3 curve: its control point is rad * length off the middle."""
    (x0, y0), (x1, y1) = a, b
    cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
    return (
        (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t**2 * x1,
        (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t**2 * y1,
    )


def _clear_rad(
    a: tuple[float, float],
    b: tuple[float, float],
    boxes: Sequence[tuple[float, float, float, float]],
) -> float:
    """The least curvature whose curve keeps clear of the other nodes' boxes."""

    def clearance(rad: float) -> float:
        gaps = [math.inf]
        for k in range(1, 20):
            x, y = _curve(a, b, rad, k / 20)
            gaps += [
                math.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1))
                for x0, y0, x1, y1 in boxes
            ]
        return min(gaps)

    best, most = 0.0, -1.0
    for rad in (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45):
        gap = clearance(rad)
        if gap >= 0.35:
            return rad
        if gap > most:
            best, most = rad, gap
    return best


def _free_spot(
    a: tuple[float, float],
    b: tuple[float, float],
    rad: float,
    w: float,
    h: float,
    boxes: Sequence[tuple[float, float, float, float]],
) -> tuple[float, float]:
    """The first point along the curve where a ``w`` x ``h`` label covers nothing (else the least)."""
    best, best_cost = (0.0, 0.0), math.inf
    for t in (0.5, 0.4, 0.6, 0.32, 0.68, 0.25, 0.75, 0.45, 0.55):
        x, y = _curve(a, b, rad, t)
        cost = sum(
            max(0.0, min(x + w / 2, bx1) - max(x - w / 2, bx0))
            * max(0.0, min(y + h / 2, by1) - max(y - h / 2, by0))
            for bx0, by0, bx1, by1 in boxes
        )
        if cost < best_cost - 1e-9:
            best, best_cost = (x, y), cost
        if cost == 0:
            break
    return best


# ---- mixing weights over the search ----------------------------------------------------------
def _epoch_axis(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[tuple[int, str]]]:
    """Tick labels (epoch numbers) and where each new phase starts, for records in log order."""
    ticks, starts, last = [], [], None
    for i, r in enumerate(records):
        phase = str(r.get("phase", ""))
        if phase != last:
            starts.append((i, phase))
            last = phase
        ticks.append(str(r.get("epoch", i + 1)))
    return ticks, starts


def _group_of(choice: str) -> str:
    return choice.split(":", 1)[0] if ":" in choice else "choices"


def weights_figures(
    records: Sequence[Mapping[str, Any]], candidates: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, Figure]]:
    """Heatmaps of every choice's mixing weights over the epochs, one figure per group of choices.

    Choices are grouped by the prefix of their name before ``:`` (``normal``, ``reduce``).
    Rows are candidates (named from the records' ``candidates``, else ``candidates``, else by
    index), columns are epochs; exact zeros are white (not computed), and candidates replaced
    during the search are marked with a cross.
    """
    import numpy as np

    rows_by_choice: dict[str, list[Mapping[str, Any] | None]] = {}
    order: list[str] = []
    for t, rec in enumerate(records):
        for row in rec.get("edges") or []:
            name = row.get("choice")
            if name is None or "weights" not in row:
                continue
            if name not in rows_by_choice:
                rows_by_choice[name] = [None] * len(records)
                order.append(name)
            rows_by_choice[name][t] = row
    if not order:
        return []
    ticks, starts = _epoch_axis(records)
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(_group_of(name), []).append(name)
    figures = []
    for group, names in groups.items():
        labels = {n: _candidate_names(rows_by_choice[n], (candidates or {}).get(n)) for n in names}
        mats = {}
        for n in names:
            mat = np.full((len(labels[n]), len(records)), np.nan)
            for t, row in enumerate(rows_by_choice[n]):
                if row is None:
                    continue
                # No names when they cannot be known: truncating to nothing leaves the row a gap.
                for name, w in zip(_row_names(row, labels[n]), row["weights"], strict=False):
                    mat[labels[n].index(name), t] = w if w is not None else np.nan
            mats[n] = mat
        vmax = (
            max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0 for m in mats.values()) or 1.0
        )
        phases = " | ".join(p for _, p in starts if p) if len(starts) > 1 else ""
        what = "mixing weights" if group == "choices" else f"mixing weights of the {group} choices"
        gaps = any(np.isnan(m).any() for m in mats.values())
        notes = [
            f"phases: {phases}" if phases else "",
            "white: exactly 0, not computed",
            "grey: not a candidate then" if gaps else "",
            "x: candidate replaced after that epoch" if _any_replaced(records, names) else "",
        ]
        lines = [f"{what} over the search epochs"] + [n for n in notes if n]
        fig, axes = _heatmap_grid(names, labels, len(records), top=0.35 + 0.22 * len(lines))
        fig.suptitle(lines[0], fontsize=11, y=1 - 0.12 / fig.get_figheight(), va="top")
        fig.text(
            0.5,
            1 - (0.12 + 0.25) / fig.get_figheight(),
            "\n".join(lines[1:]),
            ha="center",
            va="top",
            fontsize=8.5,
            color="#444444",
        )
        image = None
        every = max(1, math.ceil(len(records) / 8))
        shared = all(labels[n] == labels[names[0]] for n in names)
        for k, (n, ax) in enumerate(zip(names, axes, strict=True)):
            # Zeros fall under vmin (white); gaps are NaN (grey): not a candidate then, or unnamed.
            image = ax.imshow(
                np.ma.masked_invalid(mats[n]),
                aspect="auto",
                cmap=_cmap(),
                vmin=_ZERO,
                vmax=vmax,
                interpolation="nearest",
            )
            ax.set_title(n.split(":", 1)[1] if ":" in n else n, fontsize=9, pad=3)
            show = not shared or k % _cols(names, len(records)) == 0
            ax.set_yticks(range(len(labels[n])), labels[n] if show else [], fontsize=7.5)
            ax.set_xticks(range(0, len(records), every), ticks[::every], fontsize=7.5)
            ax.set_xlabel("epoch", fontsize=8, labelpad=1)
            for i, _ in starts[1:]:
                ax.axvline(i - 0.5, color="black", linewidth=1.0)
            _mark_replaced(ax, records, n, labels[n])
        if image is not None:
            w_in, h_in = fig.get_size_inches()
            right = max(a.get_position().x1 for a in axes)
            low = min(a.get_position().y0 for a in axes)
            high = max(a.get_position().y1 for a in axes)
            tall = min(high - low, 4.0 / h_in)
            cax = fig.add_axes((right + 0.25 / w_in, (low + high - tall) / 2, 0.15 / w_in, tall))
            bar = fig.colorbar(image, cax=cax)
            bar.set_label("mixing weight", fontsize=8)
        figures.append((group, fig))
    return figures


def _cols(names: Sequence[str], epochs: int) -> int:
    return min(len(names), 4 if epochs <= 12 else 3)


def _heatmap_grid(
    names: Sequence[str], labels: Mapping[str, Sequence[str]], epochs: int, top: float
) -> tuple[Figure, list[Axes]]:
    """A figure with one heatmap axes per choice, laid out in inches (no layout engine: fast)."""
    from matplotlib.figure import Figure

    cols = _cols(names, epochs)
    rows = math.ceil(len(names) / cols)
    shared = all(labels[n] == labels[names[0]] for n in names)
    longest = max(len(c) for n in names for c in labels[n])
    label_w = longest * 0.6 * 7.5 / 72 + 0.15
    panel_w = min(4.0, max(1.7, 0.24 * epochs + 0.5))
    panel_h = 0.19 * max(len(labels[n]) for n in names) + 0.25
    col_w = panel_w + (0.25 if shared else label_w + 0.2)
    row_h = panel_h + 0.8
    left, right = label_w + 0.2, 1.3
    width = max(left + cols * col_w + right, 5.0)
    height = top + rows * row_h
    fig = Figure(figsize=(width, height), dpi=_DPI)
    axes = []
    for k in range(len(names)):
        r, c = divmod(k, cols)
        x = left + c * col_w
        y = height - top - r * row_h - panel_h - 0.1
        axes.append(fig.add_axes((x / width, y / height, panel_w / width, panel_h / height)))
    return fig, axes


def _cmap() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(under="white", bad=_GAP_COLOUR)


def _row_names(row: Mapping[str, Any], fallback: Sequence[str]) -> list[str]:
    """The candidate of each weight of ``row``; none when they cannot be known."""
    names = row.get("candidates")
    if isinstance(names, list) and len(names) == len(row["weights"]):
        return [str(n) for n in names]
    return list(fallback) if len(fallback) == len(row["weights"]) else []


def _candidate_names(
    rows: Sequence[Mapping[str, Any] | None], known: Sequence[str] | None
) -> list[str]:
    """Every candidate a choice had over the search, in first-seen order."""
    names: list[str] = []
    widest = 0
    for row in rows:
        if row is None:
            continue
        widest = max(widest, len(row["weights"]))
        for n in row.get("candidates") or []:
            if str(n) not in names:
                names.append(str(n))
    if names:
        return names
    if known is not None and len(known) == widest:
        return [str(k) for k in known]
    return [f"#{k}" for k in range(widest)]


def _any_replaced(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> bool:
    return any((rec.get("candidates_changed") or {}).get(n) for rec in records for n in names)


def _mark_replaced(
    ax: Axes, records: Sequence[Mapping[str, Any]], choice: str, labels: Sequence[str]
) -> None:
    xs, ys = [], []
    for t, rec in enumerate(records):
        for name in (rec.get("candidates_changed") or {}).get(choice, []):
            if str(name) in labels:
                xs.append(t)
                ys.append(labels.index(str(name)))
    if xs:
        ax.scatter(
            xs,
            ys,
            marker="x",
            color="#cc0000",
            s=22,
            linewidths=1.3,
            zorder=3,
            label="replaced after this epoch",
        )


# ---- sparsity and step time ------------------------------------------------------------------
def sparsity_figure(records: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Support size and entropy per epoch, and the step time against the support size."""
    rows = [r for r in records if isinstance(r.get("summary"), Mapping) and r["summary"]]
    if not rows:
        return None
    x = list(range(1, len(rows) + 1))
    ticks, starts = _epoch_axis(rows)
    fig = _figure(14.0, 3.9, top=0.45, wspace=0.32)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    s = [r["summary"] for r in rows]
    _segmented(
        ax1,
        starts,
        x,
        [v.get("mean_support", math.nan) for v in s],
        "o-",
        "C0",
        "mean over choices",
    )
    _segmented(
        ax1, starts, x, [v.get("max_support", math.nan) for v in s], "s--", "C1", "largest choice"
    )
    ax1.set_ylabel("candidates with non-zero weight")
    pad = 14 if len(starts) > 1 else 6  # room for the phase names
    ax1.set_title("support size", fontsize=11, pad=pad)
    ax1.set_ylim(bottom=0)
    _segmented(
        ax2,
        starts,
        x,
        [v.get("mean_entropy", math.nan) for v in s],
        "o-",
        "#674ea7",
        "mean over choices",
    )
    top = max((v.get("max_entropy", 0.0) or 0.0) for v in s)
    if top > 0:
        ax2.axhline(top, color=_EDGE_GREY, linestyle=":", label="uniform (largest choice)")
    ax2.set_ylabel("entropy of the weights (nats)")
    ax2.set_title("entropy", fontsize=11, pad=pad)
    ax2.set_ylim(bottom=0)
    _epoch_panels((ax1, ax2), x, ticks, starts, legend_size=8)
    step = [r.get("step_seconds") for r in rows]
    support = [v.get("mean_support") for v in s]
    pts = [
        (a, b, t)
        for a, b, t in zip(support, step, x, strict=True)
        if a is not None and b is not None
    ]
    if pts:
        sc = ax3.scatter(
            [p[0] for p in pts],
            [1000 * p[1] for p in pts],
            c=[p[2] for p in pts],
            cmap="plasma",
            s=40,
            zorder=3,
        )
        for a, b, t in pts:
            ax3.annotate(
                ticks[t - 1], (a, 1000 * b), textcoords="offset points", xytext=(4, 4), fontsize=7.5
            )
        bar = fig.colorbar(sc, ax=ax3, pad=0.01)
        bar.set_label("epoch (in log order)", fontsize=8)
        bar.locator = _integer_locator()
        bar.update_ticks()
        ax3.set_ylim(bottom=0)
    else:
        ax3.text(
            0.5, 0.5, "no step times logged", ha="center", va="center", transform=ax3.transAxes
        )
    ax3.set_xlabel("mean support size")
    ax3.set_ylabel("time per search step (ms)")
    ax3.set_title("step time vs support size", fontsize=11, pad=pad)
    ax3.grid(alpha=0.3)
    return fig


def groups_figure(records: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Per group (a cell node) and epoch: the mass of every member (incoming edge), the members
    that carry any, and the distance of the weights to the nearest vertex (a genotype)."""
    rows = [r for r in records if r.get("groups")]
    if not rows:
        return None
    names = [g["group"] for g in rows[-1]["groups"]]
    x = list(range(1, len(rows) + 1))
    ticks, starts = _epoch_axis(rows)
    fig = _figure(14.0, 3.9, top=0.45, wspace=0.32)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    # One row per (group, member), ordered by group: the edge mass as a heatmap over epochs.
    labels = [
        f"{g['group']} <- {m.rsplit('<-', 1)[-1]}" for g in rows[-1]["groups"] for m in g["members"]
    ]
    grid = [[math.nan] * len(rows) for _ in labels]
    for t, r in enumerate(rows):
        flat = [m for g in r["groups"] for m in g["mass"]]
        for i, m in enumerate(flat[: len(labels)]):
            grid[i][t] = m
    im = ax1.imshow(
        grid,
        aspect="auto",
        cmap=_cmap(),
        vmin=0.0,
        vmax=1.0,
        extent=(0.5, len(rows) + 0.5, len(labels) - 0.5, -0.5),
    )
    ax1.set_yticks(range(len(labels)), labels, fontsize=6 if len(labels) > 20 else 7.5)
    fig.colorbar(im, ax=ax1, pad=0.01).set_label("edge mass (sum of its weights)", fontsize=8)
    pad = 14 if len(starts) > 1 else 6
    ax1.set_title("mass of every incoming edge", fontsize=11, pad=pad)
    k = rows[-1]["groups"][0].get("k")
    for name_idx, name in enumerate(names[:8]):
        act = [
            next((g["active"] for g in r["groups"] if g["group"] == name), math.nan) for r in rows
        ]
        ax2.plot(x, act, "o-", label=name, color=f"C{name_idx % 10}", alpha=0.8)
    if k:
        ax2.axhline(k, color=_EDGE_GREY, linestyle=":", label=f"k = {k} (the derived network)")
    ax2.set_ylabel("incoming edges with mass")
    ax2.set_title("active edges per node", fontsize=11, pad=pad)
    ax2.set_ylim(bottom=0)
    s = [r.get("summary", {}) for r in rows]
    _segmented(
        ax3,
        starts,
        x,
        [v.get("mean_vertex_distance", math.nan) for v in s],
        "o-",
        "C0",
        "mean over nodes",
    )
    _segmented(
        ax3,
        starts,
        x,
        [v.get("max_vertex_distance", math.nan) for v in s],
        "s--",
        "C1",
        "farthest node",
    )
    ax3.set_ylabel("distance to the nearest vertex")
    ax3.set_title("distance to a genotype", fontsize=11, pad=pad)
    ax3.set_ylim(bottom=0)
    _epoch_panels((ax2, ax3), x, ticks, starts, legend_size=7)
    ax1.set_xticks(x[:: max(1, math.ceil(len(x) / 10))], ticks[:: max(1, math.ceil(len(x) / 10))])
    ax1.set_xlabel("epoch")
    return fig


# ---- loss and metric curves ------------------------------------------------------------------
#: How the trainer's split names read in a legend.
_SPLIT_NAMES = {"arch": "val (architecture half)", "weight": "train (weight half)"}


def _segmented(
    ax: Axes,
    starts: Sequence[tuple[int, str]],
    x: Sequence[float],
    y: Sequence[float],
    style: str,
    colour: Any,
    label: str,
    **kw: Any,
) -> None:
    """Plot ``y`` over ``x`` as one line per phase (lines do not join across phase boundaries)."""
    bounds = [i for i, _ in starts] + [len(x)]
    for k in range(len(bounds) - 1):
        a, b = bounds[k], bounds[k + 1]
        ax.plot(x[a:b], y[a:b], style, color=colour, label=label if k == 0 else None, **kw)


def _epoch_panels(
    axes: Sequence[Axes],
    x: Sequence[int],
    ticks: Sequence[str],
    starts: Sequence[tuple[int, str]],
    legend_size: float,
) -> None:
    """Epoch ticks and phase lines, a grid and a legend on each panel of per-epoch curves."""
    for ax in axes:
        _phase_axis(ax, x, ticks, starts)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_size)


def _phase_axis(
    ax: Axes, x: Sequence[int], ticks: Sequence[str], starts: Sequence[tuple[int, str]]
) -> None:
    """Epoch ticks, a line at every phase boundary and the phase names above the plot."""
    every = max(1, math.ceil(len(x) / 10))
    ax.set_xticks(list(x)[::every], list(ticks)[::every])
    ax.set_xlabel("epoch" + (" (within each phase)" if len(starts) > 1 else ""))
    if len(starts) > 1:
        bounds = [i for i, _ in starts] + [len(x)]
        for k, (i, phase) in enumerate(starts):
            if k:
                ax.axvline(i + 0.5, color="black", linewidth=0.8)
            ax.text(
                (bounds[k] + bounds[k + 1] + 1) / 2,
                1.0,
                phase,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color="#444444",
            )


def curves_figure(
    records: Sequence[Mapping[str, Any]], metric: str, title: str, *, sequential: bool = False
) -> Figure | None:
    """Loss and ``metric`` per epoch of every split in the records.

    Works for search records (``train``/``val``) and training records (``train``/``test`` or
    any other split). With ``sequential`` the phases follow each other along the x axis (the
    stages of one search); otherwise they share it, one line style per phase (networks trained
    side by side), and beyond six phases the lines are drawn faintly without a legend entry each.
    """
    rows = [r for r in records if any(isinstance(v, Mapping) for v in r.values())]
    if not rows:
        return None
    fig = _figure(11.5, 4.0, wspace=0.22)
    ax_loss, ax_metric = fig.subplots(1, 2)
    skip = ("summary", "genotype", "candidates_changed")
    splits = [
        k
        for k in ("train", "val", "test", "arch", "weight")
        if any(isinstance(r.get(k), Mapping) for r in rows)
    ]
    splits += sorted(
        {
            k
            for r in rows
            for k, v in r.items()
            if isinstance(v, Mapping) and k not in splits and k not in skip
        }
    )
    colours = _palette(splits)
    phases: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        phases.setdefault(str(r.get("phase", "")), []).append(r)
    many = not sequential and len(phases) > 6
    ticks, starts = _epoch_axis(rows)
    x_all = list(range(1, len(rows) + 1))
    for split in splits:
        for ax, key in ((ax_loss, "loss"), (ax_metric, metric)):
            raw = [(r.get(split) or {}).get(key) for r in rows]
            if all(v is None for v in raw):
                continue
            y_all = [math.nan if v is None else v for v in raw]
            if sequential:
                _segmented(
                    ax,
                    starts,
                    x_all,
                    y_all,
                    "o-",
                    colours[split],
                    _SPLIT_NAMES.get(split, split),
                    markersize=3,
                )
                continue
            for p_i, (phase, recs) in enumerate(phases.items()):
                y = [(r.get(split) or {}).get(key) for r in recs]
                x = [r.get("epoch", i + 1) for i, r in enumerate(recs)]
                name = _SPLIT_NAMES.get(split, split)
                label = (
                    name
                    if len(phases) == 1 or (many and p_i == 0)
                    else None
                    if many
                    else f"{phase} {name}"
                )
                ax.plot(
                    x,
                    [math.nan if v is None else v for v in y],
                    ["-", "--", ":", "-."][p_i % 4],
                    marker="o",
                    markersize=3,
                    color=colours[split],
                    label=label,
                    alpha=0.5 if many else 1.0,
                )
    for ax, key in ((ax_loss, "loss"), (ax_metric, metric)):
        if sequential:
            _phase_axis(ax, x_all, ticks, starts)
        else:
            ax.xaxis.set_major_locator(_integer_locator())
            ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_loss.set_title("loss", fontsize=11, pad=14 if sequential and len(starts) > 1 else 6)
    ax_metric.set_title(metric, fontsize=11, pad=14 if sequential and len(starts) > 1 else 6)
    suffix = f" ({len(phases)} runs)" if many else ""
    fig.suptitle(title + suffix, fontsize=11)
    return fig


# ---- candidates of black-box searches ---------------------------------------------------------
def candidates_figure(
    rows: Sequence[Mapping[str, Any]],
    target: str,
    correlations: Mapping[str, float | None],
    higher_is_better: bool = True,
    label: str = "",
) -> Figure | None:
    """The metric of every candidate in evaluation order with the best so far, and the metric
    against the (up to three) numeric columns most rank-correlated with it."""
    label = label or target
    ys = [r.get(target) for r in rows]
    good = [
        (i, float(y)) for i, y in enumerate(ys) if isinstance(y, (int, float)) and math.isfinite(y)
    ]
    if not good:
        return None
    known = [(k, v) for k, v in correlations.items() if v is not None]
    ranked = sorted(known, key=lambda kv: -abs(kv[1]))[:3]
    fig = _figure(4.6 * (1 + len(ranked)), 3.8, top=0.45, wspace=0.3)
    axes = fig.subplots(1, 1 + len(ranked), squeeze=False)[0]
    ax = axes[0]
    ax.plot([i for i, _ in good], [y for _, y in good], "o", color="C0", label="candidate")
    best, run = [], None
    for _, y in good:
        run = y if run is None or (y > run if higher_is_better else y < run) else run
        best.append(run)
    ax.step([i for i, _ in good], best, where="post", color="C3", label="best so far")
    ax.set_xlabel("candidate (evaluation order)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} of {len(rows)} candidates", fontsize=11)
    ax.xaxis.set_major_locator(_integer_locator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    for ax, (col, rho) in zip(axes[1:], ranked, strict=True):
        pts = [(r.get(col), r.get(target)) for r in rows]
        pts = [
            (a, b)
            for a, b in pts
            if isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and math.isfinite(a)
            and math.isfinite(b)
        ]
        ax.scatter([a for a, _ in pts], [b for _, b in pts], s=22, color="C2")
        ax.set_xlabel(col)
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs {col} (Spearman {rho:+.2f})", fontsize=10)
        ax.grid(alpha=0.3)
    return fig


# ---- black-box strategies on a benchmark table -----------------------------------------------
def query_curve_figure(
    curves: Mapping[str, Sequence[Sequence[float]]], label: str, *, best: float, seeds: int
) -> Figure:
    """Best-so-far table value against the number of queries: per strategy the mean over seeds
    and a band of one sd either side (capped at the table's best, which no seed can pass), and
    the table's best as a dashed line."""
    import statistics
    import textwrap

    fig = _figure(7.5, 4.6, top=0.5)
    ax = fig.subplots()
    colours = _palette(list(curves))
    floor = best
    for name, runs in curves.items():
        columns = list(zip(*runs, strict=True))
        x = list(range(1, len(columns) + 1))
        mean = [statistics.fmean(c) for c in columns]
        sd = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]
        ax.fill_between(
            x,
            [m - s for m, s in zip(mean, sd, strict=True)],
            [min(m + s, best) for m, s in zip(mean, sd, strict=True)],
            color=colours[name],
            alpha=0.18,
            linewidth=0,
        )
        ax.plot(x, mean, "-", color=colours[name], label=name)
        settle = min(len(mean), 10) - 1  # the first few queries would squash the rest
        floor = min(floor, mean[settle] - sd[settle])
    ax.axhline(best, color=_EDGE_GREY, linestyle="--", linewidth=1, label=f"table best {best:.2f}")
    ax.set_ylim(floor, best + 0.05 * (best - floor) + 1e-9)
    ax.set_xlabel("table queries")
    ax.set_ylabel("best so far")
    ax.xaxis.set_major_locator(_integer_locator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    title = (
        textwrap.fill(label, 90, break_on_hyphens=False) + f"\nmean and ± 1 sd over {seeds} seeds"
    )
    fig.subplots_adjust(top=1 - (0.35 + 0.18 * title.count("\n")) / 4.6)
    ax.set_title(title, fontsize=9)
    return fig


# ---- accuracy against a cost over runs --------------------------------------------------------
def pareto_figure(
    points: Sequence[tuple[str, float, float, bool]],
    *,
    cost: str,
    accuracy: str,
    higher_is_better: bool = True,
) -> Figure | None:
    """Accuracy against a cost, one point per run (``(name, cost, accuracy, on_front)``), the
    Pareto front's points highlighted and joined cheapest first; None with no point.

    The cost axis is logarithmic where the costs span more than a decade.
    """
    import textwrap

    if not points:
        return None
    fig = _figure(7.0, 4.8, top=0.7)
    ax = fig.subplots()
    off = [p for p in points if not p[3]]
    on = sorted((p for p in points if p[3]), key=lambda p: p[1])
    ax.scatter([p[1] for p in off], [p[2] for p in off], s=28, color=_EDGE_GREY, label="run")
    ax.step(
        [p[1] for p in on],
        [p[2] for p in on],
        where="post",
        color="C3",
        linewidth=1.5,
        alpha=0.8,
    )
    ax.scatter(
        [p[1] for p in on],
        [p[2] for p in on],
        s=46,
        color="C3",
        edgecolors="black",
        linewidths=0.6,
        zorder=3,
        label="Pareto front",
    )
    names: dict[tuple[float, float], list[str]] = {}  # runs at one spot share a label
    for name, x, y, _ in points:
        names.setdefault((x, y), []).append(name)
    fronts = {(x, y) for _, x, y, front in points if front}
    for (x, y), spot in names.items():
        ax.annotate(
            ", ".join(spot),
            (x, y),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=7,
            color="black" if (x, y) in fronts else "#555555",
        )
    costs = [p[1] for p in points]
    log = min(costs) > 0 and max(costs) > 10 * min(costs)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost} (log scale)" if log else cost)
    ax.set_ylabel(textwrap.fill(accuracy, 50, break_on_hyphens=False), fontsize=9)
    better = "higher" if higher_is_better else "lower"
    title = textwrap.fill(
        f"{accuracy} against {cost}: {len(on)} of {len(points)} runs on the Pareto front "
        f"(cheaper and {better} is better)",
        90,
        break_on_hyphens=False,
    )
    fig.subplots_adjust(top=1 - (0.35 + 0.18 * title.count("\n")) / 4.8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if higher_is_better else "upper right")
    return fig


def _integer_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"
