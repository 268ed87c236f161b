"""Built-in datasets: an embedded offline default, torchvision sets, ``.npz`` arrays, image folders.

Every plugin's ``load()`` returns :class:`nasplug.core.types.Data` whose inputs are float32 tensors
normalised with the mean and standard deviation of the train split only (per channel for images
``[N, C, H, W]``, per feature for vectors ``[N, D]``). Bad data raises a one-line ``ValueError``
that names the problem and what is accepted, before any tensor reaches the trainer.

Example:
    >>> data = FashionMnistSmall(train_per_class=10, test_per_class=5).load()
    >>> data.task.input_shape, len(data.train[0]), len(data.test[0])
    ((1, 28, 28), 100, 50)
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import zipfile
from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from nasplug.core.errors import one_line
from nasplug.core.interfaces import Dataset
from nasplug.core.types import TASK_KINDS, Data, Task
from nasplug.engine.userdata import Split
from nasplug.engine.userdata import build as _build
from nasplug.engine.userdata import check_classes as _check_classes
from nasplug.engine.userdata import check_pair as _check_pair
from nasplug.engine.userdata import split_indices as _split
from nasplug.engine.userdata import target_rows as _targets

__all__ = [
    "Cifar10",
    "Diabetes",
    "FashionMnist",
    "FashionMnistMultilabel",
    "FashionMnistSmall",
    "ImageFolder",
    "Mnist",
    "Npz",
    "read_idx",
]

#: The embedded default: a class-balanced subset of Fashion-MNIST as uint8 (see the licence
#: notice next to it and tools/make_embedded_data.py, which rebuilds it).
EMBEDDED = Path(__file__).with_name("data") / "fashion_mnist_small.npz"
SHIPPED_TRAIN_PER_CLASS = 1000
SHIPPED_TEST_PER_CLASS = 200
#: Where Debian's dataset-fashion-mnist package installs the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: Where torchvision sets are looked for and downloaded when no ``data_dir`` is given.
DEFAULT_ROOT = Path("~/.cache/nasplug/datasets")

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

_NPZ_SPLITS = {"": "train", "_train": "train", "_val": "val", "_test": "test"}
_NPZ_NAMES = tuple(f"{a}{s}" for s in _NPZ_SPLITS for a in ("X", "y")) + ("labels",)
_NPZ_ACCEPTED = (
    "accepted: a .npz file with arrays X and y, or X_train and y_train (optionally X_val, "
    "y_val, X_test, y_test, labels)"
)
_LAYOUTS = ("auto", "nchw", "nhwc")
_FOLDER_ACCEPTED = "accepted: a folder with one subfolder of images per class"


# ---- datasets ----------------------------------------------------------------------------------
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

    def __init__(
        self, train_per_class: int = 250, test_per_class: int = SHIPPED_TEST_PER_CLASS
    ) -> None:
        name = "fashion-mnist-small"
        _check_range(name, "train_per_class", train_per_class, 1, SHIPPED_TRAIN_PER_CLASS)
        _check_range(name, "test_per_class", test_per_class, 1, SHIPPED_TEST_PER_CLASS)
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class

    def load(self) -> Data:
        train, test = _embedded()
        train = _take_per_class(
            "fashion-mnist-small", "train_per_class", train, self.train_per_class
        )
        test = _take_per_class("fashion-mnist-small", "test_per_class", test, self.test_per_class)
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

    def __init__(self, train_size: int = 5000, test_size: int = 1000, seed: int = 0) -> None:
        _check_range("fashion-mnist-multilabel", "train_size", train_size, 1)
        _check_range("fashion-mnist-multilabel", "test_size", test_size, 1)
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


class Diabetes(Dataset):
    """scikit-learn's diabetes regression data: 442 patients, 10 features, 1 target (raw units).

    Args:
        test_fraction: share of the examples held out as the test split.
        seed: seed of the split.
    """

    def __init__(self, test_fraction: float = 0.2, seed: int = 0) -> None:
        _check_fraction("diabetes", test_fraction)
        self.test_fraction = test_fraction
        self.seed = seed

    def load(self) -> Data:
        try:
            from sklearn.datasets import load_diabetes
        except ImportError as e:
            raise ValueError(
                "diabetes needs scikit-learn, which is not installed: pip install scikit-learn"
            ) from e
        x, y = load_diabetes(return_X_y=True, scaled=False)
        train, test = _split(y, "regression", self.test_fraction, self.seed)
        return _build(
            "diabetes",
            "regression",
            {"train": (x[train], y[train]), "test": (x[test], y[test])},
            labels=("disease progression",),
        )


class _TorchvisionSet(Dataset):
    """A full image-classification set with optional balanced subsets; subclasses read the arrays."""

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
        _check_range(self.name, "train_per_class", train_per_class, 0)
        _check_range(self.name, "test_per_class", test_per_class, 0)
        self.data_dir = data_dir
        self.download = download
        self.train_per_class = train_per_class
        self.test_per_class = test_per_class

    def load(self) -> Data:
        train, test = self._arrays()
        train = _take_per_class(self.name, "train_per_class", train, self.train_per_class)
        test = _take_per_class(self.name, "test_per_class", test, self.test_per_class)
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


class Npz(Dataset):
    """Arrays from a NumPy ``.npz`` file.

    The file holds ``X`` and ``y`` (or ``X_train`` and ``y_train``), optionally ``X_val``/``y_val``
    (an explicit architecture split), ``X_test``/``y_test`` and ``labels`` (names of the classes or
    outputs). Inputs are vectors ``(N, D)``, grey images ``(N, H, W)`` or images ``(N, C, H, W)`` /
    ``(N, H, W, C)``. Targets: class indices ``(N,)`` (classification), values ``(N,)`` or
    ``(N, T)`` (regression), 0/1 ``(N, L)`` (multilabel). Without a test split, one is held out.

    Args:
        path: the ``.npz`` file.
        task: classification, regression or multilabel.
        layout: auto, nchw or nhwc; auto reads a last dimension of size 1, 3 or 4 as channels
            when the second dimension is larger.
        test_fraction: share held out as the test split when the file has none.
        seed: seed of that split.
        classes: number of classes (0: the largest label plus one, or the length of ``labels``).
    """

    def __init__(
        self,
        path: str = "",
        task: str = "classification",
        layout: str = "auto",
        test_fraction: float = 0.2,
        seed: int = 0,
        classes: int = 0,
    ) -> None:
        if not path:
            raise ValueError("npz needs a file: path=FILE.npz")
        if task not in TASK_KINDS:
            raise ValueError(f"npz: unknown task {task!r}; accepted: {', '.join(TASK_KINDS)}")
        if layout not in _LAYOUTS:
            raise ValueError(f"npz: unknown layout {layout!r}; accepted: {', '.join(_LAYOUTS)}")
        _check_fraction("npz", test_fraction)
        _check_range("npz", "classes", classes, 0)
        if not Path(path).expanduser().is_file():
            raise ValueError(f"npz: no file {Path(path).expanduser()}; {_NPZ_ACCEPTED}")
        self.path = path
        self.task = task
        self.layout = layout
        self.test_fraction = test_fraction
        self.seed = seed
        self.classes = classes

    def load(self) -> Data:
        path = Path(self.path).expanduser()
        arrays = _read_npz(path)
        labels = arrays.pop("labels", None)
        if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "US"):
            raise ValueError(
                f"npz: 'labels' in {path.name} has shape {labels.shape} and dtype "
                f"{labels.dtype}; accepted: a 1-D array of names"
            )
        names = () if labels is None else tuple(str(s) for s in labels)
        splits: dict[str, Split] = {}
        for suffix, split in _NPZ_SPLITS.items():
            if f"X{suffix}" in arrays:
                key = f"X{suffix}"
                splits[split] = (_as_inputs(key, arrays[key], self.layout), arrays[f"y{suffix}"])
        if "test" not in splits:
            x, y = splits["train"]
            _check_pair("npz", "train", x, y)
            _targets("npz", self.task, "train", y)
            train, test = _split(y, self.task, self.test_fraction, self.seed)
            splits["train"], splits["test"] = (x[train], y[train]), (x[test], y[test])
        return _build("npz", self.task, splits, classes=self.classes, labels=names)


class ImageFolder(Dataset):
    """A folder with one subfolder of images per class (torchvision's ImageFolder layout).

    Images are resized to ``size`` x ``size`` (stretched when their aspect ratio differs),
    converted to RGB (grey images copied into three channels, transparency dropped), or to one
    grey channel with ``grayscale``; a run's start line says what this did to the images
    found (``Data.note``). The class names are the subfolder names. The
    images are not decoded up front: ``load`` lists the files, checks that each one is an image
    (its header only) and returns the splits as torch Datasets, which the trainer streams from
    disk, or decodes once into memory when they are small (its ``stream`` option). The inputs
    are normalised with ``mean`` and ``std`` when given (pixel values 0..255, one value or one
    per channel, comma-separated), otherwise with statistics of the train split that the trainer
    computes in one pass.

    Args:
        path: the folder.
        size: side of the square images.
        grayscale: one channel instead of three.
        test_fraction: share of every class held out as the test split.
        seed: seed of that split.
        mean: per-channel means of the pixel values, e.g. ``125.3,123.0,113.9``; empty: computed.
        std: per-channel standard deviations, e.g. ``63.0,62.1,66.7``; empty: computed.
    """

    def __init__(
        self,
        path: str = "",
        size: int = 32,
        grayscale: bool = False,
        test_fraction: float = 0.2,
        seed: int = 0,
        mean: str = "",
        std: str = "",
    ) -> None:
        if not path:
            raise ValueError(
                "imagefolder needs a folder: path=DIR (one subfolder of images per class)"
            )
        _check_range("imagefolder", "size", size, 1)
        _check_fraction("imagefolder", test_fraction)
        _check_folder(Path(path).expanduser())
        self.path = path
        self.size = size
        self.grayscale = grayscale
        self.test_fraction = test_fraction
        self.seed = seed
        self.mean = _numbers("mean", mean)
        self.std = _numbers("std", std)
        if (self.mean is None) != (self.std is None):
            raise ValueError("imagefolder: give both mean and std, or neither")

    def load(self) -> Data:
        root = Path(self.path).expanduser()
        _check_folder(root)
        tv = _import_torchvision("imagefolder", "")
        transforms = tv.transforms
        steps: list[Any] = [transforms.Resize((self.size, self.size))]
        if self.grayscale:
            steps.append(transforms.Grayscale(1))
        steps.append(transforms.PILToTensor())
        folder = tv.datasets.ImageFolder(
            str(root), transform=transforms.Compose(steps), allow_empty=True
        )
        counts = np.bincount(
            np.asarray(folder.targets, dtype=np.int64), minlength=len(folder.classes)
        )
        empty = [c for c, n in zip(folder.classes, counts, strict=True) if n == 0]
        if empty:
            raise ValueError(
                f"imagefolder: class folder {empty[0]!r} has no images; accepted image files: "
                f"{', '.join(tv.datasets.folder.IMG_EXTENSIONS)}"
            )
        found = _check_headers(folder.samples)
        y = np.asarray(folder.targets, dtype=np.int64)
        train, test = _split(y, "classification", self.test_fraction, self.seed)
        _check_classes(
            "imagefolder", {"train": y[train], "test": y[test]}, len(folder.classes), folder.classes
        )
        channels = 1 if self.grayscale else 3
        images = _Images(folder)
        return Data(
            Task(
                "classification",
                (channels, self.size, self.size),
                len(folder.classes),
                tuple(folder.classes),
            ),
            torch.utils.data.Subset(images, train.tolist()),
            torch.utils.data.Subset(images, test.tolist()),
            name="imagefolder",
            mean=self.mean,
            std=self.std,
            note=_conversion(found, self.size, self.grayscale),
        )


class _Images(torch.utils.data.Dataset):
    """A torchvision ImageFolder whose unreadable images raise one line of ValueError."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            return self.folder[i]
        except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
            file = self.folder.samples[i][0]
            raise ValueError(
                f"imagefolder: cannot read image {file}: {one_line(e, with_type=True)}"
            ) from e


def _check_headers(samples: Sequence[tuple[str, int]]) -> Counter[tuple[int, int, str]]:
    """Open every image's header (no decoding), so that a non-image fails before the search;
    count the images of each (width, height, mode)."""
    from PIL import Image

    found: Counter[tuple[int, int, str]] = Counter()
    for file, _ in samples:
        try:
            with Image.open(file) as im:
                found[(*im.size, im.mode)] += 1
        except (OSError, ValueError) as e:
            raise ValueError(
                f"imagefolder: cannot read image {file}: {one_line(e, with_type=True)}"
            ) from e
    return found


#: PIL modes of grey images, and of images with transparency.
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _conversion(found: Counter[tuple[int, int, str]], size: int, grayscale: bool) -> str:
    """One line on what loading does to the images ``found`` (see :func:`_check_headers`)."""
    sizes = {(w, h) for w, h, _ in found}
    modes = sorted({m for _, _, m in found})
    if len(sizes) == 1:
        (w, h), *_ = sizes
        source = f"{w}x{h}"
    else:
        widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
        source = (
            f"{len(sizes)} sizes, {min(widths)}-{max(widths)} wide and "
            f"{min(heights)}-{max(heights)} high"
        )
    done = []
    if sizes != {(size, size)}:
        stretched = any(w != h for w, h in sizes)
        done.append("resized" + (" (aspect ratio not kept)" if stretched else ""))
    grey = [m for m in modes if m in _GREY_MODES]
    if grayscale and len(grey) < len(modes):
        done.append("colour made grey")
    if not grayscale and grey:
        done.append("grey copied into 3 channels")
    if any(m in _ALPHA_MODES for m in modes):
        done.append("transparency dropped")
    what = ", ".join(done) or "unchanged"
    return (
        f"imagefolder: {sum(found.values())} images ({source}, mode {'/'.join(modes)}) -> "
        f"{1 if grayscale else 3}x{size}x{size}: {what} (options size=, grayscale=)"
    )


def _numbers(option: str, text: str) -> list[float] | None:
    """Comma-separated numbers of an option, or None when empty."""
    if not str(text).strip():
        return None
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(
            f"imagefolder: {option}={text!r} is not numbers; accepted: one number, or one per "
            "channel separated by commas"
        ) from None


# ---- reading -----------------------------------------------------------------------------------
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


def _import_torchvision(name: str, hint: str) -> Any:
    try:
        import torchvision
        import torchvision.datasets
    except ImportError as e:
        extra = f", or {hint}" if hint else ""
        raise ValueError(
            f"{name} needs torchvision, which is not installed: pip install torchvision{extra}"
        ) from e
    return torchvision


def _torchvision_arrays(
    name: str, cls: str, root: Path, download: bool, hint: str, import_hint: str = ""
) -> tuple[np.ndarray, ...]:
    """Train and test arrays of a torchvision dataset class, as (x_train, y_train, x_test, y_test).

    ``hint`` says how to fetch the data by hand; ``import_hint`` what works without torchvision.
    """
    tv = _import_torchvision(name, import_hint)
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


def _embedded() -> tuple[Split, Split]:
    if not EMBEDDED.is_file():
        raise ValueError(
            f"the embedded dataset {EMBEDDED} is missing; "
            "rebuild it with tools/make_embedded_data.py"
        )
    with np.load(EMBEDDED) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    accepted = _NPZ_ACCEPTED
    if not path.is_file():
        raise ValueError(f"npz: no file {path}; {accepted}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"npz: {path} holds a single unnamed array; {accepted}")
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"npz: cannot read {path} ({one_line(e, with_type=True)}); {accepted}"
        ) from e
    except ValueError as e:  # numpy refuses pickled and object data, which could run code
        if str(e).startswith("npz:"):
            raise
        raise ValueError(
            f"npz: cannot read {path}: it is not an archive of plain numeric arrays; {accepted}"
        ) from e
    unknown = sorted(set(arrays) - set(_NPZ_NAMES))
    if unknown:
        raise ValueError(f"npz: {path.name} has unknown arrays {', '.join(unknown)}; {accepted}")
    for suffix in _NPZ_SPLITS:
        x, y = f"X{suffix}", f"y{suffix}"
        if (x in arrays) != (y in arrays):
            have, lack = (x, y) if x in arrays else (y, x)
            raise ValueError(f"npz: {path.name} has {have} but no {lack}; {accepted}")
    if "X" in arrays and "X_train" in arrays:
        raise ValueError(f"npz: {path.name} has both X and X_train; {accepted}")
    if "X" not in arrays and "X_train" not in arrays:
        raise ValueError(f"npz: {path.name} has no X or X_train; {accepted}")
    return arrays


def _as_inputs(key: str, x: np.ndarray, layout: str) -> np.ndarray:
    """Inputs as vectors ``(N, D)`` or images ``(N, C, H, W)``."""
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        # A last dimension of 1, 3 or 4 is read as channels, unless the second is even smaller
        # (then that one is): (N, 28, 28, 3) is NHWC, (N, 2, 4, 4) is NCHW.
        channels_last = x.shape[-1] in (1, 3, 4) and x.shape[-1] < x.shape[1]
        nhwc = layout == "nhwc" or (layout == "auto" and channels_last)
        return x.transpose(0, 3, 1, 2) if nhwc else x
    raise ValueError(
        f"npz: {key} has shape {x.shape}; accepted: vectors (N, D), grey images (N, H, W), "
        "images (N, C, H, W) or (N, H, W, C)"
    )


# ---- subsets and splits ------------------------------------------------------------------------
def _take_per_class(name: str, option: str, split: Split, k: int) -> Split:
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


def _pairs(split: Split, n: int, rng: np.random.Generator) -> Split:
    """``n`` random pairs of images side by side, with the classes present as 0/1 targets."""
    x, y = split
    a, b = rng.integers(len(x), size=(2, n))
    targets = np.zeros((n, len(FASHION_MNIST_CLASSES)), dtype=np.float32)
    rows = np.arange(n)
    targets[rows, y[a]] = 1.0
    targets[rows, y[b]] = 1.0
    return np.concatenate([x[a], x[b]], axis=2)[:, None], targets


# ---- checks and normalisation ------------------------------------------------------------------
def _check_range(name: str, option: str, value: int, low: int, high: int | None = None) -> None:
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


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"{name}: test_fraction={value!r} is out of range; accepted: a number between 0 and 1"
        )


def _check_folder(root: Path) -> None:
    if not root.is_dir():
        raise ValueError(f"imagefolder: no folder {root}; {_FOLDER_ACCEPTED}")
    if not any(p.is_dir() for p in root.iterdir()):
        raise ValueError(f"imagefolder: {root} has no class subfolders; {_FOLDER_ACCEPTED}")
