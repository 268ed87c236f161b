"""The full image sets torchvision knows: MNIST, Fashion-MNIST and CIFAR-10, with optional
balanced subsets."""

from __future__ import annotations

import dataclasses
import gzip
import math
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nasplug.core.errors import one_line
from nasplug.core.interfaces import Dataset
from nasplug.core.types import Data
from nasplug.engine.userdata import Split
from nasplug.engine.userdata import build as _build

from ._common import (
    FASHION_MNIST_CLASSES,
    check_range,
    import_torchvision,
    take_per_class,
)

__all__ = ["Cifar10", "FashionMnist", "Mnist", "read_idx"]

#: Where Debian's dataset-fashion-mnist package installs the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Where torchvision sets are looked for and downloaded when no ``data_dir`` is given.
DEFAULT_ROOT = Path("~/.cache/nasplug/datasets")

MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class _TorchvisionSet(Dataset):
    """A full image-classification set with optional balanced subsets; subclasses read the arrays."""

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``); without a
    #: download the data may be missing, and the tests then skip.
    test_options: ClassVar[Mapping[str, Any]] = {
        "download": False,
        "train_per_class": 3,
        "test_per_class": 2,
    }

    name = ""
    classes: tuple[str, ...] = ()
    #: The augmentation the images suit (``Data.augment``); None: standard.
    augment: str | None = None

    def __init__(
        self,
        data_dir: str = "",
        download: bool = True,
        train_per_class: int = 0,
        test_per_class: int = 0,
    ) -> None:
        check_range(self.name, "train_per_class", train_per_class, 0)
        check_range(self.name, "test_per_class", test_per_class, 0)
        self.data_dir = data_dir
        self.download = download
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class

    def load(self) -> Data:
        train, test = self._arrays()
        train = take_per_class(self.name, "train_per_class", train, self.train_per_class)
        test = take_per_class(self.name, "test_per_class", test, self.test_per_class)
        data = _build(
            self.name, "classification", {"train": train, "test": test}, labels=self.classes
        )
        return dataclasses.replace(data, augment=self.augment)

    def _root(self) -> Path:
        return Path(self.data_dir or DEFAULT_ROOT).expanduser()

    @abstractmethod
    def _arrays(self) -> tuple[Split, Split]:
        """Train and test as uint8 images ``(N, C, H, W)`` and class indices."""


class _IdxSet(_TorchvisionSet):
    """An MNIST-format set: its IDX files are read directly; torchvision only downloads them.

    The files are looked for in ``data_dir`` itself and in torchvision's ``<Name>/raw`` below it.
    """

    torchvision_class = ""
    mirror = ""

    def _arrays(self) -> tuple[Split, Split]:
        root = self._root()
        for folder in (root, root / self.torchvision_class / "raw"):
            files = _idx_files(folder)
            if files:
                return _read_idx_set(files)
        hint = (
            f"fetch {', '.join(f + '.gz' for f in IDX_FILES)} from {self.mirror} and put them in "
            f"{root}"
        )
        x_train, y_train, x_test, y_test = _torchvision_arrays(
            self.name, self.torchvision_class, root, self.download, hint, import_hint=hint
        )
        return (x_train, y_train), (x_test, y_test)


class Mnist(_IdxSet):
    """MNIST handwritten digits, 1x28x28, 10 classes, 60000 train and 10000 test images.

    Searches and training crop without flipping (``augment`` ``no-flip``) unless told.

    Args:
        data_dir: a folder with the four IDX files, or torchvision's root (default:
            ``~/.cache/nasplug/datasets``).
        download: download into ``data_dir`` with torchvision when the files are not there.
        train_per_class: keep the first this many train images of every class (0: all).
        test_per_class: keep the first this many test images of every class (0: all).
    """

    name = "mnist"
    classes = MNIST_CLASSES
    augment = "no-flip"  # a flipped digit is another digit, or none
    torchvision_class = "MNIST"
    mirror = "https://ossci-datasets.s3.amazonaws.com/mnist/"


