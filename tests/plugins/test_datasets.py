"""The built-in datasets: shapes, dtypes, tasks, train-only normalisation, subsets and bad data."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nasplug.core import registry
from nasplug.core.interfaces import Dataset
from nasplug.core.types import Data
from nasplug.engine.streaming import resident
from nasplug.testing import tiny_instance
from nasplug_builtins import datasets as ds
from nasplug_builtins.datasets import embedded, torchvision_sets

BUILTIN = (
    "cifar10",
    "diabetes",
    "fashion-mnist",
    "fashion-mnist-multilabel",
    "fashion-mnist-small",
    "imagefolder",
    "mnist",
    "npz",
)
REAL_FASHION_MNIST = [
    p
    for p in (
        torchvision_sets.DEBIAN_FASHION_MNIST,
        Path("/tmp/fm/usr/share/datasets/fashion-mnist"),
    )
    if (p / "t10k-labels-idx1-ubyte.gz").is_file()
]


# ---- helpers -----------------------------------------------------------------------------------
def save_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def classes_data(n: int = 60, k: int = 3, shape: tuple[int, ...] = (4,), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), np.arange(n) % k


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def tiny_idx_folder(folder: Path, compress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Three train and two test images per class, taken from the embedded data, as IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(embedded.EMBEDDED) as f:
        parts = {}
        for split, prefix, k in (("train", "train", 3), ("test", "t10k", 2)):
            y = f[f"y_{split}"]
            keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:k] for c in range(10)]))
            parts[split] = f[f"x_{split}"][keep], y[keep]
            suffix = ".gz" if compress else ""
            write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", parts[split][0], compress)
            write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", parts[split][1], compress)
    return parts["train"][1], parts["test"][1]


def image_folder(root: Path, counts: dict[str, int]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(10 + i, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def assert_one_line_error(make_and_load, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        make_and_load()
    assert "\n" not in str(info.value)


def check_normalised(data: Data) -> None:
    x = data.train[0]
    dims = (0, 2, 3) if x.dim() == 4 else (0,)
    assert x.dtype == data.test[0].dtype == torch.float32
    assert torch.allclose(x.mean(dims), torch.zeros(1), atol=1e-4)
    assert torch.allclose(x.std(dims, correction=0), torch.ones(1), atol=1e-3)
    # Statistics come from the train split only, so the test split is not exactly centred.
    assert data.test[0].mean().abs() > 1e-6


# ---- discovery ---------------------------------------------------------------------------------
def test_every_builtin_dataset_is_registered_and_is_a_dataset():
    names = registry.names("dataset")
    assert set(BUILTIN) <= set(names)
    for name in BUILTIN:
        assert issubclass(registry.load("dataset", name), Dataset)


def test_file_datasets_write_the_files_of_their_test_options(tmp_path):
    """npz and imagefolder read the user's files: their tiny instances read files they write."""
    for cls, shape in ((ds.Npz, (5,)), (ds.ImageFolder, (3, 8, 8))):
        if cls is ds.ImageFolder:
            pytest.importorskip("torchvision")
        folder = tmp_path / cls.__name__
        folder.mkdir()
        data = resident(tiny_instance(cls, folder).load())
        assert data.task.input_shape == shape and len(data.train[0]) + len(data.test[0]) > 0
        with pytest.raises(TypeError, match="pass a folder"):
            tiny_instance(cls)


# ---- the embedded default ----------------------------------------------------------------------
def test_embedded_default_is_balanced_fashion_mnist():
    assert ds.FashionMnistSmall().load().train[0].shape == (2500, 1, 28, 28)
    data = ds.FashionMnistSmall(train_per_class=1000).load()
    assert data.task.kind == "classification"
    assert data.task.input_shape == (1, 28, 28)
    assert data.task.outputs == 10 and data.task.labels[0] == "T-shirt/top"
    assert data.train[0].shape == (10000, 1, 28, 28) and data.test[0].shape == (2000, 1, 28, 28)
    assert data.train[1].dtype == data.test[1].dtype == torch.int64
    assert torch.bincount(data.train[1]).tolist() == [1000] * 10
    assert torch.bincount(data.test[1]).tolist() == [200] * 10
    assert data.val is None and data.name == "fashion-mnist-small"
    check_normalised(data)


