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

**Under a linear constraint.** A :class:`~nasplug.types.LinearConstraint` ``a . x <= b`` (for
example "a cell's mass on parameter-free candidates is at most M", 0/1 coefficients) couples the
groups it spans. :func:`constrained_projection` projects all of them at once onto the product
of their polytopes cut by the constraint: one more multiplier ``lam``, found by a monotone
one-dimensional search, and each group's projection of ``z - lam * a``.
:func:`constrained_vertex` is the genotype maximising ``<z, x>`` under the constraint, exactly
(a multiple-choice knapsack, solved over Pareto fronts of cost and score). With 0/1
coefficients and an integer bound the constraint matrix stays totally unimodular, so the cut
polytope's vertices are still genotypes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from nasplug.types import Choice, Group, LinearConstraint

__all__ = [
    "Coupling",
    "Layout",
    "cap_constraints",
    "constrained_projection",
    "constrained_vertex",
    "constraint_layout",
    "group_layout",
    "group_projection",
    "is_vertex",
    "least_cost",
    "nearest_vertex",
    "vertex_distance",
]

#: Per group: its name, its ``k``, and per member the choice's name with the positions of the
#: candidates it keeps (all but the group's ``unused`` one).
Layout = list[tuple[str, int, list[tuple[str, list[int]]]]]
#: Per constraint: the constraint, the positions in a :data:`Layout` of the groups it spans, and
#: per such group and member the coefficient of each kept candidate.
Coupling = list[tuple[LinearConstraint, list[int], list[list[list[float]]]]]


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


# --- several groups under one linear constraint ------------------------------------------------

#: The active sets of a block of groups, as boolean arrays (groups, members[, candidates]): the
#: capped rows (each on its own simplex), the entries of the other rows above their group's
#: threshold (free), the support of the capped rows.
_Sets = tuple[np.ndarray, np.ndarray, np.ndarray]
#: A point of a Pareto front: (cost, score, chosen (group, member, candidate) entries).
_Option = tuple[float, float, tuple[tuple[int, int, int], ...]]


def cap_constraints(
    parameter_free: Mapping[str, Sequence[tuple[str, str]]], cap: float
) -> tuple[LinearConstraint, ...]:
    """Per cell, "its mass on parameter-free candidates is at most ``cap``" (0/1 coefficients).

    ``parameter_free`` maps a cell to its (choice, candidate) entries that hold no parameters,
    as :class:`~nasplug.interfaces.DeclaresParameterFree` spaces report them; cells without any
    are left out.
    """
    return tuple(
        LinearConstraint(f"{cell}:parameter-free", tuple((c, k, 1.0) for c, k in entries), cap)
        for cell, entries in parameter_free.items()
        if entries
    )


def constraint_layout(
    choices: Sequence[Choice], layout: Layout, constraints: Sequence[LinearConstraint]
) -> Coupling:
    """Per constraint, the positions in ``layout`` of the groups it spans and, per such group and
    member, the coefficient of every kept candidate (0.0 where the constraint names none).

    Raises a one-line ValueError for a term naming an unknown choice or candidate, a group that
    two constraints span, or a constraint no genotype meets (naming the least cost there is).
    """
    candidates = {c.name: c.candidates for c in choices}
    where = {
        name: (g, e)
        for g, (_, _, members) in enumerate(layout)
        for e, (name, _) in enumerate(members)
    }
    taken: dict[int, str] = {}
    out: Coupling = []
    for c in constraints:
        spanned: dict[int, list[list[float]]] = {}
        for choice, candidate, coefficient in c.terms:
            if choice not in where:
                raise ValueError(f"constraint {c.name!r} names unknown choice {choice!r}")
            if candidate not in candidates[choice]:
                raise ValueError(
                    f"constraint {c.name!r}: {candidate!r} is not a candidate of {choice!r}; "
                    f"candidates: {', '.join(candidates[choice])}"
                )
            g, e = where[choice]
            members = layout[g][2]
            rows = spanned.setdefault(g, [[0.0] * len(keep) for _, keep in members])
            position = candidates[choice].index(candidate)
            if position in members[e][1]:  # a group's unused candidate carries no mass
                rows[e][members[e][1].index(position)] = float(coefficient)
        for g in spanned:
            if g in taken:
                raise ValueError(
                    f"group {layout[g][0]!r} is spanned by constraints {taken[g]!r} and "
                    f"{c.name!r}; accepted: at most one constraint per group"
                )
            taken[g] = c.name
        positions = sorted(spanned)
        costs = [spanned[g] for g in positions]
        least = least_cost([layout[g][1] for g in positions], costs)
        if least > c.bound + _slack(c.bound):
            raise ValueError(
                f"constraint {c.name!r} cannot be met: its bound is {c.bound:g}, the least "
                f"any genotype costs is {least:g}"
            )
        out.append((c, positions, costs))
    return out


