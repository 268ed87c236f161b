"""nasplug's first-order DARTS search step next to NNI 3.0's, at the same sizes, in one session.

Both sides: the DARTS CIFAR cell space with C=16 and 8 cells, 3x32x32 random input, 10 classes,
2 threads; one step is an architecture update (Adam 3e-4 on a validation batch) then a weight
update (SGD 0.025, momentum 0.9, weight decay 3e-4, gradient clipping 5 on a training batch), as
in NNI's ``DartsLightningModule.training_step`` and nasplug's ``SupernetStepper.step``. The NNI
supernet is NNI's own: ``nni.nas.hub.pytorch.DARTS`` turned into a differentiable supernet by
``nni.nas.strategy.DARTS().mutate_model``; the two half-steps are driven directly, without a
Lightning trainer, so that both sides are timed on their supernet steps alone. Steps are
interleaved (NNI, nasplug, NNI, ...) after warm-up, and medians are reported.

NNI is optional and heavy; install it into the environment (or a separate virtual environment
that also has nasplug) with ``pip install nni==3.0 pytorch-lightning``. Without NNI the script
says so and exits 0; ``--only nasplug`` times nasplug alone.

With ``--memory`` every side instead runs alone in a fresh process (a warm-up step, then one
more) and the table gives its peak resident set size: a process's peak cannot be shared.

Run::

    python benchmarks/peer_nni.py                      # both, batch 16 and 64
    python benchmarks/peer_nni.py --memory             # peak RSS, one fresh process per side
    python benchmarks/peer_nni.py --only nasplug --batch 16 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import torch
import torch.nn.functional as F
from plain_supernet import darts_optimisers  # noqa: E402

CHANNELS, CELLS, CLASSES = 16, 8, 10


def nni_available() -> str | None:
    """NNI's version when it can be imported, else None."""
    if importlib.util.find_spec("nni") is None:
        return None
    import nni

    return str(getattr(nni, "__version__", "unknown"))


def nni_step(batch: int, threads: int) -> Callable[[], None]:
    """One first-order DARTS step of NNI 3.0's supernet."""
    from nni.nas.hub.pytorch import DARTS as DartsSpace
    from nni.nas.strategy import DARTS as DartsStrategy

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    strategy = DartsStrategy()
    net = strategy.mutate_model(DartsSpace(width=CHANNELS, num_cells=CELLS, dataset="cifar"))
    arch = _unique(
        list(getattr(strategy, "_arch_parameters", {}).values())
        + [p for m in net.modules() if hasattr(m, "arch_parameters") for p in m.arch_parameters()]
    )
    if not arch:
        raise RuntimeError(
            "found no architecture parameters in NNI's DARTS supernet; this "
            "script is written against NNI 3.0"
        )
    ids = {id(p) for p in arch}
    weights = [p for p in net.parameters() if id(p) not in ids]
    w_opt, a_opt = darts_optimisers(weights, arch)
    (xw, yw), (xa, ya) = _batches(batch)
    net.train()

    def step() -> None:
        a_opt.zero_grad()
        F.cross_entropy(_logits(net(xa)), ya).backward()
        a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(_logits(net(xw)), yw).backward()
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        w_opt.step()

    return step


