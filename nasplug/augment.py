"""Data augmentation of image batches on the device."""

from __future__ import annotations

import torch

__all__ = ["cutout"]


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero one random ``size`` x ``size`` square per image (DARTS's evaluation augmentation)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), device=x.device)
    cx = torch.randint(0, w, (n,), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    half = size // 2
    hole = ((ys - cy.view(n, 1, 1)).abs() <= half) & ((xs - cx.view(n, 1, 1)).abs() <= half)
    return x * (~hole).unsqueeze(1).to(x.dtype)
