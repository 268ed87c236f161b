"""Datasets from the user's files: arrays in a ``.npz`` file, and image folders."""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
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

from ._common import check_fraction, check_range, import_torchvision

__all__ = ["ImageFolder", "Npz"]

_NPZ_SPLITS = {"": "train", "_train": "train", "_val": "val", "_test": "test"}
_NPZ_NAMES = tuple(f"{a}{s}" for s in _NPZ_SPLITS for a in ("X", "y")) + ("labels",)
_NPZ_ACCEPTED = (
    "accepted: a .npz file with arrays X and y, or X_train and y_train (optionally X_val, "
    "y_val, X_test, y_test, labels)"
)
_LAYOUTS = ("auto", "nchw", "nhwc")
_FOLDER_ACCEPTED = "accepted: a folder with one subfolder of images per class"


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

    @classmethod
    def write_test_files(cls, folder: Path) -> Mapping[str, Any]:
        """For tests: a tiny ``.npz`` file in ``folder`` (30 vectors of 5 features, 3 classes),
        and the options that read it (see ``nasplug.testing.WritesTestFiles``)."""
        rng = np.random.default_rng(0)
        path = folder / "tiny.npz"
        np.savez(path, X=rng.normal(size=(30, 5)), y=np.arange(30) % 3)
        return {"path": str(path)}

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
        check_fraction("npz", test_fraction)
        check_range("npz", "classes", classes, 0)
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

    @classmethod
    def write_test_files(cls, folder: Path) -> Mapping[str, Any]:
        """For tests: a tiny image folder in ``folder`` (two classes of five 6x6 colour
        images), and the options that read it at 8x8 (see ``nasplug.testing.WritesTestFiles``)."""
        from PIL import Image

        rng = np.random.default_rng(0)
        for cls_name in ("cat", "dog"):
            (folder / "images" / cls_name).mkdir(parents=True)
            for i in range(5):
                pixels = rng.integers(0, 255, size=(6, 6, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / "images" / cls_name / f"{i}.png")
        return {"path": str(folder / "images"), "size": 8}

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
        check_range("imagefolder", "size", size, 1)
        check_fraction("imagefolder", test_fraction)
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
        tv = import_torchvision("imagefolder", "")
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


def _check_folder(root: Path) -> None:
    if not root.is_dir():
        raise ValueError(f"imagefolder: no folder {root}; {_FOLDER_ACCEPTED}")
    if not any(p.is_dir() for p in root.iterdir()):
        raise ValueError(f"imagefolder: {root} has no class subfolders; {_FOLDER_ACCEPTED}")