def test_embedded_file_is_small_and_documented():
    assert embedded.EMBEDDED.stat().st_size < 10_000_000
    notice = (embedded.EMBEDDED.parent / "FASHION_MNIST_LICENSE.txt").read_text()
    assert "MIT" in notice and "Zalando" in notice


def test_embedded_subsets_are_balanced_deterministic_and_nested():
    small = ds.FashionMnistSmall(train_per_class=5, test_per_class=3).load()
    again = ds.FashionMnistSmall(train_per_class=5, test_per_class=3).load()
    assert small.train[0].shape == (50, 1, 28, 28) and small.test[0].shape == (30, 1, 28, 28)
    assert torch.bincount(small.train[1]).tolist() == [5] * 10
    assert torch.bincount(small.test[1]).tolist() == [3] * 10
    assert torch.equal(small.train[0], again.train[0]) and torch.equal(
        small.train[1], again.train[1]
    )
    check_normalised(small)
    # A larger subset holds the smaller one: the same raw images, in the same order.
    with np.load(embedded.EMBEDDED) as f:
        y = f["y_train"]
        first5 = np.sort(np.concatenate([np.flatnonzero(y == c)[:5] for c in range(10)]))
        assert np.array_equal(y[first5], small.train[1].numpy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_per_class": 0},
        {"train_per_class": 1001},
        {"test_per_class": 201},
        {"test_per_class": -1},
    ],
)
def test_embedded_subset_sizes_out_of_range(kwargs):
    assert_one_line_error(lambda: ds.FashionMnistSmall(**kwargs), "out of range")


@pytest.mark.skipif(not REAL_FASHION_MNIST, reason="Fashion-MNIST's IDX files are not installed")
def test_embedded_images_are_the_original_test_images():
    folder = REAL_FASHION_MNIST[0]
    x = ds.read_idx(folder / "t10k-images-idx3-ubyte.gz")
    y = ds.read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    with np.load(embedded.EMBEDDED) as f:
        index = f["test_index"].astype(np.int64)
        assert np.array_equal(f["x_test"], x[index]) and np.array_equal(f["y_test"], y[index])


# ---- multilabel --------------------------------------------------------------------------------
def test_multilabel_pairs_two_items_side_by_side():
    data = ds.FashionMnistMultilabel(train_size=300, test_size=100, seed=1).load()
    assert data.task.kind == "multilabel" and data.task.outputs == 10
    assert data.task.input_shape == (1, 28, 56)
    assert data.train[0].shape == (300, 1, 28, 56) and data.test[0].shape == (100, 1, 28, 56)
    y = data.train[1]
    assert y.dtype == torch.float32 and y.shape == (300, 10)
    assert set(y.unique().tolist()) == {0.0, 1.0}
    positives = y.sum(1)
    assert ((positives == 1) | (positives == 2)).all() and (positives == 2).any()
    check_normalised(data)


def test_multilabel_is_deterministic_given_seed():
    a = ds.FashionMnistMultilabel(train_size=50, test_size=20, seed=3).load()
    b = ds.FashionMnistMultilabel(train_size=50, test_size=20, seed=3).load()
    c = ds.FashionMnistMultilabel(train_size=50, test_size=20, seed=4).load()
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.train[1], b.train[1])
    assert not torch.equal(a.train[1], c.train[1])


# ---- diabetes ----------------------------------------------------------------------------------
def test_diabetes_is_regression_in_raw_units():
    data = ds.Diabetes().load()
    assert (
        data.task.kind == "regression" and data.task.input_shape == (10,) and data.task.outputs == 1
    )
    assert len(data.train[0]) + len(data.test[0]) == 442 and len(data.test[0]) == 88
    assert data.train[1].shape == (354, 1) and data.train[1].dtype == torch.float32
    assert 100 < data.train[1].mean() < 200  # disease progression, not standardised
    check_normalised(data)
    again = ds.Diabetes().load()
    other = ds.Diabetes(seed=1).load()
    assert torch.equal(data.test[1], again.test[1]) and not torch.equal(data.test[1], other.test[1])


def test_diabetes_without_scikit_learn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert_one_line_error(lambda: ds.Diabetes().load(), "pip install scikit-learn")


