"""Bounded memory and throughput of the streaming path, on a generated folder of PNG images.

Writes ``--images`` random 64x64 PNG images (10 classes) once into a cache folder (default
``$TMPDIR/nasplug-bench-images``), then:

- peak RSS: a fresh process per folder size (``--sizes``) takes ``--steps`` first-order search
  steps of a tiny cell supernet and ``--steps`` training steps of a discrete network, streaming
  (2 workers); it reports the peak resident set size of the process and of its workers. It must
  not grow with the number of images.
- throughput: images per second of search steps on the first ``--resident-images`` images,
  streaming (``--workers``) and resident, interleaved ``--rounds`` times in one process so that
  the ratio is fair on a shared machine. Target: streaming at least 0.8x resident.

Run::

    python benchmarks/streaming.py                                  # 50,000 images (minutes)
    python benchmarks/streaming.py --images 2000 --sizes 500,2000 --resident-images 1000 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 10


def image_folder(root: Path, n: int) -> Path:
    """A folder of ``n`` random 64x64 RGB PNGs in ``CLASSES`` subfolders, written once."""
    from PIL import Image

    folder = root / str(n)
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(0)
    for i in range(n):
        cls = folder / f"c{i % CLASSES}"
        cls.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(cls / f"{i}.png", compress_level=1)
    done.write_text("")
    return folder


def _setup(
    folder: Path, stream: str, workers: int, limit: int = 0, size: int = 64
) -> tuple[Any, Any]:
    import torch

    from nasplug.engine.trainer import Trainer
    from nasplug_builtins.datasets import ImageFolder

    data = ImageFolder(path=str(folder), size=size, mean="127.5", std="73.9").load()
    if limit:
        data = type(data)(
            data.task,
            torch.utils.data.Subset(data.train, range(min(limit, len(data.train)))),
            torch.utils.data.Subset(data.test, range(min(limit // 4, len(data.test)))),
            name=data.name,
            mean=data.mean,
            std=data.std,
        )
    return data, Trainer(data, device="cpu", quiet=True, stream=stream, workers=workers)


def _search_steps(trainer: Any, steps: int, batch: int) -> int:
    """``steps`` first-order search steps of a tiny cell supernet; returns images read."""
    from nasplug.searchlib.logits import ArchLogits
    from nasplug.searchlib.supernet import SupernetStepper
    from nasplug_builtins.relaxations import Softmax
    from nasplug_builtins.spaces.cell import CellSpace

    space = CellSpace(channels=4, layers=2, nodes=2)
    net = trainer.place(space.supernet(trainer.task))
    logits = trainer.place(ArchLogits(space.choices(), groups=space.groups()))
    stepper = SupernetStepper(trainer, Softmax(), net, logits)
    seen = 0
    pairs = zip(
        trainer.batches("weight", batch, stream=0),
        trainer.batches("arch", batch, stream=1),
        strict=False,
    )
    for i, (w, a) in enumerate(pairs):
        if i == steps:
            break
        stepper.step(w, a)
        seen += len(w[0]) + len(a[0])
    return seen


def _train_steps(trainer: Any, steps: int, batch: int) -> None:
    import torch
    from torch import nn

    model = trainer.place(
        nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 10)
        )
    )
    opt = None
    for i, (x, t) in enumerate(trainer.batches("train", batch, cutout=trainer.cutout_size())):
        if i == steps:
            break
        loss = trainer.loss(model(x), t)
        opt = opt or torch.optim.SGD(model.parameters(), lr=0.01)
        trainer.update(loss, opt, list(model.parameters()))


def _rss_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": own, "peak_worker_rss_mb": workers}


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    _, trainer = _setup(Path(cfg["folder"]), "on", cfg["workers"], size=cfg["size"])
    _search_steps(trainer, cfg["steps"], cfg["batch"])
    _train_steps(trainer, cfg["steps"], cfg["batch"])
    return {"images": cfg["images"], **_rss_mb()}


def throughput(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Images per second of search steps, streaming and resident, interleaved; both with
    torch's default threads, as a user runs them."""
    trainers = {
        "resident": _setup(folder, "off", args.workers, args.resident_images, args.size)[1],
        "streaming": _setup(folder, "on", args.workers, args.resident_images, args.size)[1],
    }
    rates: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            t0 = time.perf_counter()
            seen = _search_steps(trainer, args.steps, args.batch)
            rates[name].append(seen / (time.perf_counter() - t0))
    best = {k: max(v) for k, v in rates.items()}
    return {
        "images_per_second": rates,
        "best": best,
        "streaming_over_resident": best["streaming"] / best["resident"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--sizes", default="10000,50000", help="folder sizes of the peak-RSS runs")
    p.add_argument("--resident-images", type=int, default=5000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=64, help="side the images are read at")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "nasplug-bench-images"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        folder = image_folder(Path(args.cache), n)
        cfg = {
            "folder": str(folder),
            "images": n,
            "steps": args.steps,
            "batch": args.batch,
            "workers": args.workers,
            "size": args.size,
        }
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(cfg)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    largest = image_folder(Path(args.cache), max(sizes + [args.images]))
    print(json.dumps(throughput(largest, args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
