"""How well a latency table predicts whole networks: relative error over random genotypes.

Builds a space's latency table on the CPU (``nasplug.searchlib.costs.candidate_costs(..., "latency")``,
in a fresh cache directory, timed), reads it back (timed: the reuse), then measures the
whole-network latency of ``--genotypes`` random genotypes the table was not calibrated on, the
way the table times its ops, and compares each with the table's prediction
(``genotype_cost``). Prints one Markdown table: median and worst relative error
``|predicted - measured| / measured``, and the time to build and to reuse the table.

Genotypes are drawn by ``space.sample`` with a seeded ``random.choice`` (as the black-box
strategies draw them), distinct, leaving out the table's calibration genotypes; a space whose
samples need not be candidates of its supernet (``dense``: any DAG, but the choice picks one of
its current blocks) is drawn by ``space.derive`` of seeded random weights instead.

Run on a quiet machine::

    OMP_NUM_THREADS=1 python benchmarks/latency_table.py --space cell --threads 1
    python benchmarks/latency_table.py --space nb201 --space-opt cells=1 --genotypes 5  # smoke
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch

from nasplug.core import registry
from nasplug.core.interfaces import SearchSpace
from nasplug.core.options import instantiate, parse_pairs
from nasplug.core.types import Genotype, Task
from nasplug.engine.rng import fixed_threads
from nasplug.searchlib.costs import (
    calibration_genotypes,
    candidate_costs,
    genotype_cost,
    module_latency,
)

#: The task each built-in space is measured on: CIFAR-sized images, or 32 features.
TASKS = {
    "cell": Task("classification", (3, 32, 32), 10),
    "nb201": Task("classification", (3, 32, 32), 10),
    "dense": Task("classification", (32,), 10),
}


def draw(space: SearchSpace, n: int, seed: int, leave_out: list[Genotype]) -> list[Genotype]:
    """``n`` distinct genotypes of ``space``, none of ``leave_out`` (fewer if it has fewer)."""
    rng = random.Random(seed)
    seen = set(leave_out)
    out: list[Genotype] = []
    for _ in range(100 * n):
        if len(out) == n:
            break
        g = space.sample(lambda name, options: rng.choice(list(options)))
        try:
            space.one_hot(g)
        except ValueError:  # not a candidate of the supernet: derive one from random weights
            gen = torch.Generator().manual_seed(rng.randrange(2**31))
            g = space.derive(
                {c.name: torch.rand(len(c.candidates), generator=gen) for c in space.choices()}
            )
        if g not in seen:
            seen.add(g)
            out.append(g)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="cell")
    p.add_argument("--space-opt", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--genotypes", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1000)
    args = p.parse_args(argv)
    cls = registry.load("space", args.space)
    space = instantiate(cls, parse_pairs(args.space_opt, "--space-opt"), f"space {args.space!r}")
    task = TASKS.get(args.space, Task("classification", (3, 32, 32), 10))
    device = torch.device("cpu")
    with fixed_threads(args.threads), tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        costs = candidate_costs(space, task, "latency", batch=args.batch, cache_dir=cache)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        reused = candidate_costs(space, task, "latency", batch=args.batch, cache_dir=cache)
        reuse_s = time.perf_counter() - started
        assert reused.source["reused"], "the second call reads the table back"
        genotypes = draw(space, args.genotypes, args.seed, calibration_genotypes(space))
        errors = []
        for g in genotypes:
            net = space.build(g, task)
            measured = module_latency(net, (args.batch, *task.input_shape), device)
            errors.append(abs(genotype_cost(space, costs, g) - measured) / measured)
    opts = ", ".join(args.space_opt) or "defaults"
    print(
        "| space | options | batch | threads | genotypes | median rel. error "
        "| worst rel. error | build (s) | reuse (s) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.space} | {opts} | {args.batch} | {args.threads} | {len(errors)} "
        f"| {100 * statistics.median(errors):.1f}% | {100 * max(errors):.1f}% "
        f"| {build_s:.2f} | {reuse_s:.2f} |"
    )
    print(f"\ndevice: {costs.source['device']}, torch {costs.source['torch']}")


if __name__ == "__main__":
    main()
