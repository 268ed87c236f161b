"""What runs give back: a trained network (:class:`TrainRun`), and what becomes of a run
that fails (:class:`RunFailed`, :func:`noting_outcome`).

A search's result, :class:`~nasplug.run.searching.SearchRun`, lives with the search, since it
can train its genotype; training takes it by what it holds (:class:`SearchOutcome`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nasplug.core.interfaces import SearchSpace
    from nasplug.core.types import Data, Genotype
    from nasplug.run.inputs import Normalisation

__all__ = [
    "RunFailed",
    "SearchOutcome",
    "TrainRun",
    "finished_line",
    "note_outcome",
    "noting_outcome",
    "prepare_inputs",
]

T = TypeVar("T")


class RunFailed(Exception):
    """A run failed after it had kept something (a checkpoint, a result); the cause is chained
    (``__cause__``) and the run directory can be resumed."""


@runtime_checkable
class SearchOutcome(Protocol):
    """What training takes from a finished search: its genotype, space and data, the settings
    it stored and its metrics (a :class:`~nasplug.run.searching.SearchRun` has them)."""

    genotype: Genotype
    metrics: dict[str, Any]
    space: SearchSpace
    data: Data
    config: dict[str, Any]
    run_dir: Path | None


@dataclass
class TrainRun:
    """What :func:`nasplug.train` gives: the trained network, its test metrics and history.

    ``result`` is what ``train.json`` holds (``test_<metric>``, ``params``, ``seconds``, ...);
    ``config`` what the run's ``config.json`` holds.
    """

    result: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    config: dict[str, Any]
    run_dir: Path | None = None
    normalisation: Normalisation | None = None

    @property
    def metric(self) -> float:
        """The test value of the task's headline metric."""
        return float(self.result[f"test_{self.result['metric']}"])

    def prepare(self, x: Any) -> torch.Tensor:
        """Raw inputs (an array or tensor of ``(N, *input_shape)``, or one example) normalised
        as the training data was: what :attr:`model` takes."""
        return prepare_inputs(self.normalisation, x)

    def predict(self, x: Any) -> torch.Tensor:
        """The trained network's outputs (logits for classification) for raw inputs ``x``."""
        import torch

        device = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad():
            return self.model(self.prepare(x).to(device)).float().cpu()

    def __repr__(self) -> str:
        where = f", run_dir={str(self.run_dir)!r}" if self.run_dir else ""
        return (
            f"TrainRun({self.result['method']}, test_{self.result['metric']}={self.metric:.4f}, "
            f"params={self.result['params']}{where})"
        )


def prepare_inputs(normalisation: Normalisation | None, x: Any) -> torch.Tensor:
    """``x`` normalised as a run's data was; a run whose data did not say how is refused."""
    if normalisation is None:
        raise ValueError(
            "this run's data did not say how its inputs were normalised (a Data built by hand "
            "without mean and std); normalise new inputs as you did the data"
        )
    return normalisation(x)


def finished_line(path: Path, command: str) -> str:
    """What a resume of a finished run says."""
    return (
        f"nasplug: {path} is finished; nothing was run or changed (its results follow; "
        f"`nasplug show {path}` prints them, and a new `nasplug {command} --out` starts again)"
    )


def noting_outcome(work: Callable[[], T], run: Any, command: str, *, created: bool) -> T:
    """``work()``; a failure says what became of ``run`` (see :func:`note_outcome`) and, where
    the run had kept something, becomes a :class:`RunFailed`."""
    try:
        return work()
    except Exception as e:
        if note_outcome(e, run, command, created=created):
            raise  # nothing ran that could be kept: an input error stays an input error
        raise RunFailed(str(e)) from e
    except BaseException as e:
        note_outcome(e, run, command, created=created)
        raise


def note_outcome(e: BaseException, run: Any, command: str, *, created: bool) -> bool:
    """Say on ``e`` what became of the run directory: removed when it held nothing to resume
    (so that it does not block the next try), otherwise how to resume it. Returns whether it
    was removed."""
    if created and run.abandon():
        e.add_note(f"run directory {run.path} removed: it held nothing to resume")
        return True
    if isinstance(e, (KeyboardInterrupt, OSError)):
        e.add_note(f"resume with `nasplug {command} --resume {run.path}`")
    return False
