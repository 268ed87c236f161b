"""What the built-in relaxations share: the search-progress clock of the annealed ones
(:class:`Schedule`, :class:`Scheduled`, :class:`Tempered`) and the cap on a cell's
parameter-free candidates (:class:`CellCap`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nasplug.core.interfaces import DeclaresParameterFree, Relaxation, SearchSpace
from nasplug.core.types import LinearConstraint
from nasplug.searchlib.polytope import cap_constraints

#: Accepted schedule shapes, for the ``schedule`` options.
SHAPES: tuple[str, ...] = ("constant", "linear", "exp", "cosine")
#: Keeps (logits + noise) / tau finite in float32 even for diverged (infinite) logits.
LOGIT_BOUND = 1e6


@dataclass(frozen=True)
class Schedule:
    """A value that moves from ``start`` (progress 0) to ``end`` (progress 1).

    Shapes: ``constant`` (always ``start``), ``linear``, ``exp`` (geometric: equal ratios in
    equal times, for temperatures spanning decades) and ``cosine`` (slow at both ends).

    Example:
        >>> Schedule("tau", 1.0, 0.01, "exp").value(0.5)
        0.1
    """

    name: str
    start: float
    end: float
    shape: str = "exp"

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(
                f"unknown {self.name} schedule {self.shape!r}; accepted: {', '.join(SHAPES)}"
            )
        if self.shape == "exp" and (self.start <= 0 or self.end <= 0):
            raise ValueError(
                f"an exp {self.name} schedule needs positive start and end, "
                f"got {self.start} and {self.end}"
            )

    def value(self, progress: float) -> float:
        t = min(max(progress, 0.0), 1.0)
        if self.shape == "constant":
            return self.start
        if self.shape == "linear":
            return self.start + (self.end - self.start) * t
        if self.shape == "exp":
            return self.start * (self.end / self.start) ** t
        return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * t)) / 2.0


class Scheduled(Relaxation):
    """A relaxation whose parameters follow :class:`Schedule` s of the search progress.

    Subclasses pass their schedules by name and read the current values with ``value(name)``.
    """

    def __init__(self, *schedules: Schedule, span: float = 1.0) -> None:
        if not 0.0 < span <= 1.0:
            raise ValueError(f"a schedule's span must be in (0, 1], got {span}")
        self._schedules = {s.name: s for s in schedules}
        self._span = span  # the schedules reach their end values at this progress
        self._epoch, self._epochs, self._step, self._steps = 0, 1, 0, 1

    @property
    def progress(self) -> float:
        """Where the search stands, from 0 (first step) to 1 (last step)."""
        done = self._epoch * self._steps + self._step
        return min(max(done / max(self._epochs * self._steps - 1, 1), 0.0), 1.0)

    def value(self, name: str) -> float:
        return self._schedules[name].value(self.progress / self._span)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        if epochs < 1 or epoch < 0:
            raise ValueError(f"epoch {epoch} of {epochs}: need epochs >= 1 and epoch >= 0")
        # The step count of the previous epoch is kept, so that progress at the start of an
        # epoch equals progress at its first on_step.
        self._epoch, self._epochs, self._step = epoch, epochs, 0

    def on_step(self, step: int, steps: int) -> None:
        if steps < 1 or step < 0:
            raise ValueError(f"step {step} of {steps}: need steps >= 1 and step >= 0")
        self._step, self._steps = step, steps

    def state_dict(self) -> dict[str, Any]:
        """The clock, plus the current scheduled values (for logs; they follow from the clock)."""
        state: dict[str, Any] = {
            "epoch": self._epoch,
            "epochs": self._epochs,
            "step": self._step,
            "steps": self._steps,
        }
        state.update({name: self.value(name) for name in self._schedules})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._epoch, self._epochs = int(state["epoch"]), int(state["epochs"])
        self._step, self._steps = int(state["step"]), int(state["steps"])


class Tempered(Scheduled):
    """A relaxation of ``logits / tau``; the temperature runs from ``tau_start`` to ``tau_end``."""

    def __init__(
        self, tau_start: float, tau_end: float, schedule: str, *more: Schedule, span: float = 1.0
    ) -> None:
        if tau_start <= 0 or tau_end <= 0:
            raise ValueError(
                f"temperatures must be > 0, got tau_start={tau_start}, tau_end={tau_end}"
            )
        super().__init__(Schedule("tau", tau_start, tau_end, schedule), *more, span=span)

    @property
    def tau(self) -> float:
        return self.value("tau")


class CellCap:
    """The ``grouped`` and ``cap`` options of a relaxation that can cap each cell's
    parameter-free candidates, and the constraints they ask for (see
    :class:`~nasplug_builtins.relaxations.sparse.Sparsemax`)."""

    grouped: bool
    cap: int | None

    def _set_cap(self, grouped: bool, cap: int | None) -> None:
        if cap is not None and cap < 0:
            raise ValueError(
                "cap must be >= 0 (the most parameter-free candidates a cell keeps) or none, "
                f"got {cap}"
            )
        self.grouped, self.cap = grouped, cap

    def constraints(self, space: SearchSpace) -> tuple[LinearConstraint, ...]:
        """The cap on each cell's parameter-free mass, where the space declares those
        candidates; none without a cap or by choice (``grouped=false``)."""
        if self.cap is None or not self.grouped or not isinstance(space, DeclaresParameterFree):
            return ()
        return cap_constraints(space.parameter_free(), self.cap)