def least_cost(ks: Sequence[int], costs: Sequence[Sequence[Sequence[float]]]) -> float:
    """The smallest ``a . x`` over the groups' polytopes: in each, the ``k`` cheapest members."""
    return float(
        sum(sum(sorted(min(row) for row in group)[:k]) for k, group in zip(ks, costs, strict=True))
    )


def constrained_projection(
    groups: Sequence[Sequence[torch.Tensor]],
    ks: Sequence[int],
    costs: Sequence[Sequence[torch.Tensor]],
    bound: float,
) -> list[list[torch.Tensor]]:
    """The Euclidean projection of several groups' rows onto the product of their polytopes cut
    by ``sum(a * x) <= bound``, with its exact Jacobian.

    The KKT conditions give one more multiplier ``lam >= 0``: the solution is each group's
    :func:`group_projection` of ``z - lam * a``, and the constraint's left side is continuous,
    piecewise linear and non-increasing in ``lam``. So ``lam`` is found without gradients by a
    bracketing search whose steps are the roots of the pieces (bisection where they leave the
    bracket); the active sets at the root then give ``x`` and ``lam`` in closed form inside
    autograd, as :func:`group_projection` does. Where the constraint is slack at ``lam = 0``
    the result is :func:`group_projection` per group, bit for bit. All groups are computed at
    once, padded into one (groups, members, candidates) block.

    Args:
        groups: per group, one 1-D tensor of logits per member.
        ks: per group, its mass.
        costs: the coefficients ``a``, shaped as ``groups``, non-negative.
        bound: the constraint's bound; at least the least cost (see :func:`least_cost`).
    """
    for rows, k in zip(groups, ks, strict=True):
        _check_group(rows, k)
    block = _Block(groups)
    flat_z = torch.cat([torch.cat(list(rows)) for rows in groups])
    flat_a = torch.cat([torch.cat(list(rows)) for rows in costs]).to(flat_z)
    z = block.padded(flat_z.detach().double().cpu().numpy(), -math.inf)
    a = block.padded(flat_a.detach().double().cpu().numpy(), 0.0)
    mass = np.array(ks, dtype=np.float64)
    found = _multiplier(z, a, block.members, mass, float(bound))
    if found is None:
        return [group_projection(rows, k) for rows, k in zip(groups, ks, strict=True)]
    (capped, free, support), flat = found
    device = flat_z.device
    capped_t, free_t, support_t = (torch.from_numpy(m).to(device) for m in (capped, free, support))
    index = torch.from_numpy(block.index).to(device)
    zg = flat_z.new_zeros(z.size).index_copy(0, index, flat_z).view(z.shape)
    ag = flat_a.new_zeros(a.size).index_copy(0, index, flat_a).view(a.shape)
    free_mass = torch.from_numpy(mass - capped.sum(axis=1)).to(zg)
    x = _above_thresholds(zg, capped_t, free_t, support_t, 1.0, free_mass)
    if not flat:  # on a flat piece (the constraint's side constant in lam) x does not need lam
        d = _above_thresholds(ag, capped_t, free_t, support_t, 0.0, torch.zeros_like(free_mass))
        x = x - ((ag * x).sum() - bound) / (ag * d).sum() * d
    x = torch.where(support_t | free_t, x.clamp_min(0), torch.zeros_like(x))
    parts = iter(x.reshape(-1).index_select(0, index).split(block.sizes))
    return [[next(parts) for _ in rows] for rows in groups]


def constrained_vertex(
    groups: Sequence[Sequence[torch.Tensor]],
    ks: Sequence[int],
    costs: Sequence[Sequence[torch.Tensor]],
    bound: float,
) -> list[list[torch.Tensor]]:
    """The genotype maximising ``<z, x>`` with ``sum(a * x) <= bound``, as one-hot rows.

    Each group keeps ``k`` members with one candidate each. Where the DARTS rule's vertex
    (:func:`nearest_vertex` per group) meets the constraint it is the answer, ties broken as
    there; otherwise an exact multiple-choice knapsack: per member the Pareto front of (cost,
    candidate's logit), per group the front of its ``k``-member choices, then the groups' fronts
    combined, dominated options pruned at every stage. With 0/1 coefficients and an integer
    bound (a cap on parameter-free candidates) it is also the capped polytope's vertex nearest
    to ``z``.
    """
    for rows, k in zip(groups, ks, strict=True):
        _check_group(rows, k)
    plain = [nearest_vertex(rows, k) for rows, k in zip(groups, ks, strict=True)]
    cost = sum(
        float((v.double() * c.double().to(v.device)).sum())
        for vs, cs in zip(plain, costs, strict=True)
        for v, c in zip(vs, cs, strict=True)
    )
    if cost <= bound + _slack(bound):
        return plain
    front: list[_Option] = [(0.0, 0.0, ())]
    for g, (rows, k, a_rows) in enumerate(zip(groups, ks, costs, strict=True)):
        z = [r.detach().double().cpu().tolist() for r in rows]
        a = [c.detach().double().cpu().tolist() for c in a_rows]
        front = _pareto([_joined(f, o) for f in front for o in _group_front(z, a, k, g)])
    feasible = [f for f in front if f[0] <= bound + _slack(bound)]
    out = [[torch.zeros_like(r) for r in rows] for rows in groups]
    for g, e, j in feasible[-1][2]:  # the front's score rises with its cost
        out[g][e][j] = 1.0
    return out