# ---- npz ---------------------------------------------------------------------------------------
def test_npz_vectors_classification_with_held_out_split(tmp_path):
    x, y = classes_data(n=60, k=3)
    data = ds.Npz(path=save_npz(tmp_path / "d.npz", X=x, y=y), test_fraction=0.25).load()
    assert (
        data.task.kind == "classification"
        and data.task.input_shape == (4,)
        and data.task.outputs == 3
    )
    assert data.train[0].shape == (45, 4) and data.test[0].shape == (15, 4)
    assert data.train[1].dtype == torch.int64
    # Stratified: every class keeps its share in both splits.
    assert torch.bincount(data.test[1]).tolist() == [5, 5, 5]
    check_normalised(data)


def test_npz_split_is_deterministic_given_seed(tmp_path):
    x, y = classes_data(n=60, k=3)
    path = save_npz(tmp_path / "d.npz", X=x, y=y)
    a, b, c = ds.Npz(path=path).load(), ds.Npz(path=path).load(), ds.Npz(path=path, seed=1).load()
    assert torch.equal(a.test[0], b.test[0]) and not torch.equal(a.test[0], c.test[0])


def test_npz_normalises_with_train_statistics_only(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.normal(5.0, 2.0, size=(40, 2, 4, 4)).astype(np.float32)
    x_train[:, 1] *= 10.0  # channels of very different scales
    x_test = x_train[:20] + 3.0
    y_train, y_test = np.arange(40) % 2, np.arange(20) % 2
    data = ds.Npz(
        path=save_npz(
            tmp_path / "d.npz", X_train=x_train, y_train=y_train, X_test=x_test, y_test=y_test
        )
    ).load()
    check_normalised(data)
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True)
    assert np.allclose(data.test[0].numpy(), (x_test - mean) / std, atol=1e-4)


def test_npz_images_channels_last_are_read_as_nchw(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 6, 5, 3), dtype=np.uint8)
    x[..., 2] = 7  # a constant channel stays finite
    y = np.arange(20) % 2
    for layout in ("auto", "nhwc"):
        data = ds.Npz(
            path=save_npz(tmp_path / "d.npz", X_train=x, y_train=y, X_test=x, y_test=y),
            layout=layout,
        ).load()
        assert data.task.input_shape == (3, 6, 5)
        expected = x.transpose(0, 3, 1, 2).astype(np.float32)
        expected = (expected - expected.mean((0, 2, 3), keepdims=True)) / np.where(
            expected.std((0, 2, 3), keepdims=True) > 0, expected.std((0, 2, 3), keepdims=True), 1.0
        )
        assert np.allclose(data.train[0].numpy(), expected, atol=1e-4)
    data = ds.Npz(path=save_npz(tmp_path / "d.npz", X=rng.normal(size=(20, 3, 6, 5)), y=y)).load()
    assert data.task.input_shape == (3, 6, 5)
    data = ds.Npz(path=save_npz(tmp_path / "d.npz", X=rng.normal(size=(20, 6, 5)), y=y)).load()
    assert data.task.input_shape == (1, 6, 5)


