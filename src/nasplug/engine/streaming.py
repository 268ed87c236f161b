"""Reading splits batch by batch: stores, loader workers, normalisation and prefetching.

A split is a :class:`Source`: a store (tensors in memory, or a ``torch.utils.data.Dataset`` read
item by item) and the indices of the store's examples that belong to the split. The trainer
either materialises a source into tensors on the device (the resident path) or reads it through
:func:`loader`, whose worker processes gather, normalise and augment whole batches, and
:func:`prefetch`, which copies each batch to the device one batch ahead.

Every batch is requested by a *key*: the positions of its examples in the split and the
parameters of its augmentation. The keys are computed in the main process from the trainer's
seeds, so the workers hold no random state and the batches do not depend on how many workers
read them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from nasplug.core.errors import one_line
from nasplug.core.types import Data
from nasplug.engine import augment

__all__ = [
    "STREAM_BYTES",
    "Items",
    "Joined",
    "Pairs",
    "Source",
    "estimated_bytes",
    "is_streamed",
    "loader",
    "normaliser",
    "stores",
    "prefetch",
    "resident",
    "statistics",
]

#: Above this estimate of float32 inputs (all splits), ``stream="auto"`` streams.
STREAM_BYTES = 2 * 1024**3
#: Examples per batch of the passes that compute statistics or materialise a source.
PASS_BATCH = 256

Key = tuple[torch.Tensor, "augment.Params | None"]


def is_streamed(split: Any) -> TypeGuard[TorchDataset]:
    """Whether a split of :class:`nasplug.core.types.Data` is a torch Dataset (not a tensor pair)."""
    return isinstance(split, TorchDataset)


class Pairs:
    """An ``(x, y)`` pair of tensors already normalised, read by index."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index].to(torch.float32), self.y[index]


