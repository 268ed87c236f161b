"""Peak memory (RSS) of one first-order search step of the cell supernet, one fresh process each.

Every configuration (relaxation x state x batch x memory saver) runs in its own Python process,
which builds the supernet, takes one warm-up step and one more, and reports its peak resident set
size (``resource.getrusage(...).ru_maxrss``): a fresh process is the only way to read a peak that
earlier configurations did not set. ``before step`` is the peak after building the model and the
data, ``step`` the growth a search step adds to it.

Sizes by default: C=16, 8 cells, 3x32x32 random input, 10 classes, 2 threads (the reference
sizes of docs/benchmarks.md).
States: ``fresh`` (DARTS's near-uniform initial logits) and ``sparse`` (two candidates per edge
far above the others: sparsemax keeps exactly two). ``saver on`` is the cell space's
``checkpoint_cells`` option.

Run::

    python benchmarks/peak_memory.py                       # the full table (minutes)
    python benchmarks/peak_memory.py --batch 64 --relax softmax,sparsemax --state sparse
    python benchmarks/peak_memory.py --channels 4 --layers 2 --batch 8 --relax softmax   # smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import torch
from test_search_step import set_sparse  # noqa: E402


def build_step(
    relax: str,
    state: str,
    batch: int,
    saver: bool,
    *,
    channels: int = 16,
    layers: int = 8,
    threads: int = 2,
) -> Any:
    """A function that takes one first-order search step of the cell supernet (no warm-up)."""
    from nasplug.core import registry
    from nasplug.core.types import Data, Task
    from nasplug.engine.trainer import Trainer
    from nasplug.searchlib.logits import ArchLogits
    from nasplug.searchlib.supernet import SupernetStepper

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    task = Task("classification", (3, 32, 32), 10)
    x = torch.randn(batch * 2, 3, 32, 32)
    y = torch.randint(0, 10, (batch * 2,))
    trainer = Trainer(Data(task, (x, y), (x[:batch], y[:batch])), device="cpu", quiet=True)
    space = registry.load("space", "cell")(channels=channels, layers=layers, checkpoint_cells=saver)
    net = trainer.place(space.supernet(task))
    logits = trainer.place(ArchLogits(space.choices()))
    if state == "sparse":
        set_sparse(logits, space.choices())
    elif state != "fresh":
        raise ValueError(f"unknown state {state!r}; accepted: fresh, sparse")
    stepper = SupernetStepper(trainer, registry.load("relaxation", relax)(), net, logits)
    w, a = trainer.splits["weight"], trainer.splits["arch"]
    wb, ab = (w[0][:batch], w[1][:batch]), (a[0][:batch], a[1][:batch])
    return lambda: stepper.step(wb, ab)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    step = build_step(
        cfg["relax"],
        cfg["state"],
        cfg["batch"],
        cfg["saver"],
        channels=cfg["channels"],
        layers=cfg["layers"],
        threads=cfg["threads"],
    )
    before = _peak_mb()
    step()  # warm-up: first-use allocations belong to the peak of any real search too
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    return {**cfg, "before_mb": before, "peak_mb": _peak_mb(), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--relax", default="softmax,sparsemax,entmax15,gumbel-hard")
    p.add_argument("--state", default="fresh,sparse")
    p.add_argument("--batch", default="16,64")
    p.add_argument("--saver", default="off,on", help="memory saver settings to run: off, on")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    savers = {"off": False, "on": True}
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        for state in args.state.split(","):
            for relax in args.relax.split(","):
                for saver in args.saver.split(","):
                    cfg = {
                        "relax": relax,
                        "state": state,
                        "batch": batch,
                        "saver": savers[saver],
                        "channels": args.channels,
                        "layers": args.layers,
                        "threads": args.threads,
                    }
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", json.dumps(cfg)],
                        capture_output=True,
                        text=True,
                    )
                    if out.returncode != 0:
                        print(f"failed: {cfg}\n{out.stderr[-2000:]}", file=sys.stderr)
                        return 1
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(f"done: {relax} {state} b{batch} saver {saver}", file=sys.stderr)
    dense = {
        r["batch"]: r["peak_mb"]
        for r in rows
        if r["relax"] == "softmax" and r["state"] == "fresh" and not r["saver"]
    }
    print(
        f"\nPeak RSS of one search step, C={args.channels}, {args.layers} cells, 3x32x32, "
        f"{args.threads} threads (one fresh process per row)\n"
    )
    print(
        "| batch | state | relaxation | memory saver | before step MB | step MB | peak MB "
        "| vs dense softmax | step s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = f"{r['peak_mb'] / dense[r['batch']]:.2f}x" if r["batch"] in dense else "-"
        print(
            f"| {r['batch']} | {r['state']} | {r['relax']} | {'on' if r['saver'] else 'off'} "
            f"| {r['before_mb']:.0f} | {r['peak_mb'] - r['before_mb']:.0f} | {r['peak_mb']:.0f} "
            f"| {ratio} | {r['seconds']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
