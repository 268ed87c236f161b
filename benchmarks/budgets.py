"""Budgets met by construction against a ProxylessNAS-style soft penalty, scored by a table.

Usage::

    python benchmarks/budgets.py OUT_DIR [--space nb201] [--space-opt KEY=VALUE ...]
        [--resource params] [--shares 0.25,0.5,0.75] [--lambdas 0.1,1,10]
        [--relax sparsemax] [--seeds 0,1,2] [--jobs 2]

For each share ``s`` the budget is ``least + s * (largest - least)``, the least and the largest
cost of a network the space can derive (:func:`nasplug.run.budget.cost_range`). At each budget it
runs the search with ``--budget`` (met inside the relaxation's projection) and with
``--budget-penalty LAMBDA`` for every lambda (the same relaxation, the budget only penalised),
plus one search without a budget, each a real ``nasplug run`` per seed (see
``benchmarks/oneshot_table.py``, whose runner it uses: ``--jobs`` processes with
``OMP_NUM_THREADS=1``; a finished run directory is reused).

Per method the table gives how many runs met the budget, the derived network's cost, its table
value (the space's benchmark table: trained from scratch by the table's recipe), its accuracy
inside the supernet, and the search time. Below it, per budget: the budgeted search's mean table
value against the best mean, over the lambdas, of the soft penalty's runs that met the budget.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from oneshot_table import _mean_sd, run_all  # noqa: E402


def _cost_range(space: str, space_opts: list[str], resource: str) -> tuple[float, float]:
    from nasplug.core import registry
    from nasplug.core.options import instantiate, parse_pairs
    from nasplug.run.budget import budget_costs, cost_range
    from nasplug.run.data import load_data

    opts = parse_pairs(space_opts, "--space-opt")
    sp = instantiate(registry.load("space", space), opts, f"space {space!r}")
    data = load_data("fashion-mnist-small", {}, None, task=None, test=None)
    costs = budget_costs(sp, data.task, [resource])[resource]
    return cost_range(sp, costs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--space", default="nb201")
    p.add_argument("--space-opt", action="append", default=[])
    p.add_argument("--resource", default="params", choices=["params", "flops"])
    p.add_argument("--shares", default="0.25,0.5,0.75")
    p.add_argument("--lambdas", default="0.1,1,10")
    p.add_argument("--relax", default="sparsemax")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    least, largest = _cost_range(args.space, args.space_opt, args.resource)
    budgets = {
        f"{float(s):.0%}": round(least + float(s) * (largest - least))
        for s in args.shares.split(",")
    }
    lambdas = args.lambdas.split(",")
    methods: dict[str, tuple[str, list[str], int | None]] = {"none": (args.relax, [], None)}
    for share, limit in budgets.items():
        budget = f"run.budget={args.resource}={limit}"
        methods[f"hard-{share}"] = (args.relax, [budget], limit)
        for lam in lambdas:
            methods[f"soft{lam}-{share}"] = (
                args.relax,
                [budget, f"run.budget-penalty={lam}"],
                limit,
            )
    runs = {name: (relax, opts) for name, (relax, opts, _) in methods.items()}
    run_all(args.out, args.space, args.space_opt, runs, seeds, args.jobs)
    print(
        f"{args.resource} of derivable networks: {least:,.0f} to {largest:,.0f}; budgets "
        + ", ".join(f"{share} = {limit:,}" for share, limit in budgets.items())
    )
    print()
    print(
        f"| method | budget | met | {args.resource} | table accuracy | derived in supernet "
        "| gap | search s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    feasible_table: dict[str, list[float]] = {}
    for name, (_, _, limit) in methods.items():
        rows = [json.loads((args.out / f"{name}-s{s}" / "metrics.json").read_text()) for s in seeds]
        cost = [float(m["params"] if args.resource == "params" else m["flops"]) for m in rows]
        met = [limit is None or c <= limit for c in cost]
        feasible_table[name] = [
            m["table_accuracy"]
            for m, ok in zip(rows, met, strict=True)
            if ok and "table_accuracy" in m
        ]
        print(
            f"| {name} | {'' if limit is None else f'{limit:,}'} | {sum(met)}/{len(met)} "
            f"| {_mean_sd(cost, '{:,.0f}')} "
            f"| {_mean_sd([m['table_accuracy'] for m in rows if 'table_accuracy' in m])} "
            f"| {_mean_sd([m['val_accuracy_discrete'] for m in rows], '{:.3f}')} "
            f"| {_mean_sd([m['discretisation_gap'] for m in rows], '{:.3f}')} "
            f"| {_mean_sd([m['search_seconds'] for m in rows], '{:.0f}')} |"
        )
    print()
    print(
        "| budget | budgeted: met, mean table accuracy | soft penalty: best mean of runs that met it |"
    )
    print("| --- | ---: | ---: |")
    for share in budgets:
        hard = feasible_table[f"hard-{share}"]
        soft = {
            lam: feasible_table[f"soft{lam}-{share}"]
            for lam in lambdas
            if feasible_table[f"soft{lam}-{share}"]
        }
        best = max(soft.items(), key=lambda kv: statistics.mean(kv[1]), default=None)
        soft_text = (
            f"{statistics.mean(best[1]):.2f} (lambda {best[0]}, {len(best[1])}/{len(seeds)} met)"
            if best
            else "no run met it"
        )
        hard_text = f"{len(hard)}/{len(seeds)}, {statistics.mean(hard):.2f}" if hard else "none"
        print(f"| {share} | {hard_text} | {soft_text} |")


if __name__ == "__main__":
    main()