def test_npz_regression_keeps_raw_targets(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = 100.0 + rng.normal(size=(30, 2))
    data = ds.Npz(
        path=save_npz(tmp_path / "d.npz", X_train=x, y_train=y, X_test=x[:5], y_test=y[:5]),
        task="regression",
    ).load()
    assert data.task.kind == "regression" and data.task.outputs == 2
    assert data.train[1].dtype == torch.float32 and torch.allclose(
        data.train[1], torch.tensor(y).float()
    )
    one = ds.Npz(path=save_npz(tmp_path / "e.npz", X=x, y=y[:, 0]), task="regression").load()
    assert one.task.outputs == 1 and one.train[1].shape == (24, 1)


def test_npz_multilabel_with_validation_split_and_names(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=(30, 3))
    data = ds.Npz(
        path=save_npz(
            tmp_path / "d.npz",
            X_train=x[:20],
            y_train=y[:20],
            X_val=x[20:25] + 1,
            y_val=y[20:25],
            X_test=x[25:],
            y_test=y[25:],
            labels=np.array(["a", "b", "c"]),
        ),
        task="multilabel",
    ).load()
    assert (
        data.task.kind == "multilabel"
        and data.task.outputs == 3
        and data.task.labels == ("a", "b", "c")
    )
    assert data.train[1].dtype == torch.float32 and data.train[1].shape == (20, 3)
    assert data.val is not None and data.val[0].shape == (5, 4) and data.val[0].mean() > 0.3
    check_normalised(data)


def test_npz_classes_option_counts_classes(tmp_path):
    x, y = classes_data(n=40, k=2)
    data = ds.Npz(path=save_npz(tmp_path / "d.npz", X=x, y=y.astype(np.float64)), classes=2).load()
    assert data.task.outputs == 2 and data.train[1].dtype == torch.int64


def _bad_npz(tmp_path: Path, case: str) -> ds.Npz:
    x, y = classes_data(n=40, k=2)
    kw = {}
    arrays: dict[str, np.ndarray] = {"X": x, "y": y}
    if case == "length":
        arrays = {"X": x, "y": y[:-1]}
    elif case == "split shapes":
        arrays = {"X_train": x, "y_train": y, "X_test": x[:, :3], "y_test": y}
    elif case == "negative label":
        arrays = {"X": x, "y": y - 1}
    elif case == "label above classes":
        arrays, kw = {"X": x, "y": y * 2}, {"classes": 2}
    elif case == "fractional label":
        arrays = {"X": x, "y": y + 0.5}
    elif case == "nan in X":
        x[3, 1] = np.nan
    elif case == "inf in y":
        arrays, kw = {"X": x, "y": np.where(y == 0, np.inf, 1.0)}, {"task": "regression"}
    elif case == "missing class":
        arrays = {"X_train": x, "y_train": y, "X_test": x[:4], "y_test": np.zeros(4, np.int64)}
    elif case == "names":
        arrays = {"features": x, "target": y}
    elif case == "X without y":
        arrays = {"X": x}
    elif case == "X and X_train":
        arrays = {"X": x, "y": y, "X_train": x, "y_train": y}
    elif case == "multilabel not 0/1":
        arrays, kw = {"X": x, "y": np.full((40, 3), 2)}, {"task": "multilabel"}
    elif case == "one class":
        arrays = {"X": x, "y": np.zeros(40, np.int64)}
    elif case == "1-D inputs":
        arrays = {"X": x[:, 0], "y": y}
    elif case == "label names":
        arrays, kw = {"X": x, "y": y, "labels": np.array(["a", "b", "c"])}, {"classes": 2}
    elif case == "named class missing":
        arrays = {"X": x, "y": y, "labels": np.array(["a", "b", "c"])}
    elif case == "single array":
        np.save(tmp_path / "bad.npz", x)
        (tmp_path / "bad.npz.npy").rename(tmp_path / "bad.npz")
        return ds.Npz(path=str(tmp_path / "bad.npz"))
    elif case == "not numpy":
        (tmp_path / "bad.npz").write_text("X,y\n1,2\n")
        return ds.Npz(path=str(tmp_path / "bad.npz"))
    elif case == "object array":
        arrays = {"X": x, "y": np.array([None] * 40, dtype=object)}
        np.savez(tmp_path / "bad.npz", allow_pickle=True, **arrays)
        return ds.Npz(path=str(tmp_path / "bad.npz"))
    return ds.Npz(path=save_npz(tmp_path / "bad.npz", **arrays), **kw)


@pytest.mark.parametrize(
    "case, match",
    [
        ("length", "40 inputs but 39 targets"),
        ("split shapes", "differ in shape"),
        ("negative label", "label -1 .*out of range"),
        ("label above classes", "label 2 is out of range; accepted: class indices 0..1"),
        ("fractional label", "not integers"),
        ("nan in X", "NaN or inf"),
        ("inf in y", "NaN or inf"),
        ("missing class", "class 1 has no examples in the test split"),
        ("names", "unknown arrays features, target"),
        ("X without y", "has X but no y"),
        ("X and X_train", "both X and X_train"),
        ("multilabel not 0/1", "0/1"),
        ("one class", "at least 2 classes"),
        ("1-D inputs", "accepted: vectors"),
        ("label names", "3 label names for 2 outputs"),
        ("named class missing", "class 2 \\('c'\\) has no examples in the train split"),
        ("object array", "cannot read"),
        ("single array", "single unnamed array"),
        ("not numpy", "cannot read"),
    ],
)
def test_npz_bad_data_is_a_one_line_error(tmp_path, case, match):
    assert_one_line_error(lambda: _bad_npz(tmp_path, case).load(), match)


def test_npz_bad_options_and_missing_file(tmp_path):
    # A missing file is reported when the options are read, before any run directory exists.
    assert_one_line_error(lambda: ds.Npz(path=str(tmp_path / "none.npz")), "no file")
    assert_one_line_error(lambda: ds.Npz(), "path=FILE.npz")
    assert_one_line_error(
        lambda: ds.Npz(path="d.npz", task="ranking"),
        "unknown task 'ranking'; accepted: classification, regression, multilabel",
    )
    assert_one_line_error(lambda: ds.Npz(path="d.npz", layout="chw"), "unknown layout")
    assert_one_line_error(lambda: ds.Npz(path="d.npz", test_fraction=1.0), "test_fraction")


def test_npz_class_too_small_to_split(tmp_path):
    x, y = classes_data(n=21, k=2)
    y[-1] = 2  # class 2 has a single example, so one split must lack it
    assert_one_line_error(
        lambda: ds.Npz(path=save_npz(tmp_path / "d.npz", X=x, y=y)).load(),
        "class 2 has no examples in the (train|test) split",
    )


# ---- image folders -----------------------------------------------------------------------------
def _resident(data: Data) -> Data:
    """The data as the trainer holds it in memory: normalised tensors, read by 2 workers."""
    from nasplug.engine.trainer import Trainer

    t = Trainer(data, device="cpu", quiet=True, stream="off", augment="off")
    x, y = t.splits["train"]
    xt, yt = t.splits["test"]
    return Data(data.task, (x, y), (xt, yt), name=data.name)


def test_imagefolder_loads_resized_images(tmp_path):
    root = image_folder(tmp_path / "imgs", {"cat": 5, "dog": 5})
    data = ds.ImageFolder(path=str(root), size=8).load()
    assert data.task.kind == "classification" and data.task.labels == ("cat", "dog")
    assert data.task.input_shape == (3, 8, 8)
    assert data.streams and len(data.train) == 8 and len(data.test) == 2
    resident = _resident(data)
    assert resident.train[0].shape == (8, 3, 8, 8) and resident.test[0].shape == (2, 3, 8, 8)
    assert torch.bincount(resident.test[1]).tolist() == [1, 1]
    check_normalised(resident)
    grey = ds.ImageFolder(path=str(root), size=6, grayscale=True).load()
    assert grey.task.input_shape == (1, 6, 6) and len(grey.train) == 8
    assert grey.train[0][0].shape == (1, 6, 6)


def test_imagefolder_streams_the_same_batches_it_loads_resident(tmp_path):
    from nasplug.engine.trainer import Trainer

    root = image_folder(tmp_path / "imgs", {"cat": 6, "dog": 6})
    data = ds.ImageFolder(path=str(root), size=8).load()
    on = Trainer(data, device="cpu", quiet=True, stream="on", workers=2)
    off = Trainer(data, device="cpu", quiet=True, stream="off", workers=0)
    assert on.streaming and not off.streaming
    for split, shuffle in (("weight", True), ("train", True), ("test", False)):
        a = list(on.batches(split, 4, epoch=1, shuffle=shuffle, cutout=4))
        b = list(off.batches(split, 4, epoch=1, shuffle=shuffle, cutout=4))
        assert len(a) == len(b) > 0
        for (xa, ta), (xb, tb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ta, tb)


def test_imagefolder_uses_given_statistics(tmp_path):
    root = image_folder(tmp_path / "imgs", {"cat": 4, "dog": 4})
    data = ds.ImageFolder(path=str(root), size=4, mean="100", std="50").load()
    x = _resident(data).train[0]
    raw = data.train[0][0].float()
    assert any(torch.equal(row, (raw - 100) / 50) for row in x)
    assert_one_line_error(lambda: ds.ImageFolder(path=str(root), mean="a,b", std="1"), "mean=")
    assert_one_line_error(lambda: ds.ImageFolder(path=str(root), mean="1"), "both mean and std")


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "no folder"),
        ("no subfolders", "no class subfolders"),
        ("empty class", "class folder 'dog' has no images"),
        ("unreadable", "cannot read image"),
        ("single image", "class 1 \\('dog'\\) has no examples in the (train|test) split"),
    ],
)
def test_imagefolder_bad_folders(tmp_path, case, match):
    root = tmp_path / "imgs"
    if case == "no subfolders":
        root.mkdir()
        (root / "notes.txt").write_text("no images here")
    elif case == "empty class":
        image_folder(root, {"cat": 3})
        (root / "dog").mkdir()
    elif case == "unreadable":
        image_folder(root, {"cat": 3, "dog": 3})
        (root / "dog" / "broken.png").write_bytes(b"not a png")
    elif case == "single image":
        image_folder(root, {"cat": 4, "dog": 1})
    assert_one_line_error(lambda: ds.ImageFolder(path=str(root)).load(), match)
    if case in ("missing", "no subfolders"):  # found when the options are read
        assert_one_line_error(lambda: ds.ImageFolder(path=str(root)), match)


