"""What a user reads to judge a relaxation: per-edge entropy, support size and dominant candidate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from nasplug.core.types import Choice, Group
from nasplug.searchlib.polytope import group_layout, is_vertex, vertex_distance

__all__ = ["at_vertex", "edge_stats", "group_rows", "group_stats", "summarize", "summarize_groups"]


def edge_stats(
    choices: tuple[Choice, ...], weights: Mapping[str, torch.Tensor]
) -> list[dict[str, Any]]:
    """One row per choice: entropy (nats) of its weights, support size and dominant candidate."""
    rows = []
    for c in choices:
        w = weights[c.name].detach().float().cpu()
        p = w.clamp_min(0)
        p = p / p.sum() if float(p.sum()) > 0 else p
        nz = p[p > 0]
        rows.append(
            {
                "choice": c.name,
                "entropy": float(-(nz * nz.log()).sum()) + 0.0,  # + 0.0: no "-0.000" at one-hot
                "support": int((w != 0).sum()),
                "dominant": c.candidates[int(torch.argmax(w))],
                "candidates": list(c.candidates),
                "weights": [round(float(v), 6) for v in w],
            }
        )
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


def group_rows(
    choices: tuple[Choice, ...], groups: tuple[Group, ...], weights: Mapping[str, torch.Tensor]
) -> list[tuple[str, int, list[torch.Tensor]]]:
    """``(name, k, rows)`` of every group, its members' weights without the ``unused``
    candidate; a choice outside every group is a group of its own with k = 1 (see
    :func:`~nasplug.searchlib.polytope.group_layout`)."""
    return [
        (name, k, [weights[n].detach().float().cpu()[keep] for n, keep in members])
        for name, k, members in group_layout(choices, groups)
    ]


def group_stats(
    choices: tuple[Choice, ...], groups: tuple[Group, ...], weights: Mapping[str, torch.Tensor]
) -> list[dict[str, Any]]:
    """One row per declared group: each member's mass, how many carry any, the group's total
    and its distance to the nearest vertex (a genotype the derive rule can give)."""
    rows = []
    # group_rows lists the declared groups first, then each choice outside them: those are left out.
    for group, (_, k, members) in zip(groups, group_rows(choices, groups, weights), strict=False):
        mass = [float(r.sum()) for r in members]
        rows.append(
            {
                "group": group.name,
                "k": k,
                "members": list(group.choices),
                "mass": [round(m, 6) for m in mass],
                "total": round(sum(mass), 6),
                "active": sum(m > 0 for m in mass),
                "distance": vertex_distance(members, k),
            }
        )
    return rows


def summarize_groups(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean active members per group, mean and largest distance to the nearest vertex."""
    if not rows:
        return {}
    return {
        "mean_active": sum(r["active"] for r in rows) / len(rows),
        "mean_vertex_distance": sum(r["distance"] for r in rows) / len(rows),
        "max_vertex_distance": max(r["distance"] for r in rows),
    }


def at_vertex(
    choices: tuple[Choice, ...], groups: tuple[Group, ...], weights: Mapping[str, torch.Tensor]
) -> bool:
    """Whether the weights are a vertex of every group (choices outside groups: one-hot)."""
    return all(is_vertex(rows, k) for _, k, rows in group_rows(choices, groups, weights))
