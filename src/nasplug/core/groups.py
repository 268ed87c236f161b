"""What a group of choices means: its members' candidates, and the networks it can derive.

A group keeps ``k`` of its members, each with one candidate (the DARTS rule). The contracts use
this to derive a genotype; :mod:`nasplug.searchlib.polytope` builds its projections on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasplug.core.types import Choice, Group

__all__ = ["Layout", "check_group", "group_layout", "nearest_vertex"]

#: Per group: its name, its ``k``, and per member the choice's name with the positions of the
#: candidates it keeps (all but the group's ``unused`` one).
Layout = list[tuple[str, int, list[tuple[str, list[int]]]]]


def group_layout(choices: Sequence[Choice], groups: Sequence[Group]) -> Layout:
    """Every group in order, then every choice outside them as a group of its own with k = 1
    (sparsemax is the projection onto that group's polytope, the argmax its vertex).

    Raises a one-line ValueError for a group naming an unknown choice, a choice in two groups,
    or a member whose only candidate is the group's ``unused`` one.
    """
    by_name = {c.name: c for c in choices}
    seen: set[str] = set()
    out: Layout = []
    for g in groups:
        missing = [n for n in g.choices if n not in by_name]
        if missing:
            raise ValueError(f"group {g.name!r} names unknown choice {missing[0]!r}")
        if seen & set(g.choices):
            raise ValueError(f"choice {sorted(seen & set(g.choices))[0]!r} is in two groups")
        seen |= set(g.choices)
        members = [
            (n, [i for i, cand in enumerate(by_name[n].candidates) if cand != g.unused])
            for n in g.choices
        ]
        if not all(keep for _, keep in members):
            raise ValueError(f"a choice of group {g.name!r} has no candidate but {g.unused!r}")
        out.append((g.name, g.k, members))
    out += [
        (c.name, 1, [(c.name, list(range(len(c.candidates))))])
        for c in choices
        if c.name not in seen
    ]
    return out


def nearest_vertex(rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """The DARTS rule as mixing weights: the ``k`` rows whose largest entry is largest, each
    one-hot on that entry; every other row all zeros.

    It is the vertex of ``P = {x >= 0 : rows sum to at most 1, all sums to k}`` that maximises
    ``<z, x>``, and so the vertex nearest to ``z`` (every vertex has norm sqrt(k)). Ties go to
    the earlier entry of a row, then to the earlier row, as in the cell space's derive rule.
    """
    check_group(rows, k)
    best = torch.stack([r.max() for r in rows])
    order = torch.sort(best, descending=True, stable=True).indices[:k].tolist()
    out = [torch.zeros_like(r) for r in rows]
    for e in order:
        out[e][int(torch.argmax(rows[e]))] = 1.0
    return out


def check_group(rows: Sequence[torch.Tensor], k: int) -> None:
    if not rows or not 1 <= k <= len(rows):
        raise ValueError(
            f"a group of {len(rows)} choices cannot use k={k}; accepted: 1..{len(rows)}"
        )
    if any(r.dim() != 1 or len(r) == 0 for r in rows):
        raise ValueError("each member of a group must be a non-empty 1-D tensor of logits")
