"""Turning a user's arrays, tensors or torch Datasets into :class:`nasplug.core.types.Data`.

:func:`to_data` is what the Python API hands its inputs to. Arrays and tensors become resident
tensors normalised with train statistics, exactly as the built-in dataset plugins build them
(they share :func:`build`); a ``torch.utils.data.Dataset`` stays a Dataset, which the trainer
streams (or loads into memory when it is small). Bad input raises a one-line ``ValueError``
that names what was wrong and what is accepted.

Example:
    >>> import numpy as np
    >>> x, y = np.random.default_rng(0).normal(size=(40, 5)), np.arange(40) % 2
    >>> data = to_data((x, y))
    >>> data.task.kind, data.task.input_shape, data.task.outputs, len(data.test[0])
    ('classification', (5,), 2, 8)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Subset

from nasplug.core.errors import one_line
from nasplug.core.types import TASK_KINDS, Data, Task, TaskKind
from nasplug.engine import streaming

__all__ = [
    "Split",
    "build",
    "check_classes",
    "check_pair",
    "check_same_data",
    "fingerprint",
    "run_fingerprint",
    "split_indices",
    "target_rows",
    "to_data",
]

Split = tuple[np.ndarray, np.ndarray]

#: Seed of the held-out test split: it depends on the data only, never on the search seed.
TEST_SEED = 0
#: Rows of each split hashed into a fingerprint (evenly spaced, the first and last included).
FINGERPRINT_ROWS = 64
_ACCEPTED = (
    "accepted: an (x, y) pair of numpy arrays or torch tensors, or a torch.utils.data.Dataset "
    "whose items are (x, y) pairs"
)


def to_data(
    train: Any,
    *,
    task: Task | str | None = None,
    test: Any = None,
    val: Any = None,
    test_fraction: float = 0.2,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    name: str = "",
) -> Data:
    """``Data`` from a user's splits: ``(x, y)`` pairs of arrays or tensors, or torch Datasets.

    Args:
        train: the search data (halved into weight and architecture halves unless ``val``).
        task: a :class:`Task`, or a kind (``classification``, ``regression``, ``multilabel``)
            whose input shape and number of outputs are inferred (classes: the largest label
            plus one). None infers the kind too: integer labels are classification, targets
            with fractional values regression; otherwise the kind must be given.
        test: the held-out split; None holds out ``test_fraction`` of ``train`` (stratified by
            class for arrays), the same examples whatever the search seed.
        val: an explicit architecture split.
        mean, std: input statistics (one value, or one per channel of images or per input
            element otherwise) used instead of the train split's.
        name: the data's name, in messages and logs.

    All splits are arrays and tensors, or all are Datasets. A Dataset's items are raw ``(x,
    y)`` pairs; the trainer normalises them. Inferring a Dataset's classes reads every label
    once; a :class:`Task` avoids that pass.
    """
    label = name or "data"
    splits = {"train": train, "test": test, "val": val}
    given = {k: v for k, v in splits.items() if v is not None}
    kinds = {k: _form(label, k, v) for k, v in given.items()}
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{k} {v}" for k, v in kinds.items())
        raise ValueError(
            f"{label}: splits mix arrays and Datasets ({listing}); accepted: all (x, y) pairs "
            "or all torch Datasets"
        )
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"{label}: test_fraction={test_fraction!r} is out of range; accepted: a number "
            "between 0 and 1"
        )
    if kinds["train"] == "dataset":
        return _from_datasets(label, given, task, test_fraction, mean, std)
    return _from_arrays(label, given, task, test_fraction, mean, std)


def _form(label: str, split: str, value: Any) -> str:
    """``dataset`` or ``arrays``, or one line of ValueError."""
    if isinstance(value, TorchDataset):
        if not hasattr(value, "__len__"):
            raise ValueError(
                f"{label}: the {split} Dataset has no length; accepted: a map-style "
                "torch.utils.data.Dataset with __len__ and __getitem__"
            )
        if len(value) == 0:
            raise ValueError(
                f"{label}: the {split} split is empty; accepted: at least one example per split"
            )
        return "dataset"
    if isinstance(value, (tuple, list)) and len(value) == 2:
        for part, v in zip(("inputs", "targets"), value, strict=True):
            if not isinstance(v, (np.ndarray, torch.Tensor)):
                raise ValueError(
                    f"{label}: the {split} {part} are a {type(v).__name__}; {_ACCEPTED}"
                )
        return "arrays"
    raise ValueError(f"{label}: the {split} split is a {type(value).__name__}; {_ACCEPTED}")


def _kind(label: str, task: Task | str | None, y: np.ndarray | None) -> str:
    """The task kind: given, or inferred from targets ``y`` where that is unambiguous."""
    if isinstance(task, Task):
        return task.kind
    if task is not None:
        if task not in TASK_KINDS:
            raise ValueError(
                f"{label}: unknown task {task!r}; accepted: a Task or one of "
                f"{', '.join(TASK_KINDS)}"
            )
        return str(task)
    if y is not None and y.dtype.kind in "iu" and (y.ndim == 1 or y.shape[1:] == (1,)):
        return "classification"
    if y is not None and y.dtype.kind == "f" and np.isfinite(y).all() and (y != np.round(y)).any():
        return "regression"
    raise ValueError(
        f"{label}: the task kind cannot be inferred from these targets; accepted: "
        f"task= one of {', '.join(TASK_KINDS)}, or a Task"
    )


def _numpy(v: np.ndarray | torch.Tensor) -> np.ndarray:
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _from_arrays(
    label: str,
    given: dict[str, Any],
    task: Task | str | None,
    test_fraction: float,
    mean: Any,
    std: Any,
) -> Data:
    splits = {k: (_numpy(x), _numpy(y)) for k, (x, y) in given.items()}
    x, y = splits["train"]
    kind = _kind(label, task, y)
    if "test" not in splits:
        check_pair(label, "train", x, y)
        target_rows(label, kind, "train", y)
        tr, te = split_indices(y, kind, test_fraction, TEST_SEED)
        splits["train"], splits["test"] = (x[tr], y[tr]), (x[te], y[te])
    shape = tuple(x.shape[1:])
    stats = _stats(label, mean, std, shape)
    classes = 0
    labels: tuple[str, ...] = ()
    if isinstance(task, Task):
        _check_shape(label, task, shape)
        labels = task.labels
        classes = task.outputs if kind == "classification" else 0
    data = build(label, kind, splits, classes=classes, labels=labels, stats=stats)
    if isinstance(task, Task) and data.task.outputs != task.outputs:
        raise ValueError(
            f"{label}: the targets have {data.task.outputs} columns but the task says "
            f"{task.outputs} outputs; accepted: one column per output"
        )
    return data


def _from_datasets(
    label: str,
    given: dict[str, Any],
    task: Task | str | None,
    test_fraction: float,
    mean: Any,
    std: Any,
) -> Data:
    train = given["train"]
    x0, y0 = _first(label, "train", train)
    shape = tuple(x0.shape)
    y_first = y0.reshape(1, -1) if y0.ndim else y0.reshape(1)
    kind = _kind(label, task, y_first)
    stats = _stats(label, mean, std, shape)
    if isinstance(task, Task):
        _check_shape(label, task, shape)
        outputs, labels = task.outputs, task.labels
    elif kind == "classification":
        outputs, labels = _classes(label, train), ()
    else:
        outputs, labels = max(y0.size, 1), ()
    test = given.get("test")
    if test is None:
        n = len(train)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SEED))
        k = min(max(round(n * test_fraction), 1), n - 1) if n >= 2 else 0
        if k == 0:
            raise ValueError(
                f"{label}: the train split has {n} example; accepted: at least 2 to hold out a "
                "test split, or test="
            )
        test = Subset(train, sorted(perm[:k].tolist()))
        train = Subset(train, sorted(perm[k:].tolist()))
    for split, ds in (("test", test), ("val", given.get("val"))):
        if ds is not None and tuple(_first(label, split, ds)[0].shape) != shape:
            raise ValueError(
                f"{label}: the {split} inputs have shape {tuple(_first(label, split, ds)[0].shape)}"
                f" but train has {shape}; accepted: one shape"
            )
    mean_t, std_t = stats if stats is not None else (None, None)
    return Data(
        Task(kind, shape, outputs, tuple(labels)),  # type: ignore[arg-type]
        train,
        test,
        given.get("val"),
        name=label,
        mean=None if mean_t is None else mean_t.flatten(),
        std=None if std_t is None else std_t.flatten(),
    )


def _first(label: str, split: str, ds: TorchDataset) -> tuple[np.ndarray, np.ndarray]:
    """The first item of a Dataset as arrays, or one line of ValueError."""
    try:
        item = ds[0]
    except (IndexError, KeyError, TypeError, ValueError, OSError) as e:
        raise ValueError(
            f"{label}: reading item 0 of the {split} Dataset failed "
            f"({one_line(e, with_type=True)}); {_ACCEPTED}"
        ) from e
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(
            f"{label}: the {split} Dataset's items are {type(item).__name__}s; {_ACCEPTED}"
        )
    try:
        return np.asarray(_numpy_any(item[0])), np.asarray(_numpy_any(item[1]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{label}: the {split} Dataset's items are not arrays; {_ACCEPTED}") from e


def _numpy_any(v: Any) -> Any:
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v


def _classes(label: str, ds: TorchDataset) -> int:
    """The largest label of a Dataset plus one (one pass over its items)."""
    source = streaming.Source(streaming.Items(ds), torch.arange(len(ds)))  # type: ignore[arg-type]
    keys = [
        (torch.arange(i, min(i + streaming.PASS_BATCH, len(source))), None)
        for i in range(0, len(source), streaming.PASS_BATCH)
    ]
    top = -1
    for _, y in streaming.loader(source, keys, 2):
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise ValueError(
                f"{label}: the train labels are not integers; accepted for classification: "
                "class indices 0..K-1"
            )
        if bool((y < 0).any()):
            raise ValueError(f"{label}: a train label is negative; accepted: class indices 0..K-1")
        top = max(top, int(y.max()))
    if top < 1:
        raise ValueError(f"{label}: only one class (0); accepted: labels of at least 2 classes")
    return top + 1


def _check_shape(label: str, task: Task, shape: tuple[int, ...]) -> None:
    if tuple(task.input_shape) != shape:
        raise ValueError(
            f"{label}: the inputs have shape {shape} but the task says {tuple(task.input_shape)}; "
            "accepted: one shape"
        )


def _stats(
    label: str, mean: Any, std: Any, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Given mean and std shaped to broadcast against a batch, or None when not given."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError(f"{label}: only one of mean and std is given; accepted: both or neither")
    per = (1, shape[0], 1, 1) if len(shape) == 3 else (1, *shape)
    count = int(np.prod(per))
    out = []
    for what, v in (("mean", mean), ("std", std)):
        try:
            t = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32).flatten()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{label}: {what} is not numbers; accepted: a number or a list") from e
        if t.numel() == 1:
            t = t.expand(count)
        if t.numel() != count or not bool(torch.isfinite(t).all()):
            where = "channel" if len(shape) == 3 else "input element"
            raise ValueError(
                f"{label}: {what} has {t.numel()} values for inputs of shape {shape}; accepted: "
                f"one finite number, or one per {where} ({count})"
            )
        out.append(t.reshape(per).clone())
    if not bool((out[1] > 0).all()):
        raise ValueError(f"{label}: std has values <= 0; accepted: positive numbers")
    return out[0], out[1]


# ---- checks and normalisation shared with the built-in datasets --------------------------------
def split_indices(
    y: np.ndarray, kind: str, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train and test indices; stratified by class for classification."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if kind == "classification":
        labels = y.reshape(n, -1)[:, 0] if n else y
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    else:
        groups = [np.arange(n)]
    test = []
    for idx in groups:
        k = round(len(idx) * test_fraction)
        # Keep every group in both splits when it has at least two examples.
        k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(n), test_idx), test_idx


def check_pair(name: str, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Checks that hold for one split of any task kind."""
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(
            f"{name}: the {split} inputs or targets are a single number; "
            "accepted: one row per example"
        )
    for what, a in (("inputs", x), ("targets", y)):
        if a.dtype.kind not in "biuf":
            raise ValueError(
                f"{name}: the {split} {what} have dtype {a.dtype}; accepted: real numbers"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(
                f"{name}: the {split} {what} contain NaN or inf; accepted: finite numbers"
            )
    if len(x) == 0:
        raise ValueError(
            f"{name}: the {split} split is empty; accepted: at least one example per split"
        )
    if len(x) != len(y):
        raise ValueError(
            f"{name}: the {split} split has {len(x)} inputs but {len(y)} targets; "
            "accepted: one target row per input"
        )


def target_rows(name: str, kind: str, split: str, y: np.ndarray) -> np.ndarray:
    """Targets of one split in the dtype and shape of ``kind`` (see :class:`nasplug.core.types.Data`)."""
    if kind == "classification":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"{name}: the {split} labels have shape {y.shape}; accepted for classification: "
                "one class index per example, shape (N,)"
            )
        if y.dtype.kind == "f" and not (y == np.round(y)).all():
            raise ValueError(
                f"{name}: the {split} labels are not integers; accepted for classification: "
                "class indices 0..K-1"
            )
        if (y < 0).any():
            raise ValueError(
                f"{name}: label {y.min():g} in the {split} split is out of range; accepted: "
                "class indices 0..K-1"
            )
        return y.astype(np.int64)
    if kind == "regression":
        if y.ndim not in (1, 2):
            raise ValueError(
                f"{name}: the {split} targets have shape {y.shape}; accepted for regression: "
                "(N,) or (N, T)"
            )
        return y.reshape(len(y), -1).astype(np.float32)
    if y.ndim != 2 or not ((y == 0) | (y == 1)).all():
        raise ValueError(
            f"{name}: the {split} targets must be 0/1 of shape (N, L), got shape {y.shape}; "
            "accepted for multilabel: one 0/1 column per label"
        )
    return y.astype(np.float32)


