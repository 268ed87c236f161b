"""BatchNorm running statistics kept across a computation that would change them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["running_stats_kept"]


@contextlib.contextmanager
def running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Undo whatever the block does to the BatchNorm running statistics of ``module``.

    For passes that must not count: a recomputation of a forward that already counted its batch
    (restoring the buffers, rather than switching the statistics off, leaves unchanged what
    BatchNorm saves for backward), or statistics re-estimated for one evaluation only.
    """
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [[b.clone() for b in m.buffers()] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, copies in zip(norms, saved, strict=True):
                for b, c in zip(m.buffers(), copies, strict=True):
                    b.copy_(c)
