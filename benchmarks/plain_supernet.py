"""nasplug's dense search step next to a plain PyTorch DARTS supernet with the exact levers.

The levers that keep a DARTS step exact and make it fast on a CPU are these: ``none``
never computed, channels_last model and input, the weights frozen during the architecture step
and the architecture frozen during the weight step. The plain supernet here has exactly those
and nothing else: the cell space's reference path (``CellSpace(impl="reference")``), where every
op of every edge is its own module chain (DARTS's ``MixedOp``) of torch's own modules, mixed as
``sum(w * op(x))``, with native dilated convolutions. It is the baseline for nasplug's own
supernet-level work (``nasplug_builtins.spaces.cell.fast``: shared ReLU, pooling and polyphase splits per
state, the mixing weight folded into BatchNorm, dense gradients out of the cell's
concatenation), on whatever machine runs it: absolute times differ a lot between CPUs (AVX-512
against AVX2 alone).

Both steps use the same sizes (C=16, 8 cells, 4 nodes, 3x32x32, 10 classes, 2 threads), the same
optimisers and gradient clipping; they are interleaved after warm-up and medians are printed::

    python benchmarks/plain_supernet.py --batch 16 --rounds 5
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nasplug.core.types import Task
from nasplug.searchlib import supernet_defaults as defaults
from nasplug_builtins.spaces.cell import CellSpace

CHANNELS, CELLS, NODES, CLASSES = 16, 8, 4, 10
TASK = Task("classification", (3, 32, 32), CLASSES)


def darts_optimisers(
    weights: list[nn.Parameter], arch: list[nn.Parameter]
) -> tuple[torch.optim.SGD, torch.optim.Adam]:
    """DARTS's optimisers with nasplug's supernet defaults: SGD of the weights, Adam of the logits."""
    w_opt = torch.optim.SGD(
        weights,
        lr=defaults.W_LR,
        momentum=defaults.W_MOMENTUM,
        weight_decay=defaults.W_WEIGHT_DECAY,
    )
    a_opt = torch.optim.Adam(
        arch, lr=defaults.A_LR, betas=defaults.A_BETAS, weight_decay=defaults.A_WEIGHT_DECAY
    )
    return w_opt, a_opt


def plain_step(batch: int) -> Callable[[], None]:
    """One first-order DARTS step of the plain supernet, with DARTS's optimisers."""
    torch.manual_seed(0)
    space = CellSpace(channels=CHANNELS, layers=CELLS, nodes=NODES, impl="reference")
    net = space.supernet(TASK)
    # ``none`` has a logit: it takes softmax mass but is never computed.
    alphas = {c.name: nn.Parameter(1e-3 * torch.randn(len(c.candidates))) for c in space.choices()}
    arch = list(alphas.values())
    weights = list(net.parameters())
    w_opt, a_opt = darts_optimisers(weights, arch)
    x = torch.randn(2 * batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (2 * batch,))

    def half_step(
        frozen: list[nn.Parameter],
        opt: torch.optim.Optimizer,
        part: slice,
        clip: list[nn.Parameter] | None,
    ) -> None:
        for p in frozen:
            p.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        mixing = {name: F.softmax(a, -1) for name, a in alphas.items()}
        F.cross_entropy(net(x[part], mixing), y[part]).backward()
        if clip:
            nn.utils.clip_grad_norm_(clip, 5.0)
        opt.step()
        for p in frozen:
            p.requires_grad_(True)

    def step() -> None:
        half_step(weights, a_opt, slice(batch, None), None)
        half_step(arch, w_opt, slice(None, batch), weights)

    return step


def nasplug_step(batch: int) -> Callable[[], None]:
    # peak_memory.py is a script next to this file, not an installed module.
    spec = importlib.util.spec_from_file_location(
        "peak_memory", Path(__file__).with_name("peak_memory.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_step("softmax", "fresh", batch, False, channels=CHANNELS, layers=CELLS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {
        "plain supernet, exact levers": plain_step(args.batch),
        "nasplug softmax": nasplug_step(args.batch),
    }
    torch.set_num_threads(args.threads)
    for step in steps.values():
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain supernet, exact levers"])
    print(
        f"\nbatch {args.batch}, {args.threads} threads, medians of {args.rounds} interleaved "
        f"rounds\n\n| step | s | speed-up over plain |\n| --- | ---: | ---: |"
    )
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.3f} | {base / statistics.median(ts):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