def nasplug_step(batch: int, threads: int, relax: str) -> Callable[[], None]:
    """One first-order search step of nasplug's cell supernet (``SupernetStepper.step``)."""
    # peak_memory.py is a script next to this file, not an installed module.
    spec = importlib.util.spec_from_file_location(
        "peak_memory", Path(__file__).with_name("peak_memory.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_step(
        relax, "fresh", batch, False, channels=CHANNELS, layers=CELLS, threads=threads
    )


def _unique(params: list[torch.Tensor]) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for p in params:
        seen.setdefault(id(p), p)
    return list(seen.values())


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _batches(batch: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(
        (
            torch.randn(batch, 3, 32, 32, generator=g),
            torch.randint(0, CLASSES, (batch,), generator=g),
        )
        for _ in range(2)
    )


def _timed(step: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def _steps(only: str, batch: int, threads: int, relaxations: str) -> dict[str, Callable[[], None]]:
    steps: dict[str, Callable[[], None]] = {}
    if only in ("both", "nni"):
        steps["NNI DARTS"] = nni_step(batch, threads)
    if only in ("both", "nasplug"):
        for relax in relaxations.split(","):
            steps[f"nasplug {relax}"] = nasplug_step(batch, threads, relax)
    return steps


def _peak_child(side: str, batch: int, threads: int) -> float:
    """Peak RSS in MB of a fresh process that builds ``side``'s step and takes two steps."""
    only, _, relax = side.partition(":")
    step = next(iter(_steps(only, batch, threads, relax or "softmax").values()))
    step()
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _memory_table(args: argparse.Namespace) -> int:
    sides = ([("NNI DARTS", "nni")] if args.only in ("both", "nni") else []) + (
        [(f"nasplug {r}", f"nasplug:{r}") for r in args.relax.split(",")]
        if args.only in ("both", "nasplug")
        else []
    )
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        peaks = {}
        for name, side in sides:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--peak-child",
                    side,
                    "--batch",
                    str(batch),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                print(f"failed: {name} at batch {batch}\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"batch {batch}: {name} peak {peaks[name]:.0f} MB", file=sys.stderr)
        rows.append((batch, peaks))
    print(
        f"\nPeak RSS of a process taking two first-order DARTS steps, C={CHANNELS}, {CELLS} "
        f"cells, 3x32x32, {args.threads} threads; one fresh process per side and batch\n"
    )
    _print_table(rows, "MB", 0, nni_over=False)
    return 0


def _print_table(
    rows: list[tuple[int, dict[str, float]]], unit: str, digits: int, nni_over: bool
) -> None:
    """A Markdown table, a row per batch, with each nasplug value's ratio to NNI's."""
    names = list(rows[0][1])
    ratio = "NNI DARTS" in names and len(names) > 1
    header = [f"{n} {unit}" for n in names]
    if ratio:
        header += [f"NNI / {n}" if nni_over else f"{n} / NNI" for n in names[1:]]
    print("| batch | " + " | ".join(header) + " |")
    print("| --- " * (1 + len(header)) + "|")
    for batch, values in rows:
        cells = [f"{values[n]:.{digits}f}" for n in names]
        if ratio:
            nni = values["NNI DARTS"]
            cells += [f"{nni / values[n] if nni_over else values[n] / nni:.2f}x" for n in names[1:]]
        print(f"| {batch} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["both", "nasplug", "nni"], default="both")
    p.add_argument("--batch", default="16,64", help="comma-separated batch sizes")
    p.add_argument("--relax", default="softmax", help="nasplug relaxations, comma-separated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--memory",
        action="store_true",
        help="peak RSS instead of time, one fresh process per side and batch",
    )
    p.add_argument("--peak-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peak_child:
        print(json.dumps(_peak_child(args.peak_child, int(args.batch), args.threads)))
        return 0

    version = nni_available()
    if args.only != "nasplug" and version is None:
        print(
            "NNI is not installed: peer benchmark skipped (pip install nni==3.0 "
            "pytorch-lightning; or time nasplug alone with --only nasplug)"
        )
        return 0
    if version is not None and args.only != "nasplug" and not version.startswith("3."):
        print(f"note: written against NNI 3.0; found NNI {version}", file=sys.stderr)
    if args.memory:
        return _memory_table(args)

    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        steps = _steps(args.only, batch, args.threads, args.relax)
        for _ in range(args.warmup):
            for step in steps.values():
                step()
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):  # interleaved, so load changes hit every variant alike
            for name, step in steps.items():
                times[name].append(_timed(step))
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        rows.append((batch, medians))
        print(
            f"batch {batch}: " + ", ".join(f"{k} {v:.3f}s" for k, v in medians.items()),
            file=sys.stderr,
        )

    print(
        f"\nOne first-order DARTS step, C={CHANNELS}, {CELLS} cells, 3x32x32, {args.threads} "
        f"threads; medians of {args.rounds} interleaved rounds after {args.warmup} warm-up\n"
    )
    _print_table(rows, "s", 3, nni_over=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