# ---- torchvision sets and IDX files ------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, fetch",
    [
        (ds.Mnist, "train-images-idx3-ubyte.gz"),
        (ds.FashionMnist, "fashion-mnist"),
        (ds.Cifar10, "cifar-10-python.tar.gz"),
    ],
)
def test_offline_sets_say_what_to_fetch_and_where(tmp_path, cls, fetch):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(ValueError) as info:
        cls(data_dir=str(folder), download=False).load()
    message = str(info.value)
    assert "\n" not in message and fetch in message and str(folder) in message


def test_failed_download_says_what_to_fetch(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    assert_one_line_error(
        lambda: ds.Mnist(data_dir=str(tmp_path)).load(),
        "download failed .*fetch train-images-idx3-ubyte.gz",
    )


def test_missing_torchvision_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert_one_line_error(
        lambda: ds.Cifar10(data_dir=str(tmp_path)).load(), "pip install torchvision"
    )
    assert_one_line_error(
        lambda: ds.Mnist(data_dir=str(tmp_path)).load(), "pip install torchvision, or fetch"
    )
    (tmp_path / "a").mkdir()
    assert_one_line_error(
        lambda: ds.ImageFolder(path=str(tmp_path)).load(), "pip install torchvision"
    )


def test_fashion_mnist_reads_the_debian_folder(tmp_path, monkeypatch):
    y_train, y_test = tiny_idx_folder(tmp_path / "debian")
    monkeypatch.setattr(torchvision_sets, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # IDX files need no torchvision
    data = ds.FashionMnist().load()
    assert data.task.input_shape == (1, 28, 28) and data.task.outputs == 10
    assert data.train[0].shape == (30, 1, 28, 28) and data.test[0].shape == (20, 1, 28, 28)
    assert np.array_equal(data.train[1].numpy(), y_train) and np.array_equal(
        data.test[1].numpy(), y_test
    )
    check_normalised(data)
    subset = ds.FashionMnist(train_per_class=2, test_per_class=1).load()
    assert torch.bincount(subset.train[1]).tolist() == [2] * 10 and len(subset.test[1]) == 10
    assert_one_line_error(
        lambda: ds.FashionMnist(train_per_class=4).load(), "train_per_class=4 .*at most 3"
    )


def test_idx_files_in_torchvision_layout_are_read_directly(tmp_path, monkeypatch):
    tiny_idx_folder(tmp_path / "MNIST" / "raw", compress=False)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    data = ds.Mnist(data_dir=str(tmp_path)).load()
    assert data.train[0].shape == (30, 1, 28, 28) and data.task.labels[3] == "3"
    assert data.augment == "no-flip"  # digits are not flipped unless the user says so
    assert ds.FashionMnistSmall(train_per_class=2, test_per_class=2).load().augment is None


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"\x00\x00\x09\x01" + bytes(8), "not an IDX file"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "truncated"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, raw, match):
    (tmp_path / "f").write_bytes(raw)
    assert_one_line_error(lambda: ds.read_idx(tmp_path / "f"), match)