class FashionMnist(_IdxSet):
    """Full Fashion-MNIST, 1x28x28, 10 classes, 60000 train and 10000 test images.

    Without ``data_dir``, the IDX files that Debian's dataset-fashion-mnist package installs in
    /usr/share/datasets/fashion-mnist are read when present.

    Args:
        data_dir: a folder with the four IDX files, or torchvision's root (default: the Debian
            folder, else ``~/.cache/nasplug/datasets``).
        download: download into ``data_dir`` with torchvision when the files are not there.
        train_per_class: keep the first this many train images of every class (0: all).
        test_per_class: keep the first this many test images of every class (0: all).
    """

    name = "fashion-mnist"
    classes = FASHION_MNIST_CLASSES
    torchvision_class = "FashionMNIST"
    mirror = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

    def _root(self) -> Path:
        if not self.data_dir and _idx_files(DEBIAN_FASHION_MNIST):
            return DEBIAN_FASHION_MNIST
        return super()._root()


class Cifar10(_TorchvisionSet):
    """CIFAR-10 through torchvision, 3x32x32, 10 classes, 50000 train and 10000 test images.

    Args:
        data_dir: torchvision's root, holding ``cifar-10-batches-py`` (default:
            ``~/.cache/nasplug/datasets``).
        download: download into ``data_dir`` when the data is not there.
        train_per_class: keep the first this many train images of every class (0: all).
        test_per_class: keep the first this many test images of every class (0: all).
    """

    name = "cifar10"
    classes = CIFAR10_CLASSES

    def _arrays(self) -> tuple[Split, Split]:
        root = self._root()
        hint = (
            f"fetch https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it in {root} "
            f"(giving {root / 'cifar-10-batches-py'})"
        )
        x_train, y_train, x_test, y_test = _torchvision_arrays(
            self.name, "CIFAR10", root, self.download, hint
        )
        # torchvision keeps CIFAR as NHWC
        return (x_train.transpose(0, 3, 1, 2), y_train), (x_test.transpose(0, 3, 1, 2), y_test)


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file of unsigned bytes (MNIST's format), gzipped or not.

    Example:
        >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
        (10000,)
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"cannot read IDX file {path}: {one_line(e, with_type=True)}") from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes; accepted: MNIST's IDX format "
            "(magic 0x0000080N)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = (
        tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
        if len(raw) >= header
        else ()
    )
    if len(dims) != ndim or len(raw) != header + math.prod(dims):
        raise ValueError(
            f"IDX file {path} is truncated or has trailing bytes; accepted: a complete IDX file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_files(folder: Path) -> dict[str, Path]:
    """The four MNIST-format files in ``folder`` (gzipped or not), or nothing if any is missing."""
    found = {}
    for stem in IDX_FILES:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                found[stem] = folder / name
                break
    return found if len(found) == len(IDX_FILES) else {}


def _read_idx_set(files: dict[str, Path]) -> tuple[Split, Split]:
    x_train, y_train, x_test, y_test = (read_idx(files[stem]) for stem in IDX_FILES)
    for stem, x in (("train-images", x_train), ("t10k-images", x_test)):
        if x.ndim != 3:
            raise ValueError(
                f"{files[stem + '-idx3-ubyte']} holds shape {x.shape}; accepted: images (N, H, W)"
            )
    return (x_train[:, None], y_train), (x_test[:, None], y_test)


def _torchvision_arrays(
    name: str, cls: str, root: Path, download: bool, hint: str, import_hint: str = ""
) -> tuple[np.ndarray, ...]:
    """Train and test arrays of a torchvision dataset class, as (x_train, y_train, x_test, y_test).

    ``hint`` says how to fetch the data by hand; ``import_hint`` what works without torchvision.
    """
    tv = import_torchvision(name, import_hint)
    try:
        sets = [
            getattr(tv.datasets, cls)(str(root), train=train, download=download)
            for train in (True, False)
        ]
    except (
        Exception
    ) as e:  # offline or corrupt data surfaces as URLError, RuntimeError, OSError, ...
        what = "download failed" if download else "download=false"
        raise ValueError(
            f"{name}: no data in {root} and {what} ({one_line(e, with_type=True)}); {hint}"
        ) from e
    out: list[np.ndarray] = []
    for s in sets:
        out += [np.asarray(s.data), np.asarray(s.targets)]
    return tuple(out)
