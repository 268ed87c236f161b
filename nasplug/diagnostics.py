"""What a user reads to judge a relaxation: per-edge entropy, support size and dominant candidate."""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from nasplug.types import Choice

__all__ = ["edge_stats", "summarize"]


def edge_stats(choices: tuple[Choice, ...], weights: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One row per choice: entropy (nats) of its weights, support size and dominant candidate."""
    rows = []
    for c in choices:
        w = weights[c.name].detach().float().cpu()
        p = w.clamp_min(0)
        p = p / p.sum() if float(p.sum()) > 0 else p
        nz = p[p > 0]
        rows.append({
            "choice": c.name,
            "entropy": float(-(nz * nz.log()).sum()),
            "support": int((w != 0).sum()),
            "dominant": c.candidates[int(torch.argmax(w))],
            "candidates": list(c.candidates),
            "weights": [round(float(v), 6) for v in w],
        })
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean entropy, mean and max support over choices."""
    if not rows:
        return {}
    return {
        "mean_entropy": sum(r["entropy"] for r in rows) / len(rows),
        "mean_support": sum(r["support"] for r in rows) / len(rows),
        "max_support": float(max(r["support"] for r in rows)),
        "max_entropy": math.log(max(len(r["weights"]) for r in rows)),
    }
