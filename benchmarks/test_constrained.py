"""What constraints on the DARTS cell space's architecture cost: weighing it (grouped sparsemax,
``ArchLogits.weights``) and one first-order search step, with no constraint, with a cap of 2
parameter-free ops per cell, and with that cap plus a parameter budget half way between the
least and the largest the cells' ops can cost (a constraint spanning all 8 nodes of both cells).

States: ``start`` (DARTS's near-uniform logits, ``tau = 1``) and ``annealed`` (logits 0.05 apart
at random, ``tau`` about 0.003, late in the soft phase, where a projection under several
constraints works hardest). The search step is the one of benchmarks/test_search_step.py (C=16,
8 cells, 3x32x32 input, batch 16) at the start, on one thread. Run with::

    OMP_NUM_THREADS=1 python -m pytest benchmarks/test_constrained.py \\
        --benchmark-columns=mean,min,max,rounds
"""

from __future__ import annotations

import functools

import pytest
import torch
from test_search_step import make_stepper

from nasplug import registry
from nasplug.costs import candidate_costs
from nasplug.interfaces import SearchSpace
from nasplug.logits import ArchLogits
from nasplug.polytope import cap_constraints
from nasplug.types import LinearConstraint, Task

CASES = ["none", "cap=2", "cap=2+params"]
TASK = Task("classification", (3, 32, 32), 10)


@functools.cache
def constraints(case: str) -> tuple[LinearConstraint, ...]:
    if case == "none":
        return ()
    space = registry.load("space", "cell")()
    caps = cap_constraints(space.parameter_free(), 2)
    if case == "cap=2":
        return caps
    costs = candidate_costs(space, TASK, "params")
    least, largest = _extremes(space, costs.entries)
    # The budget is fixed + least + half the range; the constraint bounds what the ops add.
    terms = tuple((c, op, v) for (c, op), v in costs.entries.items() if v > 0)
    return caps + (LinearConstraint("params", terms, least + 0.5 * (largest - least)),)


def _extremes(space: SearchSpace, entries: dict[tuple[str, str], float]) -> tuple[float, float]:
    """The least and the largest the ops of a genotype can cost: per node, its k cheapest and
    its k dearest edges at their cheapest and dearest op."""
    candidates = {c.name: c.candidates for c in space.choices()}
    least = largest = 0.0
    for g in space.groups():
        ops = [
            [entries.get((n, op), 0.0) for op in candidates[n] if op != g.unused] for n in g.choices
        ]
        least += sum(sorted(min(o) for o in ops)[: g.k])
        largest += sum(sorted((max(o) for o in ops), reverse=True)[: g.k])
    return least, largest


@pytest.mark.parametrize("state", ["start", "annealed"])
@pytest.mark.parametrize("case", CASES)
def test_weights(benchmark, case, state):
    torch.set_num_threads(1)
    space = registry.load("space", "cell")()
    relax = registry.load("relaxation", "sparsemax")()
    torch.manual_seed(0)
    logits = ArchLogits(space.choices(), groups=space.groups(), constraints=constraints(case))
    if state == "annealed":
        with torch.no_grad():
            for p in logits.parameters():
                p.copy_(0.05 * torch.randn(p.shape))
        relax.on_epoch(3, 8)
    benchmark.group = f"weights {state}"
    benchmark.extra_info.update(constraints=case, state=state)
    benchmark.pedantic(logits.weights, args=(relax,), warmup_rounds=2, rounds=20)


@pytest.mark.parametrize("case", CASES)
def test_search_step(benchmark, case):
    stepper, wb, ab, _ = make_stepper(
        "sparsemax", 16, "fresh", grouped=True, constraints=constraints(case), threads=1
    )
    benchmark.group = "search step b16 start"
    benchmark.extra_info.update(constraints=case)
    benchmark.pedantic(stepper.step, args=(wb, ab), warmup_rounds=1, rounds=5)
