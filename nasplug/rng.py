"""Seeding, and the state of every random generator as plain data for checkpoints."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["get_rng_state", "rng_digest", "seed_everything", "set_rng_state"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the core
        pass


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
