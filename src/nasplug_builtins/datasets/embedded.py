"""The embedded offline default, a class-balanced Fashion-MNIST subset shipped in ``data/``,
and the multi-label pairs made from it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nasplug.core.interfaces import Dataset
from nasplug.core.types import Data
from nasplug.engine.userdata import Split
from nasplug.engine.userdata import build as _build

from ._common import FASHION_MNIST_CLASSES, check_range, take_per_class

__all__ = ["FashionMnistMultilabel", "FashionMnistSmall"]

#: The embedded default: a class-balanced subset of Fashion-MNIST as uint8 (see the licence
#: notice next to it and tools/make_embedded_data.py, which rebuilds it).
EMBEDDED = Path(__file__).with_name("data") / "fashion_mnist_small.npz"
SHIPPED_TRAIN_PER_CLASS = 1000
SHIPPED_TEST_PER_CLASS = 200


class FashionMnistSmall(Dataset):
    """The embedded offline default: class-balanced Fashion-MNIST, 1x28x28, 10 classes.

    Ships 1000 train and 200 test images per class. Smaller subsets stay balanced and are
    deterministic and nested: the first ``k`` stored images of every class. The default takes
    250 train images per class, so that the default search finishes in about 5 minutes on two
    CPU cores; ``train_per_class=1000`` uses everything shipped.

    Args:
        train_per_class: train images per class, 1 to 1000.
        test_per_class: test images per class, 1 to 200.
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {"train_per_class": 3, "test_per_class": 2}

    def __init__(
        self, train_per_class: int = 250, test_per_class: int = SHIPPED_TEST_PER_CLASS
    ) -> None:
        name = "fashion-mnist-small"
        check_range(name, "train_per_class", train_per_class, 1, SHIPPED_TRAIN_PER_CLASS)
        check_range(name, "test_per_class", test_per_class, 1, SHIPPED_TEST_PER_CLASS)
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class

    def load(self) -> Data:
        train, test = _embedded()
        train = take_per_class(
            "fashion-mnist-small", "train_per_class", train, self.train_per_class
        )
        test = take_per_class("fashion-mnist-small", "test_per_class", test, self.test_per_class)
        return _build(
            "fashion-mnist-small",
            "classification",
            {"train": (train[0][:, None], train[1]), "test": (test[0][:, None], test[1])},
            labels=FASHION_MNIST_CLASSES,
        )


class FashionMnistMultilabel(Dataset):
    """Multi-label data from the embedded images: two items side by side, 1x28x56.

    The labels are the classes present (10 labels; one or two positives, one when both items
    share a class). Train pairs come from the embedded train images, test pairs from the test
    images, both drawn with ``seed``.

    Args:
        train_size: number of train pairs.
        test_size: number of test pairs.
        seed: seed of the pairing.
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {"train_size": 20, "test_size": 10}

    def __init__(self, train_size: int = 5000, test_size: int = 1000, seed: int = 0) -> None:
        check_range("fashion-mnist-multilabel", "train_size", train_size, 1)
        check_range("fashion-mnist-multilabel", "test_size", test_size, 1)
        self.train_size = train_size
        self.test_size = test_size
        self.seed = seed

    def load(self) -> Data:
        train, test = _embedded()
        rng = np.random.default_rng(self.seed)
        splits = {
            "train": _pairs(train, self.train_size, rng),
            "test": _pairs(test, self.test_size, rng),
        }
        return _build(
            "fashion-mnist-multilabel", "multilabel", splits, labels=FASHION_MNIST_CLASSES
        )


def _embedded() -> tuple[Split, Split]:
    if not EMBEDDED.is_file():
        raise ValueError(
            f"the embedded dataset {EMBEDDED} is missing; "
            "rebuild it with tools/make_embedded_data.py"
        )
    with np.load(EMBEDDED) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def _pairs(split: Split, n: int, rng: np.random.Generator) -> Split:
    """``n`` random pairs of images side by side, with the classes present as 0/1 targets."""
    x, y = split
    a, b = rng.integers(len(x), size=(2, n))
    targets = np.zeros((n, len(FASHION_MNIST_CLASSES)), dtype=np.float32)
    rows = np.arange(n)
    targets[rows, y[a]] = 1.0
    targets[rows, y[b]] = 1.0
    return np.concatenate([x[a], x[b]], axis=2)[:, None], targets
