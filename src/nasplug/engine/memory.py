"""What a network needs in memory, estimated before any of it is allocated.

A network is first built on PyTorch's ``meta`` device, which records shapes and allocates
nothing; its parameter count gives a lower bound of what training it takes. A network that
cannot fit in the memory available on the device is refused in one line, instead of being
allocated until the machine swaps or the process is killed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from nasplug.core.options import OptionError

__all__ = ["available_bytes", "check_fits", "on_meta", "training_bytes"]

_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


def on_meta(build: Callable[[], _ModuleT]) -> _ModuleT | None:
    """``build()`` with every tensor on the meta device, or None when the network cannot be
    built there (code that reads tensor values): the caller then builds it for real."""
    try:
        with torch.device("meta"):
            return build()
    except Exception:  # noqa: BLE001 - the real build reports the plugin's own error
        return None


def training_bytes(module: nn.Module) -> int:
    """A lower bound of the memory that training ``module`` takes: its parameters, their
    gradients and the optimiser's momentum, plus its buffers, as float32 (activations, which
    grow with the batch, come on top)."""
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for b in module.buffers())
    return 4 * (3 * params + buffers)


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this process on ``device``; None where it cannot be told (MPS)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        return _host_available()
    return None


def check_fits(module: nn.Module, device: torch.device, what: str, accepted: str) -> None:
    """Raise OptionError when training ``module`` (built on the meta device) cannot fit in the
    memory available on ``device``; ``what`` names the network, ``accepted`` the way out."""
    need, have = training_bytes(module), available_bytes(device)
    if have is None or need <= have:
        return
    params = sum(p.numel() for p in module.parameters())
    raise OptionError(
        f"{what} has {params:,} parameters: training it needs at least {_gb(need)} (weights, "
        f"gradients and momentum as float32), more than the {_gb(have)} available on {device}; "
        f"accepted: {accepted}"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def _host_available() -> int | None:
    """MemAvailable of the host, or what a container's memory limit leaves, whichever is less."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            found.append(max(int(limit) - int(used), 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def count_params(model: nn.Module) -> int:
    """Parameters used at inference: an ``auxiliary_head`` serves training only (as in DARTS)."""
    aux = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in aux.parameters()} if isinstance(aux, nn.Module) else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
