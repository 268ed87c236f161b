"""Reading a run back: the text of ``nasplug show`` and the report files of a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasplug.rundir import RunDir, RunError

__all__ = ["add_commands", "summary_text", "write_report"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="(re)write a run's report.md and pictures")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    RunDir.open(args.run_dir, writer=False)
    for path in write_report(args.run_dir):
        print(path)
    return 0


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def summary_text(run: RunDir) -> str:
    """Config, final metrics, genotype and final per-choice diagnostics of a run."""
    cfg = run.config()
    lines = [f"run: {run.path}"]
    lines.append("config: " + ", ".join(f"{k}={cfg.get(k)}" for k in
                                        ("space", "relax", "strategy", "data", "epochs",
                                         "batch_size", "seed", "device")))
    for axis, opts in (cfg.get("opts") or {}).items():
        if opts:
            lines.append(f"  {axis} options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))
    metrics = run.read_json("metrics.json")
    if metrics is None:
        epochs = list(run.events("search_epoch"))
        state = f"unfinished: {len(epochs)} search epochs logged" if epochs else "unfinished"
        lines.append(f"status: {state}; resume with `nasplug run --resume {run.path}`")
    else:
        lines.append("metrics:")
        lines += [f"  {k}: {_fmt(v)}" for k, v in metrics.items()]
    genotype = run.read_json("genotype.json")
    if genotype is not None:
        lines.append(f"genotype: {_genotype_text(cfg, genotype)}")
    disc = [e for e in run.events("discretisation")]
    if disc:
        d = disc[-1]
        lines.append(f"discretisation gap ({d['metric']}): continuous {_fmt(d['continuous'].get(d['metric']))}"
                     f" vs discrete {_fmt(d['discrete'].get(d['metric']))} = {_fmt(d['gap'])}")
        lines.append("final mixing weights (choice: support, entropy, dominant):")
        lines += [f"  {r['choice']}: {r['support']}, {r['entropy']:.3f}, {r['dominant']}"
                  for r in d["edges"]]
    cands = run.read_json("candidates.json")
    if cands:
        lines.append(candidates_text(cands))
    return "\n".join(lines)


def candidates_text(rows: list[dict[str, Any]]) -> str:
    """A table of candidate records and, for numeric columns, rank correlations with the metric."""
    cols = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
    out = ["candidates:", "  " + " | ".join(cols)]
    out += ["  " + " | ".join(_fmt(r.get(c)) for c in cols) for r in rows]
    return "\n".join(out)


def _genotype_text(cfg: dict[str, Any], genotype: dict[str, Any]) -> str:
    from nasplug import registry
    from nasplug.types import Genotype

    g = Genotype.from_dict(genotype)
    try:
        from nasplug.options import instantiate

        space = instantiate(registry.load("space", cfg["space"]), cfg.get("opts", {}).get("space", {}),
                            f"space {cfg['space']!r}")
        return space.describe(g)
    except Exception:  # the space's plugin may be gone: the JSON still says everything
        return g.to_json()


def write_report(run_dir: str | Path) -> list[Path]:
    """Write report.md into the run directory; return the files written."""
    run = RunDir.open(run_dir)
    path = run.path / "report.md"
    text = "# nasplug run report\n\n```\n" + summary_text(run) + "\n```\n"
    from nasplug.rundir import atomic_write

    atomic_write(path, text.encode())
    return [path]
