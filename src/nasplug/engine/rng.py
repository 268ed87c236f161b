"""Seeding, the CPU thread count, and the state of every random generator as plain data for
checkpoints."""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "check_threads",
    "current_threads",
    "fixed_threads",
    "get_rng_state",
    "resumed_threads",
    "rng_digest",
    "seed_everything",
    "set_rng_state",
]

#: The most intra-op threads a run may ask for (more than any machine's cores).
MAX_THREADS = 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the core
        pass


@contextmanager
def fixed_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at ``threads``, then restore it.

    Reductions split over another number of threads round differently, so a search repeats
    bit for bit only at the thread count it started with; a run records it and a resume uses
    it again. None leaves the count as it is.
    """
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def current_threads() -> int:
    """torch's intra-op thread count in this process."""
    return torch.get_num_threads()


def check_threads(threads: Any) -> None:
    """``threads``: None (torch's current count) or an integer from 1 to :data:`MAX_THREADS`."""
    from nasplug.core.options import OptionError

    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS
    ):
        raise OptionError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")


def resumed_threads(started: Any, given: Any) -> Any:
    """The thread count a resumed run uses: the one it ``started`` with (None for a run from
    before the count was recorded), unless one is ``given`` again; says when it differs from
    this process's count or from the run's."""
    check_threads(given)
    now = current_threads()
    if given is not None and started is not None and given != started:
        print(
            f"nasplug: warning: resuming with {given} threads where the run started with "
            f"{started}: it will not repeat bit for bit",
            file=sys.stderr,
        )
    elif given is None and started is not None and started != now:
        print(
            f"nasplug: resuming with {started} threads as the run started (this process had "
            f"{now}), so that it repeats bit for bit",
            file=sys.stderr,
        )
    return started if given is None else given


def rng_digest() -> str:
    state = get_rng_state()
    h = hashlib.sha256(state["torch"].numpy().tobytes())
    h.update(repr(state["python"]).encode())
    if "cuda" in state:
        h.update(state["cuda"].numpy().tobytes())
    return h.hexdigest()


def get_rng_state() -> dict[str, Any]:
    """The generators' states; for CUDA, the current device's only, which is the device a
    trainer uses (each rank's own GPU under ``torchrun``), so that any rank can restore it."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_plain_to_py_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        if isinstance(state["cuda"], torch.Tensor):
            torch.cuda.set_rng_state(state["cuda"])
        else:  # checkpoints that saved every device's state
            torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(s: tuple) -> list:
    return [s[0], list(s[1]), s[2]]


def _plain_to_py_state(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])
