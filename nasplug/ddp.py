"""Data-parallel search under ``torchrun``: process group set-up and small collectives.

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) every function is a no-op for a
single process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["broadcast_object", "is_distributed", "rank", "setup", "world_size"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup() -> int:
    """Join the process group that ``torchrun`` describes; return this process's rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return rank()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
