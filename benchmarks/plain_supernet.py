"""nasplug's dense search step next to a plain PyTorch DARTS supernet with the exact levers.

The levers that keep a DARTS step exact and make it fast on a CPU are these: ``none``
never computed, channels_last model and input, the weights frozen during the architecture step
and the architecture frozen during the weight step. The plain supernet here has exactly those
and nothing else: every op of every edge is its own module chain (DARTS's ``MixedOp``), mixed as
``sum(w * op(x))``, with native dilated convolutions. It is the baseline for nasplug's own
supernet-level work (shared ReLU, pooling and polyphase splits per state, the mixing weight
folded into BatchNorm, dense gradients out of the cell's concatenation), on whatever machine
runs it: absolute times differ a lot between CPUs (AVX-512 against AVX2 alone).

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

CHANNELS, CELLS, NODES, CLASSES = 16, 8, 4, 10
PRIMITIVES = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)  # DARTS's eight without ``none``


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=False)


def _conv_block(
    c_in: int, c_out: int, k: int, stride: int, pad: int, dilation: int
) -> list[nn.Module]:
    return [
        nn.ReLU(),
        nn.Conv2d(c_in, c_in, k, stride, pad, dilation, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        _bn(c_out),
    ]


class _Reduce(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.b = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.bn(torch.cat([self.a(x), self.b(x[:, :, 1:, 1:])], 1))


def _op(name: str, c: int, stride: int) -> nn.Module:
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride, 1), _bn(c))
    if name == "avg_pool_3x3":
        return nn.Sequential(nn.AvgPool2d(3, stride, 1, count_include_pad=False), _bn(c))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else _Reduce(c, c)
    k = int(name[-1])
    if name.startswith("sep"):
        return nn.Sequential(
            *_conv_block(c, c, k, stride, k // 2, 1), *_conv_block(c, c, k, 1, k // 2, 1)
        )
    return nn.Sequential(*_conv_block(c, c, k, stride, k - 1, 2))


class _Cell(nn.Module):
    def __init__(self, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0 = (
            _Reduce(c_pp, c)
            if reduction_prev
            else nn.Sequential(nn.ReLU(), nn.Conv2d(c_pp, c, 1, bias=False), _bn(c))
        )
        self.pre1 = nn.Sequential(nn.ReLU(), nn.Conv2d(c_p, c, 1, bias=False), _bn(c))
        self.edges = nn.ModuleList(
            nn.ModuleList(_op(p, c, 2 if reduction and j < 2 else 1) for p in PRIMITIVES)
            for i in range(NODES)
            for j in range(2 + i)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        states, e = [self.pre0(s0), self.pre1(s1)], 0
        for _ in range(NODES):
            node = 0
            for h in list(states):
                node = node + sum(w[e, k] * op(h) for k, op in enumerate(self.edges[e]))
                e += 1
            states.append(node)
        return torch.cat(states[2:], 1)


class PlainSupernet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c_stem = 3 * CHANNELS
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), _bn(c_stem))
        c_pp, c_p, c, cells, reduction_prev = c_stem, c_stem, CHANNELS, [], False
        for i in range(CELLS):
            reduction = i in (CELLS // 3, 2 * CELLS // 3)
            c = 2 * c if reduction else c
            cells.append(_Cell(c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev, c_pp, c_p = reduction, c_p, NODES * c
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_p, CLASSES)
        edges = sum(2 + i for i in range(NODES))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(edges, len(PRIMITIVES) + 1))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(edges, len(PRIMITIVES) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Column 0 is ``none``: it takes softmax mass but is never computed.
        normal = F.softmax(self.alpha_normal, -1)[:, 1:]
        reduce = F.softmax(self.alpha_reduce, -1)[:, 1:]
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def plain_step(batch: int) -> Callable[[], None]:
    """One first-order DARTS step of the plain supernet, with DARTS's optimisers."""
    torch.manual_seed(0)
    net = PlainSupernet().to(memory_format=torch.channels_last)
    arch = [net.alpha_normal, net.alpha_reduce]
    weights = [p for name, p in net.named_parameters() if not name.startswith("alpha")]
    w_opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(arch, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
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
        F.cross_entropy(net(x[part]), y[part]).backward()
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
