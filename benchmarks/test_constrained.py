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

from nasplug.core import registry
from nasplug.core.types import LinearConstraint, Task
from nasplug.run.budget import budget_constraints, cost_range
from nasplug.searchlib.costs import candidate_costs
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.polytope import cap_constraints

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
    costs = {"params": candidate_costs(space, TASK, "params")}
    least, largest = cost_range(space, costs["params"])
    return caps + budget_constraints(space, costs, {"params": least + 0.5 * (largest - least)})


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
