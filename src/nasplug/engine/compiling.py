"""Whether ``torch.compile`` works here, checked before a search starts."""

from __future__ import annotations

import functools

import torch
from torch import nn

from nasplug.core.errors import one_line

__all__ = ["check_compile", "has_forward"]


def has_forward(module: nn.Module) -> bool:
    """Whether ``module`` is ever called (containers of parameters such as ArchLogits are not)."""
    return type(module).forward is not nn.Module.forward


@functools.cache
def check_compile(backend: str, device: torch.device) -> None:
    """Raise ValueError unless ``torch.compile`` with ``backend`` works on ``device``.

    A tiny function is compiled and run once (once per process), so that a missing compiler
    (inductor needs a C++ compiler on the CPU and Triton on GPUs) is reported before a search
    starts, not mid-step.
    """
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise ValueError(f"unknown compile backend {backend!r}; available: {', '.join(backends)}")
    try:
        fn = torch.compile(lambda x: torch.relu(x) * 2 + 1, backend=backend)
        fn(torch.ones(8, device=device))
    except Exception as e:  # any failure of the toolchain means: not usable here
        raise ValueError(
            f"--compile {backend}: torch.compile does not work on {device.type} here "
            f"({one_line(e)}); run without --compile"
        ) from e
