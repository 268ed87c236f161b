"""The polytope of a group of choices, of which exactly ``k`` are used.

A :class:`~nasplug.types.Group` of ``E`` choices (a cell node's incoming edges), each with
candidates (its ops, ``none`` left out), gives the polytope

    P = {x >= 0 : every member's row sums to at most 1, all of x sums to k}.

A member's slack means "unused". P's vertices are exactly the genotypes the DARTS rule can
derive (k members, one candidate each), and the rule itself maximises ``<z, x>`` over P.
:func:`group_projection` is the Euclidean projection onto P (sparsemax is its case of one
member and k = 1); :func:`nearest_vertex` is the vertex that maximises ``<z, x>``, also the one
nearest to ``z``. Structure-aware relaxations build on both; :func:`vertex_distance` measures how
far mixing weights still are from a genotype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasplug.types import Choice, Group

__all__ = [
    "Layout",
    "group_layout",
    "group_projection",
    "is_vertex",
    "nearest_vertex",
    "vertex_distance",
]

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
    _check_group(rows, k)
    best = torch.stack([r.max() for r in rows])
    order = torch.sort(best, descending=True, stable=True).indices[:k].tolist()
    out = [torch.zeros_like(r) for r in rows]
    for e in order:
        out[e][int(torch.argmax(rows[e]))] = 1.0
    return out


def group_projection(rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """The Euclidean projection of a group's rows onto ``P = {x >= 0 : every row sums to at most
    1, all of x sums to k}``, with its exact Jacobian.

    The KKT conditions give one threshold ``tau`` for the group and, per row, the row's own
    simplex (sparsemax) threshold ``t_e``: ``x[e, j] = max(z[e, j] - max(tau, t_e), 0)``. A row
    with ``t_e >= tau`` is *capped* (its sparsemax, mass 1); the others hold ``max(z - tau, 0)``,
    with ``tau`` set so that the total is ``k`` (all rows capped when ``k`` equals their
    number). The total is piecewise linear and non-increasing in ``tau``, with breaks at the
    ``t_e`` and the entries, so the piece holding the root is found exactly, without gradients;
    the thresholds are then computed again, in closed form, inside autograd, which makes the
    Jacobian exact (a Kyrillidis et al. 2013 style sparse projection with capped rows).

    Args:
        rows: one 1-D tensor per member (lengths may differ).
        k: the group's mass, between 1 and ``len(rows)``.
    """
    _check_group(rows, k)
    sizes = [len(r) for r in rows]
    width = max(sizes)
    with torch.no_grad():
        z = _padded([r.detach().double() for r in rows], width)
        valid = _valid(sizes, width, z.device)
        t = _simplex_threshold(z)  # (E,)
        mid = float("-inf")  # a tau inside the piece holding the root; any, when all are capped
        if k < len(rows):
            # The total mass at every break point, in ascending order; it is len(rows) at the
            # lowest (every row capped) and 0 at the highest entry.
            breaks = torch.cat([t, z[valid]]).unique()
            thr = torch.maximum(breaks[:, None, None], t[None, :, None])
            mass = ((z[None] - thr).clamp_min(0) * valid).sum(dim=(1, 2))
            i = int((mass <= k).nonzero()[0])  # the root lies between breaks i-1 and i
            mid = float(breaks[i - 1] + breaks[i]) / 2
        capped = t >= mid
        free = ~capped[:, None] & valid & (z > mid)
        support = capped[:, None] & valid & (z > t[:, None])
    # Inside autograd: the same thresholds from the same active sets, in closed form.
    zg = _padded(list(rows), width)
    t_g = ((zg * support).sum(1) - 1.0) / support.sum(1).clamp_min(1)
    n_free = int(free.sum())
    if n_free:
        tau = ((zg * free).sum() - (k - int(capped.sum()))) / n_free
        thr = torch.where(capped, t_g, tau)
    else:
        thr = t_g
    x = torch.where(support | free, (zg - thr[:, None]).clamp_min(0), torch.zeros_like(zg))
    return [x[e, :n] for e, n in enumerate(sizes)]


def _check_group(rows: Sequence[torch.Tensor], k: int) -> None:
    if not rows or not 1 <= k <= len(rows):
        raise ValueError(
            f"a group of {len(rows)} choices cannot use k={k}; accepted: 1..{len(rows)}"
        )
    if any(r.dim() != 1 or len(r) == 0 for r in rows):
        raise ValueError("each member of a group must be a non-empty 1-D tensor of logits")


def _padded(rows: Sequence[torch.Tensor], width: int) -> torch.Tensor:
    """Rows stacked into a matrix, short ones padded with a value below every threshold."""
    low = min(float(r.detach().min()) for r in rows) - 2.0  # thresholds are >= max - 1
    return torch.stack([torch.nn.functional.pad(r, (0, width - len(r)), value=low) for r in rows])


def _valid(sizes: Sequence[int], width: int, device: torch.device) -> torch.Tensor:
    return torch.arange(width, device=device)[None, :] < torch.tensor(sizes, device=device)[:, None]


def _simplex_threshold(z: torch.Tensor) -> torch.Tensor:
    """Per row, sparsemax's threshold: ``sparsemax(z)[j] = max(z[j] - t, 0)``."""
    zs = z.sort(dim=1, descending=True).values
    cum = zs.cumsum(dim=1) - 1.0
    n = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    size = (zs * n > cum).sum(dim=1)  # the support is a prefix of the sorted row
    return cum.gather(1, (size - 1)[:, None]).squeeze(1) / size.to(z.dtype)


def vertex_distance(rows: Sequence[torch.Tensor], k: int) -> float:
    """Euclidean distance from ``rows`` to their nearest vertex of P (0.0 at a vertex)."""
    vertex = nearest_vertex(rows, k)
    squares = (((r.double() - v.double()) ** 2).sum() for r, v in zip(rows, vertex, strict=True))
    return float(torch.sqrt(sum(squares, torch.zeros((), dtype=torch.float64))))


def is_vertex(rows: Sequence[torch.Tensor], k: int) -> bool:
    """Whether ``rows`` are exactly a vertex of P: ``k`` rows one-hot, the others all zero."""
    return all(torch.equal(r, v) for r, v in zip(rows, nearest_vertex(rows, k), strict=True))