def build(
    name: str,
    kind: str,
    splits: dict[str, Split],
    *,
    classes: int = 0,
    labels: Sequence[str] = (),
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Data:
    """Check every split, normalise the inputs with train statistics (or the given
    ``stats``, mean and std shaped to broadcast against the inputs) and wrap them as ``Data``."""
    if not _is_kind(kind):
        raise ValueError(f"{name}: unknown task {kind!r}; accepted: {', '.join(TASK_KINDS)}")
    ys: dict[str, np.ndarray] = {}
    for split, (x, y) in splits.items():
        check_pair(name, split, x, y)
        ys[split] = target_rows(name, kind, split, y)
    shapes = {split: x.shape[1:] for split, (x, _) in splits.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{s} {tuple(v)}" for s, v in shapes.items())
        raise ValueError(
            f"{name}: inputs differ in shape between splits ({listing}); accepted: one shape"
        )
    if kind == "classification":
        outputs = check_classes(name, ys, classes or len(labels), labels)
    else:
        widths = {split: y.shape[1] for split, y in ys.items()}
        if len(set(widths.values())) > 1:
            listing = ", ".join(f"{s} {w}" for s, w in widths.items())
            raise ValueError(
                f"{name}: targets differ in width between splits ({listing}); accepted: one width"
            )
        outputs = widths["train"]
    if labels and len(labels) != outputs:
        raise ValueError(
            f"{name}: {len(labels)} label names for {outputs} outputs; "
            "accepted: one name per output"
        )
    xs, (mean, std) = _normalise({split: x for split, (x, _) in splits.items()}, stats)
    task = Task(kind, tuple(shapes["train"]), outputs, tuple(labels))
    tensors = {split: (xs[split], torch.from_numpy(ys[split])) for split in splits}
    return Data(
        task,
        tensors["train"],
        tensors["test"],
        tensors.get("val"),
        name=name,
        mean=mean.flatten(),
        std=std.flatten(),
    )


def _is_kind(kind: str) -> TypeGuard[TaskKind]:
    """Whether ``kind`` names a task kind (so that it can build a :class:`Task`)."""
    return kind in TASK_KINDS


def check_classes(name: str, ys: dict[str, np.ndarray], classes: int, labels: Sequence[str]) -> int:
    """The number of classes; every class must have examples in every split."""
    top = max(int(y.max()) for y in ys.values())
    k = classes or top + 1
    if top >= k:
        raise ValueError(f"{name}: label {top} is out of range; accepted: class indices 0..{k - 1}")
    if k < 2:
        raise ValueError(f"{name}: only one class (0); accepted: labels of at least 2 classes")
    for split, y in ys.items():
        missing = np.flatnonzero(np.bincount(y, minlength=k) == 0)
        if missing.size:
            c = int(missing[0])
            named = f" ({labels[c]!r})" if c < len(labels) else ""
            raise ValueError(
                f"{name}: class {c}{named} has no examples in the {split} split; "
                "accepted: every class in every split (add examples of that class)"
            )
    return k


def _normalise(
    xs: dict[str, np.ndarray], stats: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Float32 copies standardised per channel (images) or feature (vectors) with train
    statistics, or with ``stats`` when given; and the mean and std used."""
    out = {split: torch.tensor(x, dtype=torch.float32) for split, x in xs.items()}
    if stats is not None:
        mean, std = stats
        for t in out.values():
            t.sub_(mean).div_(std)
        return out, (mean, std)
    train = out["train"]
    dims = (0, 2, 3) if train.dim() == 4 else (0,)
    std, mean = torch.std_mean(train, dim=dims, keepdim=True, correction=0)
    # A constant channel carries no information; leave it centred rather than divide by ~0.
    std = torch.where(std > 1e-6 * (1.0 + mean.abs()), std, torch.ones_like(std))
    for t in out.values():
        t.sub_(mean).div_(std)
    return out, (mean, std)


# ---- fingerprints: which data a run was made from ------------------------------------------
def fingerprint(splits: Mapping[str, Any], *, inputs: bool = True) -> dict[str, Any]:
    """What tells data apart, cheaply even for large data: per split the number of rows and
    the shapes and dtypes of inputs and targets, and a hash of these, of a sample of
    :data:`FINGERPRINT_ROWS` evenly spaced rows and of all targets of array splits.

    ``splits`` maps split names to ``(x, y)`` pairs of arrays or tensors, or to torch Datasets
    (their sampled items are read); None values are left out. ``inputs=False`` leaves the
    inputs of pairs out of the hash (for inputs normalised here, whose last bits may differ
    between machines).

    Example:
        >>> x, y = np.arange(20.0).reshape(10, 2), np.arange(10) % 2
        >>> a = fingerprint({"train": (x, y)})
        >>> a["splits"]["train"], a == fingerprint({"train": (x[::-1], y[::-1])})
        ({'rows': 10, 'inputs': 'float64 (2,)', 'targets': 'int64 ()'}, False)
    """
    h = hashlib.sha256()
    described: dict[str, dict[str, Any]] = {}
    for name in sorted(splits):
        split = splits[name]
        if split is None:
            continue
        if isinstance(split, TorchDataset):
            n = len(split)  # type: ignore[arg-type]
            items = [split[int(i)] for i in _sample(n)]
            x = np.stack([np.asarray(_numpy_any(item[0])) for item in items])
            y = np.stack([np.asarray(_numpy_any(item[1])) for item in items])
            hashed_inputs = True
        else:
            xs, ys = split
            n = len(xs)
            x, y = _rows(xs, _sample(n)), _numpy(ys)
            hashed_inputs = inputs
        described[name] = {
            "rows": n,
            "inputs": f"{x.dtype} {tuple(x.shape[1:])}",
            "targets": f"{y.dtype} {tuple(y.shape[1:])}",
        }
        h.update(json.dumps([name, described[name]], sort_keys=True).encode())
        if hashed_inputs:
            h.update(np.ascontiguousarray(x).tobytes())
        h.update(np.ascontiguousarray(y).tobytes())
    return {"hash": h.hexdigest()[:16], "splits": described}


def _sample(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).round().astype(np.int64))


def _rows(v: np.ndarray | torch.Tensor, rows: np.ndarray) -> np.ndarray:
    """Rows of an array or tensor as an array, without copying the rest to the CPU."""
    if isinstance(v, torch.Tensor):
        return v[torch.from_numpy(rows).to(v.device)].detach().cpu().numpy()
    return np.asarray(v)[rows]


def run_fingerprint(
    data: Data, given: Any = None, test: Any = None, *, in_memory: bool = False
) -> dict[str, Any]:
    """The fingerprint a run keeps of its data (``data_fingerprint`` in ``config.json``).

    ``given`` is what the user handed over for ``data``, when it is arrays, tensors, a torch
    Dataset or a loaded ``Data`` (with ``test``, the test split handed over with arrays): it
    is fingerprinted as handed over, inputs included. Otherwise ``data``, as a dataset plugin
    loaded it, is fingerprinted by its shapes, its targets and a sample of its streamed items
    (its normalised inputs are left out, see :func:`fingerprint`). ``in_memory`` marks data
    that a resume must be given again (anything not loaded by a plugin's registered name).
    """
    if given is None:
        splits = {"train": data.train, "test": data.test, "val": data.val}
        out = fingerprint(splits, inputs=False)
    elif isinstance(given, Data):
        out = fingerprint({"train": given.train, "test": given.test, "val": given.val})
    else:
        out = fingerprint({"train": given, "test": test})
    out["in_memory"] = in_memory
    return out


def check_same_data(label: str, stored: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    """One line of ValueError unless ``found`` is the fingerprint ``stored`` (see
    :func:`run_fingerprint`); ``label`` names the run."""
    if stored.get("hash") == found.get("hash"):
        return
    was, now = stored.get("splits", {}), found.get("splits", {})
    detail = "the same shapes and types but other values or another order"
    for split in sorted(set(was) | set(now)):
        a, b = was.get(split), now.get(split)
        if a is None or b is None:
            detail = f"the {split} split is {'missing' if b is None else 'new'}"
            break
        differing = [k for k in ("rows", "inputs", "targets") if a.get(k) != b.get(k)]
        if differing:
            k = differing[0]
            detail = f"{split} {k} {b.get(k)} instead of {a.get(k)}"
            break
    raise ValueError(
        f"the data given differs from the data {label} was made with ({detail}; fingerprint "
        f"{found.get('hash')} instead of {stored.get('hash')}); accepted: the same data, "
        "as it was passed then"
    )
