"""One first-order DARTS search step of the cell supernet, for every registered relaxation.

Sizes of the step measurements in docs/benchmarks.md: C=16, 8 cells, 3x32x32 random input,
10 classes, 2 threads. States: ``fresh`` (DARTS's near-uniform init), ``sparse`` (logits set so
that per-edge sparsemax keeps two candidates per edge) and ``vertex`` (the cell's nodes grouped
and the relaxation at its last step: a group-aware relaxation's final hard phase, two edges per
node with one op each, and no architecture step where the relaxation is frozen). Run with::

    python -m pytest benchmarks/test_search_step.py --benchmark-columns=median,min,max,rounds
"""

from __future__ import annotations

import pytest
import torch

from nasplug.core import registry
from nasplug.core.types import Data, LinearConstraint, Task
from nasplug.engine.trainer import Trainer
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.supernet import SupernetStepper

RELAXATIONS = registry.names("relaxation")
BATCHES = [16, 64]


def make_stepper(
    relax_name: str,
    batch: int,
    state: str,
    *,
    layers: int = 8,
    channels: int = 16,
    grouped: bool = False,
    constraints: tuple[LinearConstraint, ...] = (),
    threads: int = 2,
):
    """A stepper in ``state``; ``grouped``: the cell's nodes grouped whatever the state (and
    under ``constraints``)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    task = Task("classification", (3, 32, 32), 10)
    x = torch.randn(batch * 2, 3, 32, 32)
    y = torch.randint(0, 10, (batch * 2,))
    trainer = Trainer(Data(task, (x, y), (x[:batch], y[:batch])), device="cpu", quiet=True)
    space = registry.load("space", "cell")(channels=channels, layers=layers)
    relax = registry.load("relaxation", relax_name)()
    net = trainer.place(space.supernet(task))
    groups = space.groups() if state == "vertex" or grouped else ()
    logits = trainer.place(ArchLogits(space.choices(), groups=groups, constraints=constraints))
    if state in ("sparse", "vertex"):
        set_sparse(logits, space.choices())
    if state == "vertex":
        relax.on_epoch(7, 8)
        relax.on_step(99, 100)
    stepper = SupernetStepper(trainer, relax, net, logits)
    w, a = trainer.splits["weight"], trainer.splits["arch"]
    return stepper, (w[0][:batch], w[1][:batch]), (a[0][:batch], a[1][:batch]), relax


def set_sparse(logits: ArchLogits, choices, keep: int = 2) -> None:
    """Two candidates per edge (never ``none``) far above the others: sparsemax keeps exactly two."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for c, row in zip(choices, logits.logits, strict=True):
            row.zero_()
            options = [i for i, name in enumerate(c.candidates) if name != "none"]
            for i in torch.randperm(len(options), generator=g)[:keep].tolist():
                row[options[i]] = 10.0


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("state", ["fresh", "sparse", "vertex"])
@pytest.mark.parametrize("relax_name", RELAXATIONS)
def test_search_step(benchmark, relax_name, state, batch):
    stepper, wb, ab, relax = make_stepper(relax_name, batch, state)
    benchmark.group = f"search step b{batch} {state}"
    benchmark.extra_info.update(relaxation=relax_name, state=state, batch=batch)
    benchmark.pedantic(stepper.step, args=(wb, ab), warmup_rounds=2, rounds=5)