class Items:
    """A torch Dataset of raw ``(x, y)`` items, stacked into batches and normalised.

    ``mean`` and ``std`` broadcast against a batch (per channel ``[1, C, 1, 1]`` for images,
    per element ``[1, *shape]`` otherwise); None leaves the inputs as they are.
    """

    def __init__(
        self,
        dataset: TorchDataset,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        self.dataset, self.mean, self.std = dataset, mean, std

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def raw(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The items at ``index`` stacked as float32 inputs and targets, not normalised."""
        items = [self.dataset[i] for i in index.tolist()]
        try:
            x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(torch.float32)
            y = torch.stack([torch.as_tensor(item[1]) for item in items])
        except (TypeError, IndexError, RuntimeError) as e:
            raise ValueError(
                f"dataset items do not stack ({one_line(e, with_type=True)}); "
                "accepted: (x, y) pairs of arrays or tensors, one shape for every x"
            ) from e
        return x, y

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.raw(index)
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x, y


class Joined:
    """Two stores one after the other (the weight and architecture halves as one split)."""

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cut = len(self.first)
        low = index < cut
        if bool(low.all()):
            return self.first.fetch(index)
        if not bool(low.any()):
            return self.second.fetch(index - cut)
        xa, ya = self.first.fetch(index[low])
        xb, yb = self.second.fetch(index[~low] - cut)
        x = torch.empty((len(index), *xa.shape[1:]), dtype=xa.dtype)
        y = torch.empty((len(index), *ya.shape[1:]), dtype=torch.promote_types(ya.dtype, yb.dtype))
        x[low], x[~low] = xa, xb
        y[low], y[~low] = ya.to(y.dtype), yb.to(y.dtype)
        return x, y


@dataclass(frozen=True)
class Source:
    """One split: the examples ``indices`` of ``store``, in that order."""

    store: Any  # Pairs, Items or Joined: anything with __len__ and fetch(index)
    indices: torch.Tensor

    def __len__(self) -> int:
        return len(self.indices)

    def fetch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (float32, normalised) and targets of the split's examples at ``positions``."""
        return self.store.fetch(self.indices[positions])

    def materialise(self, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as tensors in memory, read in order (by ``workers`` processes)."""
        if isinstance(self.store, Pairs):
            return self.fetch(torch.arange(len(self)))
        keys = [(torch.arange(i, min(i + PASS_BATCH, len(self))), None) for i in _starts(self)]
        xs, ys = [], []
        for x, y in loader(self, keys, workers):
            xs.append(x)
            ys.append(y)
        return torch.cat(xs), torch.cat(ys)


class Batches(TorchDataset):
    """A map-style dataset whose items are whole batches of a source, requested by key.

    Workers gather, normalise and augment the batch, so the main process only copies it on.
    """

    def __init__(self, source: Source) -> None:
        self.source = source

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        positions, params = key
        x, y = self.source.fetch(positions)
        if params is not None:
            x = augment.apply(x, params)
        return x, y


def loader(
    source: Source, keys: Sequence[Key], workers: int, *, pin: bool = False
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``keys``, in order, read by ``workers`` processes (0: this process).

    The loader has its own generator, so that reading never draws from the global one.
    """
    if workers == 0 or len(keys) <= 1:
        batches = Batches(source)
        return (_pinned(batches[k], pin) for k in keys)
    return DataLoader(
        Batches(source),
        batch_size=None,
        sampler=keys,
        num_workers=min(workers, len(keys)),
        pin_memory=pin,
        generator=torch.Generator(),
    )


def _pinned(
    batch: tuple[torch.Tensor, torch.Tensor], pin: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    return (x.pin_memory(), y.pin_memory()) if pin else batch


def prefetch(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` on ``device``, each copied (non-blocking) while the one before is in use."""
    if device.type == "cpu":
        yield from batches
        return
    ahead: tuple[torch.Tensor, torch.Tensor] | None = None
    for x, y in batches:
        moved = (x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        if ahead is not None:
            yield ahead
        ahead = moved
    if ahead is not None:
        yield ahead


def estimated_bytes(examples: int, input_shape: Sequence[int]) -> int:
    """Bytes that ``examples`` float32 inputs of ``input_shape`` take in memory."""
    return examples * math.prod(input_shape) * 4


def statistics(
    items: Items, workers: int, *, targets: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Mean and std of the raw inputs of ``items`` (per channel for images, per element
    otherwise), in one streaming pass accumulated in float64; and the targets when asked.

    The results broadcast against a batch, as :class:`Items` uses them.
    """
    source = Source(Items(items.dataset), torch.arange(len(items)))
    keys = [(torch.arange(i, min(i + PASS_BATCH, len(source))), None) for i in _starts(source)]
    total = total_sq = None
    count = 0
    ys = []
    for x, y in loader(source, keys, workers):
        x = x.to(torch.float64)
        dims = (0, 2, 3) if x.dim() == 4 else (0,)
        s, sq = x.sum(dims, keepdim=True), (x * x).sum(dims, keepdim=True)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += x.numel() // s.numel()
        if targets:
            ys.append(y)
    if total is None or total_sq is None:
        raise ValueError("the train split is empty; accepted: at least one example")
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    mean, std = normaliser(mean.to(torch.float32), std.to(torch.float32))
    return mean, std, torch.cat(ys) if targets else None


def normaliser(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as float32 with constant channels left centred, not divided by ~0
    (the rule of the built-in datasets)."""
    mean, std = mean.to(torch.float32), std.to(torch.float32)
    return mean, torch.where(std > 1e-6 * (1.0 + mean.abs()), std, torch.ones_like(std))


def _starts(source: Source) -> range:
    return range(0, len(source), PASS_BATCH)


def stores(data: Data, workers: int) -> tuple[dict[str, Any], torch.Tensor]:
    """The splits of ``data`` (train, test, val) as stores, Datasets normalised with the given
    or the computed train statistics; and the train targets where regression needs them to
    fit its objective (an empty tensor otherwise: a Dataset's targets are read only then)."""
    raw = {"train": data.train, "test": data.test, "val": data.val}
    mean = std = y_train = None
    if any(is_streamed(v) for v in raw.values()):
        mean, std = _given_stats(data)
        if is_streamed(data.train) and (mean is None or data.task.kind == "regression"):
            m, s, y_train = statistics(Items(data.train), workers, targets=True)
            if mean is None:
                mean, std = m, s
    out: dict[str, Any] = {}
    for name, split in raw.items():
        if split is None:
            continue
        if is_streamed(split):
            out[name] = Items(split, mean, std)
        else:
            out[name] = Pairs(*_pair(name, split))
    if y_train is None and isinstance(out["train"], Pairs):
        y_train = out["train"].y
    if y_train is None:
        y_train = torch.zeros(0, dtype=torch.int64)
    return out, y_train


def resident(data: Data, workers: int = 0) -> Data:
    """``data`` with every Dataset split read into normalised tensors (the resident form).

    For tests and for small data; the trainer does the same itself where it keeps data
    resident.
    """
    if not data.streams:
        return data
    parts, _ = stores(data, workers)
    pairs = {
        name: Source(store, torch.arange(len(store))).materialise(workers)
        for name, store in parts.items()
    }
    train = parts["train"]
    mean, std = (train.mean, train.std) if isinstance(train, Items) else (data.mean, data.std)
    return dataclasses.replace(
        data,
        train=pairs["train"],
        test=pairs["test"],
        val=pairs.get("val"),
        mean=None if mean is None else torch.as_tensor(mean).flatten(),
        std=None if std is None else torch.as_tensor(std).flatten(),
    )


def _pair(name: str, split: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A resident split as an (inputs, targets) pair of tensors, or one line of ValueError."""
    if (
        not isinstance(split, (tuple, list))
        or len(split) != 2
        or not all(isinstance(v, torch.Tensor) for v in split)
    ):
        raise ValueError(
            f"data.{name} is a {type(split).__name__}; accepted: an (x, y) pair of tensors "
            "or a torch.utils.data.Dataset"
        )
    return split[0], split[1]


def _given_stats(data: Data) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``data.mean`` and ``data.std`` shaped to broadcast against a batch, or (None, None)."""
    if data.mean is None and data.std is None:
        return None, None
    if data.mean is None or data.std is None:
        raise ValueError("data gives only one of mean and std; accepted: both or neither")
    shape = tuple(data.task.input_shape)
    per = (1, shape[0], 1, 1) if len(shape) == 3 else (1, *shape)
    out = []
    for what, v in (("mean", data.mean), ("std", data.std)):
        t = torch.as_tensor(v, dtype=torch.float32).flatten()
        if t.numel() == 1:
            t = t.expand(math.prod(per))
        if t.numel() != math.prod(per):
            raise ValueError(
                f"data.{what} has {t.numel()} values for input shape {shape}; accepted: one "
                f"value, or one per {'channel' if len(shape) == 3 else 'input element'}"
            )
        out.append(t.reshape(per))
    mean, std = out
    if not bool((std > 0).all()) or not bool(torch.isfinite(mean).all()):
        raise ValueError("data.std must be positive and data.mean finite; accepted: real numbers")
    return mean, std