def _slack(bound: float) -> float:
    """How far above ``bound`` a cost computed in floating point still meets it."""
    return 1e-9 * max(1.0, abs(bound))


def _joined(a: _Option, b: _Option) -> _Option:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _pareto(options: list[_Option]) -> list[_Option]:
    """The options no other beats in both cost and score, by rising cost (and so score); of
    equal ones, the first listed."""
    out: list[_Option] = []
    for option in sorted(options, key=lambda o: (o[0], -o[1])):
        if not out or option[1] > out[-1][1]:
            out.append(option)
    return out


def _group_front(z: list[list[float]], a: list[list[float]], k: int, g: int) -> list[_Option]:
    """The Pareto front of a group's genotypes: ``k`` members, one candidate each."""
    table: list[list[_Option]] = [[(0.0, 0.0, ())]]
    table += [[] for _ in range(k)]
    for e, (zr, ar) in enumerate(zip(z, a, strict=True)):
        options = _pareto([(ar[j], zr[j], ((g, e, j),)) for j in range(len(zr))])
        for used in range(min(e + 1, k), 0, -1):  # downwards: a member is used at most once
            table[used] = _pareto(
                table[used] + [_joined(t, o) for t in table[used - 1] for o in options]
            )
    return table[k]


class _Block:
    """Where every entry of several groups' rows sits in one (groups, members, candidates)
    array: ``index`` into its flattened form, in the order of the rows' concatenation."""

    def __init__(self, groups: Sequence[Sequence[torch.Tensor]]) -> None:
        self.sizes = [len(r) for rows in groups for r in rows]
        members, width = max(len(rows) for rows in groups), max(self.sizes)
        self.shape = (len(groups), members, width)
        self.index = np.concatenate(
            [
                (g * members + e) * width + np.arange(len(r))
                for g, rows in enumerate(groups)
                for e, r in enumerate(rows)
            ]
        )
        self.members = np.zeros(self.shape[:2], dtype=bool)
        for g, rows in enumerate(groups):
            self.members[g, : len(rows)] = True

    def padded(self, flat: np.ndarray, value: float) -> np.ndarray:
        out = np.full(self.shape, value)
        out.reshape(-1)[self.index] = flat
        return out


def _above_thresholds(
    v: torch.Tensor,
    capped: torch.Tensor,
    free: torch.Tensor,
    support: torch.Tensor,
    row_mass: float,
    free_mass: torch.Tensor,
) -> torch.Tensor:
    """``v`` minus the thresholds that give each capped row ``row_mass`` and each group's free
    entries ``free_mass`` in all, on the active sets (zero elsewhere), in closed form."""
    t = ((v * support).sum(2) - row_mass) / support.sum(2).clamp_min(1)
    tau = ((v * free).sum((1, 2)) - free_mass) / free.sum((1, 2)).clamp_min(1)
    thr = torch.where(capped, t, tau[:, None])
    return torch.where(support | free, v - thr[..., None], torch.zeros_like(v))


