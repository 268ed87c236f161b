"""What the built-in datasets share: option checks, balanced subsets, one-line errors and
the torchvision import."""

from __future__ import annotations

from typing import Any

import numpy as np

from nasplug.engine.userdata import Split

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def take_per_class(name: str, option: str, split: Split, k: int) -> Split:
    """The first ``k`` examples of every class, in stored order (``k == 0``: all)."""
    x, y = split
    if k == 0:
        return split
    counts = np.bincount(y.astype(np.int64))
    if counts.size and counts.min() < k:
        short = int(np.argmin(counts))
        raise ValueError(
            f"{name}: {option}={k} but class {short} has only {counts[short]} examples; "
            f"accepted: at most {counts.min()}"
        )
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:k] for c in range(counts.size)]))
    return x[keep], y[keep]


def check_range(name: str, option: str, value: int, low: int, high: int | None = None) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        upper = f" to {high}" if high is not None else " or more"
        raise ValueError(
            f"{name}: {option}={value!r} is out of range; accepted: an integer {low}{upper}"
        )


def check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"{name}: test_fraction={value!r} is out of range; accepted: a number between 0 and 1"
        )


def import_torchvision(name: str, hint: str) -> Any:
    try:
        import torchvision
        import torchvision.datasets
    except ImportError as e:
        extra = f", or {hint}" if hint else ""
        raise ValueError(
            f"{name} needs torchvision, which is not installed: pip install torchvision{extra}"
        ) from e
    return torchvision
