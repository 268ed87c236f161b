"""Rebuild the embedded default dataset, ``nasplug_builtins/datasets/data/fashion_mnist_small.npz``.

Usage::

    python tools/make_embedded_data.py [IDX_FOLDER] [--out FILE] [--seed 0]

``IDX_FOLDER`` holds Fashion-MNIST's four IDX files, gzipped or not (default:
/usr/share/datasets/fashion-mnist, where Debian's dataset-fashion-mnist package installs them;
they are also at https://github.com/zalandoresearch/fashion-mnist). The data is MIT-licensed by
Zalando SE; its notice ships as ``nasplug_builtins/datasets/data/FASHION_MNIST_LICENSE.txt``.

The output keeps 1000 train and 200 test images per class, drawn with a fixed seed, as uint8 in
one compressed ``.npz``:

- ``x_train`` (10000, 28, 28) uint8, ``y_train`` (10000,) uint8
- ``x_test`` (2000, 28, 28) uint8, ``y_test`` (2000,) uint8
- ``train_index``, ``test_index``: the positions of those images in the original files

Images are stored in a random order, so the first ``k`` images of every class are a random,
class-balanced subset, and smaller subsets are nested in larger ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nasplug_builtins.datasets.embedded import (
    EMBEDDED,
    SHIPPED_TEST_PER_CLASS,
    SHIPPED_TRAIN_PER_CLASS,
)
from nasplug_builtins.datasets.torchvision_sets import DEBIAN_FASHION_MNIST, read_idx


def balanced_sample(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` random examples of every class, in a random order."""
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return rng.permutation(np.concatenate(picks))


def find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"no {stem}[.gz] in {folder}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEBIAN_FASHION_MNIST)
    parser.add_argument("--out", type=Path, default=EMBEDDED)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    arrays = {}
    for split, prefix, per_class in (
        ("train", "train", SHIPPED_TRAIN_PER_CLASS),
        ("test", "t10k", SHIPPED_TEST_PER_CLASS),
    ):
        x = read_idx(find(args.folder, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(find(args.folder, f"{prefix}-labels-idx1-ubyte"))
        index = balanced_sample(y, per_class, rng)
        arrays.update(
            {
                f"x_{split}": x[index],
                f"y_{split}": y[index],
                f"{split}_index": index.astype(np.uint16),
            }
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
        + ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    )


if __name__ == "__main__":
    main()