def _multiplier(
    z: np.ndarray, a: np.ndarray, members: np.ndarray, ks: np.ndarray, bound: float
) -> tuple[_Sets, bool] | None:
    """The active sets at the constraint's multiplier, and whether its piece is flat; None when
    the constraint is slack without it. ``z`` is padded with -inf, ``a`` with 0; ``members``
    marks the real rows."""
    tol = _slack(bound)
    flat = 1e-12 * max(1.0, float((a * a).sum()))

    def at(lam: float) -> tuple[float, float, float, _Sets]:
        y = z - lam * a
        sets = _np_sets(y, members, ks)
        return lam, float((a * _np_solution(y, ks, sets)).sum()), _np_slope(a, sets), sets

    lo = at(0.0)
    if lo[1] <= bound + tol:
        return None
    lam, hi = float(np.ptp(z[np.isfinite(z)])) + 1.0, None
    for _ in range(2000):
        point = at(lam)
        if point[1] <= bound + tol:
            hi = point
            break
        lo, lam = point, 2 * lam
    if hi is None:  # constraint_layout rules this out
        raise ValueError(f"no genotype meets the constraint's bound {bound:g}")
    for _ in range(500):
        if hi[1] >= bound - tol or _same(lo[3], hi[3]) or hi[0] - lo[0] <= 1e-15 * hi[0]:
            break
        lam = lo[0] + (lo[1] - bound) / lo[2] if lo[2] > flat else math.nan
        if not lo[0] < lam < hi[0]:
            lam = hi[0] + (hi[1] - bound) / hi[2] if hi[2] > flat else math.nan
        if not lo[0] < lam < hi[0]:
            lam = (lo[0] + hi[0]) / 2
        point = at(lam)
        lo, hi = (point, hi) if point[1] > bound + tol else (lo, point)
    if hi[1] >= bound - tol:  # hi is the root
        if hi[2] > flat:
            # If the piece right of the root is flat at the bound, its sets give x without
            # lam, exactly: a vertex stays exactly one-hot.
            right = at(hi[0] + 1e-9 * max(1.0, hi[0]))
            if right[1] >= bound - tol and right[2] <= flat:
                return right[3], True
        return hi[3], hi[2] <= flat
    if lo[2] > flat:  # lo's piece reaches the root
        return lo[3], False
    return hi[3], hi[2] <= flat


def _same(a: _Sets, b: _Sets) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _np_sets(y: np.ndarray, members: np.ndarray, ks: np.ndarray) -> _Sets:
    """:func:`group_projection`'s active sets of every group of a block at once, in numpy
    (entries padded with -inf; ``members`` marks the real rows)."""
    valid = np.isfinite(y)
    ys = -np.sort(-y, axis=2)
    cum = np.cumsum(ys, axis=2) - 1.0
    size = (ys * np.arange(1, y.shape[2] + 1) > cum).sum(axis=2)
    last = np.take_along_axis(cum, np.maximum(size - 1, 0)[..., None], axis=2)[..., 0]
    t = np.where(members, last / np.maximum(size, 1), -np.inf)
    # Each group's threshold lies between two of its break points, the first where its mass
    # falls to k; the padding's break points are +inf, where the mass is 0.
    breaks = np.concatenate(
        [np.where(members, t, np.inf), np.where(valid, y, np.inf).reshape(len(y), -1)], axis=1
    )
    breaks.sort(axis=1)
    thr = np.maximum(breaks[:, :, None, None], t[:, None, :, None])
    with np.errstate(invalid="ignore"):
        above = np.clip(y[:, None] - thr, 0.0, None)
    mass = np.where(valid[:, None], above, 0.0).sum(axis=(2, 3))
    i = np.maximum(np.argmax(mass <= ks[:, None], axis=1), 1)
    rows = np.arange(len(y))
    mid = (breaks[rows, i - 1] + breaks[rows, i]) / 2
    mid = np.where(ks < members.sum(axis=1), mid, -np.inf)  # k = members: every row capped
    capped = members & (t >= mid[:, None])
    free = ~capped[..., None] & valid & (y > mid[:, None, None])
    return capped, free, capped[..., None] & valid & (y > t[..., None])


def _np_solution(y: np.ndarray, ks: np.ndarray, sets: _Sets) -> np.ndarray:
    capped, free, support = sets
    t = (np.where(support, y, 0.0).sum(axis=2) - 1.0) / np.maximum(support.sum(axis=2), 1)
    n_free = np.maximum(free.sum(axis=(1, 2)), 1)
    tau = (np.where(free, y, 0.0).sum(axis=(1, 2)) - (ks - capped.sum(axis=1))) / n_free
    t = np.where(capped, t, tau[:, None])
    with np.errstate(invalid="ignore"):
        return np.where(support | free, np.maximum(y - t[..., None], 0.0), 0.0)


def _np_slope(a: np.ndarray, sets: _Sets) -> float:
    """How fast the constraint's side falls with lam on this piece: per active set S, the
    squared norm of ``a`` centred on S."""
    _, free, support = sets
    on = np.where(support, a, 0.0)
    rows = (on * on).sum(axis=2) - on.sum(axis=2) ** 2 / np.maximum(support.sum(axis=2), 1)
    off = np.where(free, a, 0.0)
    n_free = np.maximum(free.sum(axis=(1, 2)), 1)
    groups = (off * off).sum(axis=(1, 2)) - off.sum(axis=(1, 2)) ** 2 / n_free
    return float(rows.sum() + groups.sum())
