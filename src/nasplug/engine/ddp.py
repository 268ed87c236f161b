"""Data-parallel search under ``torchrun``: process group set-up and the few collectives it needs.

Every rank holds the whole (small) dataset and the same model. Each global batch is split into
equal shards, one per rank; after every backward the gradients are averaged over the ranks, so
weights and architecture logits stay bitwise identical everywhere and every rank derives the same
genotype. Gradients are averaged by hand (:func:`average_gradients`) rather than by wrapping the
model in ``DistributedDataParallel``: a search freezes and unfreezes parameter groups between
half-steps, skips zero-weight candidates (parameters without a gradient in a step) and takes
gradients with ``torch.autograd.grad`` in the second-order step, all of which ``DDP``'s reducer
handles poorly or not at all, while one coalesced ``all_reduce`` per update is simple and exact.

Outside ``torchrun`` (no ``WORLD_SIZE`` above 1 in the environment) every function is a no-op for
a single process.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "any_rank",
    "average_gradients",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "check_batch_size",
    "fingerprint",
    "gather_object",
    "gather_tensor",
    "is_distributed",
    "local_rank",
    "rank",
    "setup",
    "shard",
    "sum_tensors",
    "sync_buffers",
    "teardown",
    "world_size",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup() -> int:
    """Join the process group that ``torchrun`` describes; return this process's rank.

    With CUDA, each process uses the GPU of its ``LOCAL_RANK``; CPU tensors go through gloo and
    CUDA tensors through NCCL, so ``--device cpu`` also works on a GPU machine.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
    return rank()


def barrier() -> None:
    """Wait until every rank gets here (a no-op outside ``torchrun``)."""
    if is_distributed():
        dist.barrier()


def teardown() -> None:
    """Leave the process group (a no-op outside ``torchrun``)."""
    if is_distributed():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def check_batch_size(batch_size: int) -> None:
    """Raise ValueError unless ``batch_size`` splits into equal shards over the ranks.

    Equal shards make the averaged gradient the gradient of the whole batch's mean loss, and make
    every rank draw the same amount of randomness per step (dropout masks are drawn per element),
    so that random samples shared by all ranks (Gumbel, random paths) stay identical.
    """
    world = world_size()
    if batch_size % world:
        raise ValueError(
            f"batch size {batch_size} does not split evenly over {world} processes; "
            f"use a multiple of {world}"
        )


def shard(index: torch.Tensor) -> torch.Tensor:
    """This rank's equal share of a global batch's ``index``; the last ``len % world`` entries of a
    batch that does not divide evenly (only an epoch's last, partial batch) are left out."""
    world = world_size()
    if world == 1:
        return index
    per = len(index) // world
    return index[rank() * per : (rank() + 1) * per]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def fingerprint(obj: Any) -> str:
    """A short digest of plain data (JSON-able), to compare results between ranks."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _coalesced(tensors: list[torch.Tensor], collective: Any) -> None:
    """Run ``collective`` on one flat buffer per (device, dtype) and copy the result back."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
    for t in tensors:
        groups[(t.device, t.dtype)].append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        collective(flat)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view(t.shape))
            offset += n


def _average(flat: torch.Tensor) -> None:
    dist.all_reduce(flat)
    flat.div_(world_size())


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace every gradient by its mean over the ranks (one ``all_reduce`` per dtype).

    Parameters without a gradient are left out; that set is the same on every rank, because the
    mixing weights that decide which candidates run are identical everywhere.
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        with torch.no_grad():
            _coalesced(grads, _average)


def any_rank(flag: torch.Tensor) -> torch.Tensor:
    """Whether ``flag`` (a boolean scalar) is true on any rank, as a tensor on its device."""
    if not is_distributed():
        return flag
    n = flag.to(torch.int32)
    dist.all_reduce(n, op=dist.ReduceOp.MAX)
    return n.bool()


def sum_tensors(tensors: list[torch.Tensor]) -> None:
    """Replace every tensor by its sum over the ranks, in place."""
    if is_distributed() and tensors:
        with torch.no_grad():
            _coalesced(tensors, dist.all_reduce)


def gather_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (of the same shape on every rank), in rank order."""
    if not is_distributed():
        return [tensor]
    out = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(out, tensor.contiguous())
    return out


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank."""
    if not is_distributed():
        return
    tensors = [t.data for t in (*module.parameters(), *module.buffers())]
    if tensors:
        with torch.no_grad():
            _coalesced(tensors, lambda flat: dist.broadcast(flat, src))


def sync_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks; others
    (counters) are taken from rank 0.

    Each rank's statistics come from its own shards, so the average is the better estimate and,
    above all, the same on every rank: evaluation then gives identical metrics everywhere.
    """
    if not is_distributed():
        return
    buffers = list(module.buffers())
    floats = [b for b in buffers if b.is_floating_point()]
    others = [b for b in buffers if not b.is_floating_point()]
    with torch.no_grad():
        if floats:
            _coalesced(floats, _average)
        if others:
            _coalesced(others, lambda flat: dist.broadcast(flat, 0))
