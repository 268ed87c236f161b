"""Preparing new inputs for a found or trained network as the run's data was prepared.

The trainer feeds networks inputs normalised with the train split's statistics (per channel for
images, per input element otherwise). :class:`Normalisation` holds those statistics and applies
them to raw inputs; a run keeps them in its directory (``inputs.json``), so that a run read back
later prepares inputs the same way.

Example:
    >>> import numpy as np
    >>> norm = Normalisation((2,), mean=(1.0, 10.0), std=(2.0, 5.0))
    >>> norm(np.array([[3.0, 20.0]])).tolist()
    [[1.0, 2.0]]
    >>> Normalisation.from_dict(norm.to_dict()) == norm
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasplug.run.rundir import INPUTS

__all__ = ["Normalisation", "load"]


@dataclass(frozen=True)
class Normalisation:
    """``(x - mean) / std`` for inputs of ``input_shape``: one value per channel of images
    ``(C, H, W)``, one per input element otherwise."""

    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        shape = tuple(int(v) for v in self.input_shape)
        count = shape[0] if len(shape) == 3 else math.prod(shape)
        mean, std = _floats(self.mean), _floats(self.std)
        if len(mean) == 1:
            mean = mean * count
        if len(std) == 1:
            std = std * count
        if len(mean) != count or len(std) != count:
            raise ValueError(
                f"normalisation of inputs {shape} has {len(mean)} means and {len(std)} stds; "
                f"accepted: one, or {count} of each"
            )
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def _broadcast(self, values: tuple[float, ...]) -> torch.Tensor:
        shape = self.input_shape
        per = (1, shape[0], 1, 1) if len(shape) == 3 else (1, *shape)
        return torch.tensor(values, dtype=torch.float32).reshape(per)

    def __call__(self, x: Any) -> torch.Tensor:
        """Raw inputs ``x`` (an array or tensor of shape ``(N, *input_shape)``, or one example
        of ``input_shape``) as the float32 batch the network takes.

        Raises:
            ValueError: ``x`` has another shape.
        """
        t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        t = t.to(torch.float32)
        if tuple(t.shape) == self.input_shape:
            t = t.unsqueeze(0)
        if tuple(t.shape[1:]) != self.input_shape:
            raise ValueError(
                f"inputs of shape {tuple(t.shape)}; accepted: (N, {', '.join(map(str, self.input_shape))}) "
                f"or one example of shape {self.input_shape}"
            )
        return (t - self._broadcast(self.mean)) / self._broadcast(self.std)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalisation:
        try:
            return cls(tuple(d["input_shape"]), tuple(d["mean"]), tuple(d["std"]))
        except (KeyError, TypeError) as e:
            raise ValueError(
                "a normalisation is a JSON object with input_shape, mean and std"
            ) from e

    @classmethod
    def of(
        cls,
        input_shape: Sequence[int],
        mean: Sequence[float] | torch.Tensor | None,
        std: Sequence[float] | torch.Tensor | None,
    ) -> Normalisation | None:
        """The normalisation of these statistics, or None when they are unknown."""
        if mean is None or std is None:
            return None
        return cls(tuple(input_shape), _floats(mean), _floats(std))


def _floats(v: Any) -> tuple[float, ...]:
    if isinstance(v, torch.Tensor):
        return tuple(float(f) for f in v.detach().cpu().flatten().tolist())
    return tuple(float(f) for f in np.asarray(v, dtype=np.float64).ravel())


def load(run_dir: str | Path) -> Normalisation:
    """The normalisation a run directory kept (``inputs.json``), to prepare new inputs.

    Raises:
        ValueError: the run kept none (it has not finished, or predates this file).
    """
    path = Path(run_dir) / INPUTS
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{path} does not exist: the run has not finished, or was made by a version that "
            "did not keep its input statistics"
        ) from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read: {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a JSON object with input_shape, mean and std")
    return Normalisation.from_dict(d)
