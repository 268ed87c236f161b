"""One-shot searches on a space with a benchmark table, scored by the table: several methods and
seeds, as one Markdown table with mean ± sd per method.

Usage::

    python benchmarks/oneshot_table.py OUT_DIR [--seeds 0,1,2] [--jobs 2] [--space nb201]
        [--space-opt KEY=VALUE ...] [--method NAME=RELAX[,KEY=VALUE...] ...]

A method's ``KEY=VALUE`` goes to ``--relax-opt``, to ``--strategy-opt`` when the key starts
with ``strategy.`` (``--method "warm3=sparsemax,strategy.warmup=3"``), or to the run's own flag
when it starts with ``run.`` (``--method "b=sparsemax,run.budget=params=40k"``).

Each search is a real ``nasplug run`` in its own process with ``OMP_NUM_THREADS=1`` (``--jobs``
at once), into ``OUT_DIR/NAME-sS``; a run directory that already holds ``metrics.json`` is
reused, so a killed sweep continues. Per method the table gives the derived cells, their table
value (mean ± sd), the number of parameter-free edges (``none``, skip, pools: the candidates the
space names as parameter-free), the derived network's accuracy inside the supernet, and the
search time (seconds under ``--jobs`` parallel processes: compare them only within one sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_METHODS = [
    "sparsemax=sparsemax",
    "softmax=softmax",
    "gumbel-hard=gumbel-hard",
    "drnas=drnas",
    "beta-darts=softmax,beta=50",
]
#: Candidates of the NAS-Bench-201 cell that hold no weights.
PARAMETER_FREE = {"none", "skip_connect", "avg_pool_3x3"}


def _run(out: Path, space: str, space_opts: list[str], relax: str, opts: list[str], seed: int):
    if (out / "metrics.json").is_file():
        return out
    cmd = [sys.executable, "-m", "nasplug", "run", "--space", space, "--relax", relax]
    cmd += ["--seed", str(seed), "--out", str(out), "--quiet", "--device", "cpu"]
    for o in space_opts:
        cmd += ["--space-opt", o]
    for o in opts:
        if o.startswith("strategy."):
            cmd += ["--strategy-opt", o.removeprefix("strategy.")]
        elif o.startswith("run."):
            flag, _, value = o.removeprefix("run.").partition("=")
            cmd += [f"--{flag}", value]
        else:
            cmd += ["--relax-opt", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return out


def run_all(
    out: Path,
    space: str,
    space_opts: list[str],
    methods: dict[str, tuple[str, list[str]]],
    seeds: list[int],
    jobs: int,
) -> None:
    """Every method (name -> relaxation and its options) at every seed, ``jobs`` at a time,
    into ``out/NAME-sSEED``."""
    with ThreadPoolExecutor(jobs) as pool:
        list(
            pool.map(
                lambda j: _run(out / f"{j[0]}-s{j[1]}", space, space_opts, *methods[j[0]], j[1]),
                [(name, seed) for name in methods for seed in seeds],
            )
        )


def _mean_sd(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(sd)}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--space", default="nb201")
    p.add_argument("--space-opt", action="append", default=[])
    p.add_argument("--method", action="append", default=[])
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = {}
    for m in args.method or DEFAULT_METHODS:
        name, _, spec = m.partition("=")
        relax, *opts = spec.split(",")
        methods[name] = (relax, opts)
    run_all(args.out, args.space, args.space_opt, methods, seeds, args.jobs)
    print(
        "| method | table accuracy | parameter-free edges | derived in supernet | gap | search s | cells |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in methods:
        rows = []
        for s in seeds:
            d = args.out / f"{name}-s{s}"
            metrics = json.loads((d / "metrics.json").read_text())
            spec = json.loads((d / "genotype.json").read_text())["spec"]
            ops = list(spec["choices"].values())
            rows.append((metrics, ops))
        table = [m.get("table_accuracy") for m, _ in rows]
        free = [sum(op in PARAMETER_FREE for op in ops) for _, ops in rows]
        print(
            f"| {name} | {_mean_sd([t for t in table if t is not None])} "
            f"| {_mean_sd([float(f) for f in free], '{:.1f}')} "
            f"| {_mean_sd([m['val_accuracy_discrete'] for m, _ in rows], '{:.3f}')} "
            f"| {_mean_sd([m.get('discretisation_gap', float('nan')) for m, _ in rows], '{:.3f}')} "
            f"| {_mean_sd([m['search_seconds'] for m, _ in rows], '{:.0f}')} "
            f"| {'; '.join('/'.join(ops) for _, ops in rows)} |"
        )


if __name__ == "__main__":
    main()
