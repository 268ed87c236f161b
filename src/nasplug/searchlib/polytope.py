"""The polytope of a group of choices, of which exactly ``k`` are used.

A :class:`~nasplug.core.types.Group` of ``E`` choices (a cell node's incoming edges), each with
candidates (its ops, ``none`` left out), gives the polytope

    P = {x >= 0 : every member's row sums to at most 1, all of x sums to k}.

A member's slack means "unused". P's vertices are exactly the genotypes the DARTS rule can
derive (k members, one candidate each), and the rule itself maximises ``<z, x>`` over P.
:func:`group_projection` is the Euclidean projection onto P (sparsemax is its case of one
member and k = 1); :func:`nearest_vertex` is the vertex that maximises ``<z, x>``, also the one
nearest to ``z``. Structure-aware relaxations build on both; :func:`vertex_distance` measures how
far mixing weights still are from a genotype.

**Under linear constraints.** A :class:`~nasplug.core.types.LinearConstraint` ``a . x <= b`` (for
example "a cell's mass on parameter-free candidates is at most M", 0/1 coefficients, or a
parameter budget over the whole network, each candidate's cost) couples the groups it spans,
and constraints sharing a group couple theirs into one block (:func:`constraint_layout`).
:func:`constrained_projection` projects a block's groups at once onto the product of their
polytopes cut by all of its constraints: one more multiplier per constraint, and each group's
projection of ``z - sum(lam_i * a_i)``. :func:`constrained_vertex` is the genotype maximising
``<z, x>`` under them, exactly (a multiple-choice knapsack, solved over Pareto fronts of costs
and score). With 0/1 coefficients and an integer bound the constraint matrix stays totally
unimodular, so the cut polytope's vertices are still genotypes; real-valued costs can cut
vertices that are not.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from nasplug.core.groups import Layout, check_group, group_layout, nearest_vertex
from nasplug.core.types import Choice, LinearConstraint

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

#: Per block of groups that constraints link: its constraints, the positions in a :data:`Layout`
#: of the groups it spans, and per constraint, per such group and member, the coefficient of
#: each kept candidate.
Coupling = list[tuple[tuple[LinearConstraint, ...], list[int], list[list[list[list[float]]]]]]


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
    check_group(rows, k)
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


# --- several groups under linear constraints ---------------------------------------------------

#: The active sets of a block of groups, as boolean arrays (groups, members[, candidates]): the
#: capped rows (each on its own simplex), the entries of the other rows above their group's
#: threshold (free), the support of the capped rows.
_Sets = tuple[np.ndarray, np.ndarray, np.ndarray]
#: A group's genotypes as arrays: per genotype its costs (one column per constraint), its score
#: and its chosen entries (positions in the group's concatenated rows, one per used member).
_Options = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Steps of the multipliers' search on the dual before the primal active-set method takes over.
_ROUNDS = 6
#: How many vertices :func:`constrained_vertex` remembers, by the values of its inputs.
_MEMORY = 16
_vertices: OrderedDict[bytes, list[list[torch.Tensor]]] = OrderedDict()


def cap_constraints(
    parameter_free: Mapping[str, Sequence[tuple[str, str]]], cap: float
) -> tuple[LinearConstraint, ...]:
    """Per cell, "its mass on parameter-free candidates is at most ``cap``" (0/1 coefficients).

    ``parameter_free`` maps a cell to its (choice, candidate) entries that hold no parameters,
    as :class:`~nasplug.core.interfaces.DeclaresParameterFree` spaces report them; cells without any
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
    """The blocks of groups that constraints link: constraints sharing a group are in one block.

    Per block (in the order of their first constraints): its constraints, in the order given;
    the positions in ``layout`` of the groups it spans, ascending; and per constraint, per such
    group and member, the coefficient of every kept candidate (0.0 where the constraint names
    none). A constraint that spans no group is met by every genotype and left out.

    Raises a one-line ValueError for a term naming an unknown choice or candidate, a constraint
    no genotype meets (naming the least cost there is), or a block whose constraints no genotype
    meets together (naming the least the first one that cannot be met costs with the ones
    before it met).
    """
    candidates = {c.name: c.candidates for c in choices}
    where = {
        name: (g, e)
        for g, (_, _, members) in enumerate(layout)
        for e, (name, _) in enumerate(members)
    }
    spans: list[dict[int, list[list[float]]]] = []
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
        positions = sorted(spanned)
        least = least_cost([layout[g][1] for g in positions], [spanned[g] for g in positions])
        if least > c.bound + _slack(c.bound):
            raise ValueError(
                f"constraint {c.name!r} cannot be met: its bound is {c.bound:g}, the least "
                f"any genotype costs is {least:g}"
            )
        spans.append(spanned)
    # Constraints linked by a shared group, merged: each points towards its block's first one.
    parent = list(range(len(constraints)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: dict[int, int] = {}
    for i, spanned in enumerate(spans):
        for g in spanned:
            j = root(first.setdefault(g, i))
            parent[max(j, root(i))] = min(j, root(i))
    blocks: dict[int, list[int]] = {}
    for i, spanned in enumerate(spans):
        if spanned:
            blocks.setdefault(root(i), []).append(i)
    out: Coupling = []
    for linked in blocks.values():
        positions = sorted({g for i in linked for g in spans[i]})
        costs = [
            [spans[i].get(g) or [[0.0] * len(keep) for _, keep in layout[g][2]] for g in positions]
            for i in linked
        ]
        block = tuple(constraints[i] for i in linked)
        _check_together(block, [layout[g][1] for g in positions], costs)
        out.append((block, positions, costs))
    return out


def _check_together(
    constraints: Sequence[LinearConstraint],
    ks: Sequence[int],
    costs: Sequence[Sequence[Sequence[Sequence[float]]]],
) -> None:
    """Raises a one-line ValueError where no genotype meets the constraints of a block at once:
    for the first constraint that cannot be met with those before it, the least it costs."""
    arrays = [[[np.asarray(r, dtype=np.float64) for r in g] for g in c] for c in costs]
    bounds = [c.bound for c in constraints]
    for i in range(1, len(constraints)):
        score = [[-r for r in g] for g in arrays[i]]
        picks = _best_genotype(score, ks, arrays[:i], bounds[:i])
        least = -sum(score[g][e][j] for g, chosen in enumerate(picks or []) for e, j in chosen)
        if picks is None or least > bounds[i] + _slack(bounds[i]):
            names = [repr(c.name) for c in constraints[: i + 1]]
            raise ValueError(
                f"constraints {_listed(names)} cannot be met together: with "
                f"{_listed(names[:-1])} met, the least any genotype costs in {names[-1]} is "
                f"{least:g}, its bound is {bounds[i]:g}"
            )


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def least_cost(ks: Sequence[int], costs: Sequence[Sequence[Sequence[float]]]) -> float:
    """The smallest ``a . x`` over the groups' polytopes: in each, the ``k`` cheapest members."""
    return float(
        sum(sum(sorted(min(row) for row in group)[:k]) for k, group in zip(ks, costs, strict=True))
    )


def constrained_projection(
    groups: Sequence[Sequence[torch.Tensor]],
    ks: Sequence[int],
    costs: Sequence[Sequence[Sequence[torch.Tensor]]],
    bounds: Sequence[float],
) -> list[list[torch.Tensor]]:
    """The Euclidean projection of several groups' rows onto the product of their polytopes cut
    by ``sum(a_i * x) <= b_i`` for every constraint ``i``, with its exact Jacobian.

    The KKT conditions give one more multiplier ``lam_i >= 0`` per constraint: the solution is
    each group's :func:`group_projection` of ``z - sum(lam_i * a_i)``. With one constraint, its
    left side is continuous, piecewise linear and non-increasing in ``lam``, so ``lam`` is found
    by a bracketing search whose steps are the roots of the pieces (bisection where they leave
    the bracket). With several, a few steps on the dual first: each to the maximum, along the
    segment, of the dual as it is on the current piece (a concave quadratic, its maximum over
    ``lam >= 0`` found by trying every set of binding constraints), every other step also one
    exact search per multiplier with the others fixed. Where these have not met the KKT
    conditions to ``1e-9`` of each bound (constraints pulling opposite ways, such as a
    cap that wants convolutions and a budget that wants none, make them zig-zag), a primal
    active-set method from the best genotype meeting them all finds the multipliers in finitely
    many steps; they are certified by the same KKT test, or a RuntimeError is raised. All of
    this runs without gradients; the active sets at the multipliers then give
    ``x`` in closed form inside autograd, ``x = X(z) - sum(lam_i * D(a_i))`` on the pieces'
    linear maps, ``lam`` of the binding constraints from a small linear system (constraints
    whose ``D(a_i)`` depend linearly on the others' are left out of it: ``x`` is the same), so
    the Jacobian is exact. Where every constraint is slack the result is
    :func:`group_projection` per group, bit for bit; where one binds, the one-constraint
    projection under it. All groups are computed at once, padded into one (groups, members,
    candidates) block.

    Args:
        groups: per group, one 1-D tensor of logits per member.
        ks: per group, its mass.
        costs: per constraint, its coefficients ``a_i``, shaped as ``groups``, non-negative.
        bounds: per constraint, its bound; together reachable by some genotype (see
            :func:`constraint_layout`).

    Raises:
        RuntimeError: where the multipliers' search does not meet the KKT conditions.
    """
    for rows, k in zip(groups, ks, strict=True):
        check_group(rows, k)
    if len(costs) != len(bounds):
        raise ValueError(f"{len(costs)} cost arrays for {len(bounds)} bounds; give one per bound")
    if not costs:
        return [group_projection(rows, k) for rows, k in zip(groups, ks, strict=True)]
    block = _Block(groups)
    flat_z = torch.cat([torch.cat(list(rows)) for rows in groups])
    flat_a = [torch.cat([torch.cat(list(rows)) for rows in c]).to(flat_z) for c in costs]
    z = block.padded(flat_z.detach().double().cpu().numpy(), -math.inf)
    a = np.stack([block.padded(f.detach().double().cpu().numpy(), 0.0) for f in flat_a])
    mass = np.array(ks, dtype=np.float64)
    b = np.array(bounds, dtype=np.float64)
    if len(b) == 1:
        return _one_cut(groups, ks, block, flat_z, flat_a[0], z, a[0], float(b[0]))
    lam, sets = _multipliers(z, a, block.members, mass, b)
    binding = [i for i in range(len(b)) if lam[i] > 0]
    if not binding:
        return [group_projection(rows, k) for rows, k in zip(groups, ks, strict=True)]
    if len(binding) == 1:
        (i,) = binding
        return _one_cut(groups, ks, block, flat_z, flat_a[i], z, a[i], float(b[i]))
    d = np.stack([_np_linear(a[i], sets, 0.0, np.zeros_like(mass)) for i in binding])
    used = [binding[i] for i in _independent(d.reshape(len(binding), -1))]
    on = _OnSets(block, sets, mass, flat_z.device)
    x = on.solution(flat_z)
    if used:
        ag = [on.placed(flat_a[i]) for i in used]
        ds = [on.direction(ai) for ai in ag]
        gram = torch.stack([torch.stack([(ai * dj).sum() for dj in ds]) for ai in ag])
        side = torch.stack([(ai * x).sum() for ai in ag]) - torch.tensor(b[used]).to(x)
        lams = torch.linalg.solve(gram, side)
        x = x - sum(lam_i * d_i for lam_i, d_i in zip(lams, ds, strict=True))
    return on.rows(x, groups)


def _one_cut(
    groups: Sequence[Sequence[torch.Tensor]],
    ks: Sequence[int],
    block: _Block,
    flat_z: torch.Tensor,
    flat_a: torch.Tensor,
    z: np.ndarray,
    a: np.ndarray,
    bound: float,
) -> list[list[torch.Tensor]]:
    """The projection under one constraint (``z`` and ``a`` padded as ``block`` says)."""
    mass = np.array(ks, dtype=np.float64)
    found = _multiplier(z, a, block.members, mass, bound)
    if found is None:
        return [group_projection(rows, k) for rows, k in zip(groups, ks, strict=True)]
    sets, flat, _ = found
    on = _OnSets(block, sets, mass, flat_z.device)
    x = on.solution(flat_z)
    if not flat:  # on a flat piece (the constraint's side constant in lam) x does not need lam
        ag = on.placed(flat_a)
        d = on.direction(ag)
        x = x - ((ag * x).sum() - bound) / (ag * d).sum() * d
    return on.rows(x, groups)


def constrained_vertex(
    groups: Sequence[Sequence[torch.Tensor]],
    ks: Sequence[int],
    costs: Sequence[Sequence[Sequence[torch.Tensor]]],
    bounds: Sequence[float],
) -> list[list[torch.Tensor]]:
    """The genotype maximising ``<z, x>`` with ``sum(a_i * x) <= b_i`` for every constraint, as
    one-hot rows.

    Each group keeps ``k`` members with one candidate each. Where the DARTS rule's vertex
    (:func:`nearest_vertex` per group) meets every constraint it is the answer, ties broken as
    there. Otherwise an exact multiple-choice knapsack over Pareto fronts of (costs, score):
    per member its candidates, per group its ``k``-member choices, then the groups' fronts
    combined one group at a time. An option is dropped where another beats it in score and in
    every cost still open (a constraint whose groups are all placed is closed), where its costs
    plus the least the remaining groups cost exceed a bound, or where its score plus the best
    the remaining groups can add (bounded plainly and by Lagrangian duality) falls below the
    best genotype found by a Lagrangian search first. With 0/1 coefficients and an integer
    bound (a cap on parameter-free candidates) it is also the capped polytope's vertex nearest
    to ``z``.

    The last few results are remembered by the values of the inputs, so calls on frozen or
    repeated logits cost a lookup.

    Raises:
        ValueError: where no genotype meets the constraints together.
    """
    for rows, k in zip(groups, ks, strict=True):
        check_group(rows, k)
    if len(costs) != len(bounds):
        raise ValueError(f"{len(costs)} cost arrays for {len(bounds)} bounds; give one per bound")
    key = _vertex_key(groups, ks, costs, bounds)
    if key in _vertices:
        _vertices.move_to_end(key)
        return [[r.clone() for r in rows] for rows in _vertices[key]]
    z = [[r.detach().double().cpu().numpy() for r in rows] for rows in groups]
    a = [[[r.detach().double().cpu().numpy() for r in rows] for rows in c] for c in costs]
    plain = [nearest_vertex(rows, k) for rows, k in zip(groups, ks, strict=True)]
    met = all(
        sum(
            float((v.double().cpu().numpy() * ar).sum())
            for vs, ars in zip(plain, ai, strict=True)
            for v, ar in zip(vs, ars, strict=True)
        )
        <= bound + _slack(bound)
        for ai, bound in zip(a, bounds, strict=True)
    )
    if met:
        out = plain
    else:
        picks = _best_genotype(z, ks, a, bounds)
        if picks is None:
            raise ValueError(
                f"no genotype meets the bounds {', '.join(f'{b:g}' for b in bounds)} together"
            )
        out = [[torch.zeros_like(r) for r in rows] for rows in groups]
        for g, chosen in enumerate(picks):
            for e, j in chosen:
                out[g][e][j] = 1.0
    _vertices[key] = [[r.clone() for r in rows] for rows in out]
    if len(_vertices) > _MEMORY:
        _vertices.popitem(last=False)
    return out


def _vertex_key(
    groups: Sequence[Sequence[torch.Tensor]],
    ks: Sequence[int],
    costs: Sequence[Sequence[Sequence[torch.Tensor]]],
    bounds: Sequence[float],
) -> bytes:
    """The inputs' values, shapes, dtype and device as bytes."""
    rows = [r.detach() for g in groups for r in g]
    flat = torch.cat(
        [r.double() for r in rows]
        + [r.detach().double().to(rows[0].device) for c in costs for g in c for r in g]
    )
    shape = (
        tuple(ks),
        tuple(len(r) for r in rows),
        tuple(float(b) for b in bounds),
        len(costs),
        str(rows[0].dtype),
        str(rows[0].device),
    )
    return repr(shape).encode() + flat.cpu().numpy().tobytes()


def _best_genotype(
    z: Sequence[Sequence[np.ndarray]],
    ks: Sequence[int],
    costs: Sequence[Sequence[Sequence[np.ndarray]]],
    bounds: Sequence[float],
) -> list[list[tuple[int, int]]] | None:
    """Per group, the (member, candidate) entries of the genotype of largest score ``z`` that
    meets every bound (see :func:`constrained_vertex`); None where none does."""
    m, n_groups = len(bounds), len(z)
    b = np.array([bound + _slack(bound) for bound in bounds], dtype=np.float64)
    least = np.array(
        [
            [sum(sorted(float(r.min()) for r in c[g])[: ks[g]]) for c in costs]
            for g in range(n_groups)
        ]
    ).reshape(n_groups, m)
    fronts = [
        _group_options(z[g], [c[g] for c in costs], ks[g], b - (least.sum(axis=0) - least[g]))
        for g in range(n_groups)
    ]
    if any(not len(s) for _, s, _ in fronts):
        return None
    tol = 1e-12 * max(1.0, sum(float(np.abs(s).max()) for _, s, _ in fronts))
    mu, bound, found = _lagrangian(fronts, b, tol)
    chosen: list[int] | None
    if found is not None and bound - found[0] <= tol:  # the duality gap is closed
        chosen = found[1]
    else:
        chosen = _combined(fronts, b, least, mu, -math.inf if found is None else found[0] - tol)
        if chosen is None and found is not None:
            chosen = found[1]
    if chosen is None:
        return None
    out = []
    for (_, _, entries), option, rows in zip(fronts, chosen, z, strict=True):
        starts = np.cumsum([0] + [len(r) for r in rows])
        picks = []
        for flat in entries[option].tolist():
            e = int(np.searchsorted(starts, flat, side="right")) - 1
            picks.append((e, int(flat - starts[e])))
        out.append(picks)
    return out


def _combined(
    fronts: Sequence[_Options],
    b: np.ndarray,
    least: np.ndarray,
    mu: np.ndarray,
    floor: float,
) -> list[int] | None:
    """Per group, the option of the best genotype meeting ``b``: the groups' fronts combined
    one at a time, pruned by dominance in the costs still open, by the least the remaining
    groups cost, and by upper bounds on the score against ``floor``; None where none meets it."""
    m = len(b)
    last = np.full(m, -1)
    for g, (c, _, _) in enumerate(fronts):
        last[(c != 0).any(axis=0)] = g
    # Per group, what the groups after it contribute at least (costs) and at most (scores).
    after_least = np.cumsum(least[::-1], axis=0)[::-1] - least
    top = np.array([float(s.max()) for _, s, _ in fronts])
    reduced = np.array([float((s - c @ mu).max()) for c, s, _ in fronts])
    after_top = np.cumsum(top[::-1])[::-1] - top
    after_reduced = np.cumsum(reduced[::-1])[::-1] - reduced + float(mu @ b)
    cost, score = np.zeros((1, m)), np.zeros(1)
    backs = []
    for t, (c, s, _) in enumerate(fronts):
        plain = score[:, None] + s[None, :] + after_top[t]
        dual = (score - cost @ mu)[:, None] + (s - c @ mu)[None, :] + after_reduced[t]
        ok = np.minimum(plain, dual) >= floor
        for i in range(m):
            ok &= cost[:, i, None] + c[None, :, i] <= b[i] - after_least[t, i]
        parent, option = np.nonzero(ok)
        cost, score = cost[parent] + c[option], score[parent] + s[option]
        keep = _front(cost[:, last > t], score)
        cost, score = cost[keep], score[keep]
        backs.append((parent[keep], option[keep]))
        if not len(score):
            return None
    i = int(np.argmax(score))
    chosen = []
    for parent, option in reversed(backs):
        chosen.append(int(option[i]))
        i = int(parent[i])
    return chosen[::-1]


def _lagrangian(
    fronts: Sequence[_Options], b: np.ndarray, tol: float
) -> tuple[np.ndarray, float, tuple[float, list[int]] | None]:
    """Multipliers ``mu >= 0`` whose Lagrangian bound ``max <z - mu A, x> + mu b`` is low, that
    bound, and the best genotype meeting ``b`` among the maximisers seen (its score and per
    group its option), by a subgradient search with Polyak steps."""
    m = len(b)
    spread = np.array([sum(float(np.ptp(c[:, i])) for c, _, _ in fronts) for i in range(m)])
    unit = np.where(spread > 0, spread, 1.0)  # each cost in units of its range
    width = max(sum(float(np.ptp(s)) for _, s, _ in fronts), tol)
    u = np.zeros(m)
    best_mu, best = np.zeros(m), math.inf
    found: tuple[float, list[int]] | None = None
    for step in range(60):
        mu = u / unit
        values = [s - c @ mu for c, s, _ in fronts]
        chosen = [int(np.argmax(v)) for v in values]
        bound = sum(float(v[o]) for v, o in zip(values, chosen, strict=True)) + float(mu @ b)
        cost = sum(c[o] for (c, _, _), o in zip(fronts, chosen, strict=True))
        score = sum(float(s[o]) for (_, s, _), o in zip(fronts, chosen, strict=True))
        if bound < best:
            best, best_mu = bound, mu
        if (cost <= b).all() and (found is None or score > found[0]):
            found = (score, chosen)
        if found is not None and best - found[0] <= tol:
            break
        g = (cost - b) / unit
        g = np.where((u <= 0) & (g < 0), 0.0, g)
        norm = float(g @ g)
        if norm == 0:
            break
        target = found[0] if found is not None else best - width / (1 + step)
        u = np.maximum(u + max(bound - target, tol) / norm * g, 0.0)
    return best_mu, best, found


def _group_options(
    z: Sequence[np.ndarray], a: Sequence[Sequence[np.ndarray]], k: int, cap: np.ndarray
) -> _Options:
    """The Pareto front of a group's genotypes (``k`` members, one candidate each) whose costs
    are at most ``cap``, by falling score."""
    m = len(a)
    starts = np.cumsum([0] + [len(r) for r in z])
    table: list[_Options] = [(np.zeros((1, m)), np.zeros(1), np.zeros((1, 0), dtype=np.int64))]
    table += [
        (np.zeros((0, m)), np.zeros(0), np.zeros((0, u), dtype=np.int64)) for u in range(1, k + 1)
    ]
    for e, row in enumerate(z):
        own = np.stack([ai[e] for ai in a], axis=1).reshape(len(row), m)
        keep = _front(own, row)  # a candidate another beats in score and costs never helps
        own, row_score, entry = own[keep], row[keep], starts[e] + keep
        for used in range(min(e + 1, k), 0, -1):  # downwards: a member is used at most once
            pc, ps, pe = table[used - 1]
            if not len(ps):
                continue
            c = np.concatenate([table[used][0], (pc[:, None] + own[None]).reshape(-1, m)])
            s = np.concatenate([table[used][1], (ps[:, None] + row_score[None]).reshape(-1)])
            picked = np.concatenate(
                [np.repeat(pe, len(row_score), axis=0), np.tile(entry, len(ps))[:, None]], axis=1
            )
            ent = np.concatenate([table[used][2], picked])
            ok = (c <= cap).all(axis=1)
            c, s, ent = c[ok], s[ok], ent[ok]
            front = _front(c, s)
            table[used] = (c[front], s[front], ent[front])
    return table[k]


def _front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Positions of the options no other beats (at least the score at no more of any cost; of
    equal ones, the first listed), by falling score, then rising total cost."""
    n, d = cost.shape
    order = np.lexsort((np.arange(n), cost.sum(axis=1), -score))
    if n <= 1:
        return order
    if d == 0:
        return order[:1]
    c = cost[order]
    if d == 1:
        keep = np.ones(n, dtype=bool)
        keep[1:] = c[1:, 0] < np.minimum.accumulate(c[:, 0])[:-1]
        return order[keep]
    # An option is beaten by an earlier one in this order that costs no more anywhere.
    keep = np.zeros(n, dtype=bool)
    kept: np.ndarray = np.zeros((0, d))
    for start in range(0, n, 256):
        chunk: np.ndarray = c[start : start + 256]
        beaten = np.any(np.all(kept[None] <= chunk[:, None], axis=2), axis=1)
        beaten |= np.tril((chunk[None] <= chunk[:, None]).all(axis=2), -1).any(axis=1)
        keep[start : start + 256] = ~beaten
        kept = np.concatenate([kept, chunk[~beaten]])
    return order[keep]


def _slack(bound: float) -> float:
    """How far above ``bound`` a cost computed in floating point still meets it."""
    return 1e-9 * max(1.0, abs(bound))


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


class _OnSets:
    """A block's active sets as tensors on ``device``: the closed-form pieces, inside autograd,
    of a projection whose multipliers were found without gradients."""

    def __init__(self, block: _Block, sets: _Sets, mass: np.ndarray, device: torch.device) -> None:
        capped, free, support = sets
        self.block = block
        self.capped, self.free, self.support = (
            torch.from_numpy(m).to(device) for m in (capped, free, support)
        )
        self.index = torch.from_numpy(block.index).to(device)
        self.free_mass = mass - capped.sum(axis=1)

    def placed(self, flat: torch.Tensor) -> torch.Tensor:
        """Concatenated rows laid out as the block's (groups, members, candidates) array."""
        size = int(np.prod(self.block.shape))
        return flat.new_zeros(size).index_copy(0, self.index, flat).view(self.block.shape)

    def solution(self, flat_z: torch.Tensor) -> torch.Tensor:
        """``X(z)``: the projection of the logits on these sets without the multipliers."""
        zg = self.placed(flat_z)
        free_mass = torch.from_numpy(self.free_mass).to(zg)
        return _above_thresholds(zg, self.capped, self.free, self.support, 1.0, free_mass)

    def direction(self, placed_a: torch.Tensor) -> torch.Tensor:
        """``D(a)``: how the solution moves per unit of the multiplier of coefficients ``a``."""
        zero = torch.zeros(len(self.free_mass), dtype=placed_a.dtype, device=placed_a.device)
        return _above_thresholds(placed_a, self.capped, self.free, self.support, 0.0, zero)

    def rows(
        self, x: torch.Tensor, groups: Sequence[Sequence[torch.Tensor]]
    ) -> list[list[torch.Tensor]]:
        """``x`` clipped to its active sets, split back into the groups' rows."""
        active = self.support | self.free
        x = torch.where(active, x.clamp_min(0), torch.zeros_like(x))
        parts = iter(x.reshape(-1).index_select(0, self.index).split(self.block.sizes))
        return [[next(parts) for _ in rows] for rows in groups]


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


def _np_linear(v: np.ndarray, sets: _Sets, row_mass: float, free_mass: np.ndarray) -> np.ndarray:
    """:func:`_above_thresholds` in numpy."""
    capped, free, support = sets
    t = (np.where(support, v, 0.0).sum(axis=2) - row_mass) / np.maximum(support.sum(axis=2), 1)
    n_free = np.maximum(free.sum(axis=(1, 2)), 1)
    tau = (np.where(free, v, 0.0).sum(axis=(1, 2)) - free_mass) / n_free
    thr = np.where(capped, t, tau[:, None])
    with np.errstate(invalid="ignore"):
        return np.where(support | free, v - thr[..., None], 0.0)


def _multipliers(
    z: np.ndarray, a: np.ndarray, members: np.ndarray, ks: np.ndarray, bounds: np.ndarray
) -> tuple[np.ndarray, _Sets]:
    """The multipliers of several constraints (``a``: one padded array per constraint) and the
    active sets at them, certified by the KKT conditions to :func:`_slack` of each bound."""
    m = len(bounds)
    tol = np.array([_slack(float(b)) for b in bounds])

    def at(lam: np.ndarray) -> tuple[_Sets, np.ndarray, bool]:
        y = z - np.tensordot(lam, a, axes=1)
        sets = _np_sets(y, members, ks)
        side = (a * _np_solution(y, ks, sets)).sum(axis=(1, 2, 3)) - bounds
        met = bool((side <= tol).all() and (np.abs(side[lam > 0]) <= tol[lam > 0]).all())
        return sets, side, met

    lam = np.zeros(m)
    for step in range(_ROUNDS):
        sets, side, met = at(lam)
        if met:
            return lam, sets
        guess = _newton(z, a, ks, bounds, sets, tol)
        if guess is not None:
            guess_sets, _, guess_met = at(guess)
            if guess_met:
                return guess, guess_sets
            direction, top = guess - lam, 1.0
        else:  # the dual's slope, each multiplier scaled by its constraint's curvature
            curve = np.stack(
                [(ai * _np_linear(ai, sets, 0.0, np.zeros_like(ks))).sum() for ai in a]
            )
            curve = np.maximum(curve, 1e-6 * (a * a).sum(axis=(1, 2, 3)))
            curve[curve == 0] = 1.0  # a constraint naming nothing here: its slope stays 0
            direction = np.where((lam > 0) | (side > 0), side / curve, 0.0)
            shrink = direction < 0
            top = float((lam[shrink] / -direction[shrink]).min()) if shrink.any() else math.inf
        # The dual along the direction is concave: its maximum is where its slope turns.
        y = z - np.tensordot(lam, a, axes=1)
        along = np.tensordot(direction, a, axes=1)
        t = _line(y, along, members, ks, float(direction @ bounds), top)
        lam = np.maximum(lam + t * direction, 0.0)
        if step % 2 == 1:  # a round of exact steps per multiplier: the dual never falls
            for i in range(m):
                others = np.tensordot(np.delete(lam, i), np.delete(a, i, axis=0), axes=1)
                found = _multiplier(z - others, a[i], members, ks, float(bounds[i]))
                lam[i] = 0.0 if found is None else found[2]
    lam = _primal_multipliers(z, a, members, ks, bounds)
    sets, _, met = at(lam)
    if not met:
        raise RuntimeError("the projection's multipliers do not meet the KKT conditions")
    return lam, sets


def _line(
    y: np.ndarray, along: np.ndarray, members: np.ndarray, ks: np.ndarray, target: float, top: float
) -> float:
    """The step ``t`` in ``[0, top]`` where ``along . x(y - t * along) - target`` (the dual's
    slope along a direction: continuous, piecewise linear, non-increasing) turns from positive
    to negative; 0 or ``top`` where it does not."""
    tol = 1e-13 * (1.0 + abs(target) + float(np.abs(along).sum()))
    flat = 1e-12 * max(1e-300, float((along * along).sum()))

    def at(t: float) -> tuple[float, float, float, _Sets]:
        shifted = y - t * along
        sets = _np_sets(shifted, members, ks)
        side = float((along * _np_solution(shifted, ks, sets)).sum()) - target
        return t, side, _np_slope(along, sets), sets

    lo = at(0.0)
    if lo[1] <= tol:
        return 0.0
    if math.isinf(top):
        top = 1.0
        while at(top)[1] > tol and top < 1e300:
            top *= 2
    hi = at(top)
    if hi[1] >= -tol:
        return top
    for _ in range(200):
        if lo[2] > flat and lo[0] < lo[0] + lo[1] / lo[2] <= hi[0] and _same(lo[3], hi[3]):
            return lo[0] + lo[1] / lo[2]
        t = lo[0] + lo[1] / lo[2] if lo[2] > flat else math.nan
        if not lo[0] < t < hi[0]:
            t = hi[0] + hi[1] / hi[2] if hi[2] > flat else math.nan
        if not lo[0] < t < hi[0]:
            t = (lo[0] + hi[0]) / 2
        point = at(t)
        if abs(point[1]) <= tol or hi[0] - lo[0] <= 1e-15 * hi[0]:
            return point[0]
        lo, hi = (point, hi) if point[1] > 0 else (lo, point)
    return lo[0]


def _primal_multipliers(
    z: np.ndarray, a: np.ndarray, members: np.ndarray, ks: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """The constraints' multipliers by a primal active-set method (Nocedal and Wright's
    algorithm 16.3), from the best genotype that meets them: a finite method where the dual
    steps zig-zag between constraints that pull opposite ways (a cap that wants convolutions,
    a budget that wants none). Variables fixed at zero leave the small systems it solves."""
    valid = np.isfinite(z)
    n_groups, n_members, _ = z.shape
    zf = z[valid]
    n, m = len(zf), len(a)
    group = np.broadcast_to(np.arange(n_groups)[:, None, None], z.shape)[valid]
    row = np.broadcast_to(np.arange(n_groups * n_members).reshape(n_groups, n_members, 1), z.shape)[
        valid
    ]
    rows = np.unique(row)
    # Constraint rows c . x (=, <=) d: the groups' sums (kept), the members' sums, the cuts.
    c = np.concatenate(
        [
            (group[None] == np.arange(n_groups)[:, None]).astype(float),
            (row[None] == rows[:, None]).astype(float),
            a[:, valid],
        ]
    )
    d = np.concatenate([ks, np.ones(len(rows)), bounds])
    # Rows of unit norm, so that a budget in FLOPs and a cap in ops are solved alike.
    scale = np.sqrt((c * c).sum(axis=1))
    scale[scale == 0] = 1.0
    c, d = c / scale[:, None], d / scale
    equal = n_groups
    scores = [
        [z[g, e][np.isfinite(z[g, e])] for e in range(n_members) if members[g, e]]
        for g in range(n_groups)
    ]
    costs = [
        [
            [ai[g, e][np.isfinite(z[g, e])] for e in range(n_members) if members[g, e]]
            for g in range(n_groups)
        ]
        for ai in a
    ]
    picks = _best_genotype(scores, [int(k) for k in ks], costs, list(bounds))
    if picks is None:
        raise ValueError("no genotype meets the constraints' bounds together")
    x = np.zeros_like(z)
    for g, chosen in enumerate(picks):
        for e, j in chosen:
            x[g, e, np.flatnonzero(np.isfinite(z[g, e]))[j]] = 1.0
    x = x[valid]
    tiny = 1e-12
    free = x > 0
    working = list(range(equal))
    for i in range(equal, len(c)):
        if abs(c[i] @ x - d[i]) <= tiny * max(1.0, abs(d[i])):
            trial = working + [i]
            if np.linalg.matrix_rank(c[np.ix_(trial, free)]) == len(trial):
                working = trial
    for _ in range(20 * n + 100):
        cf = c[np.ix_(working, free)]
        g = x - zf
        nu = np.linalg.lstsq(cf.T, -g[free], rcond=None)[0]
        step = np.zeros(n)
        step[free] = -g[free] - cf.T @ nu
        if np.abs(step).max() <= 1e-12 * max(1.0, float(np.abs(g).max())):
            bound_nu = g + c[working].T @ nu  # of x_j >= 0, for the variables held at zero
            bound_nu[free] = 0.0
            other = np.array([nu[p] if w >= equal else 0.0 for p, w in enumerate(working)])
            worst_bound = int(np.argmin(bound_nu))
            worst_other = int(np.argmin(other)) if len(other) else 0
            floor = -1e-12 * max(1.0, float(np.abs(zf).max()))
            if bound_nu[worst_bound] >= floor and (not len(other) or other[worst_other] >= floor):
                lam = np.zeros(m)
                for p, w in enumerate(working):
                    if w >= len(c) - m:
                        lam[w - (len(c) - m)] = max(nu[p], 0.0) / scale[w]
                return lam
            if bound_nu[worst_bound] < (other[worst_other] if len(other) else 0.0):
                free[worst_bound] = True
            else:
                working.pop(worst_other)
            continue
        # Step towards the working set's optimum, stopped by the first constraint it meets.
        rate = c @ step
        gap = d - c @ x
        alpha, blocking = 1.0, None
        outside = np.ones(len(c), dtype=bool)
        outside[working] = False
        outside[:equal] = False
        for i in np.flatnonzero(outside & (rate > 1e-15)).tolist():
            if gap[i] / rate[i] < alpha:
                alpha, blocking = max(float(gap[i] / rate[i]), 0.0), ("row", int(i))
        shrinking = free & (step < 0)
        for j in np.flatnonzero(shrinking).tolist():
            if x[j] / -step[j] < alpha:
                alpha, blocking = float(x[j] / -step[j]), ("zero", int(j))
        x = x + alpha * step
        if blocking is not None and blocking[0] == "zero":
            x[blocking[1]] = 0.0
            free[blocking[1]] = False
            # Rows the fixed variable leaves implied by the others go: the systems stay regular.
            kept: list[int] = []
            rank = 0
            for w in working:
                trial = kept + [w]
                r = int(np.linalg.matrix_rank(c[np.ix_(trial, free)])) if free.any() else 0
                if w < equal or r > rank:
                    kept, rank = trial, r
            working = kept
        elif blocking is not None:
            working.append(blocking[1])
    raise RuntimeError("the projection's active-set method did not converge")


def _newton(
    z: np.ndarray,
    a: np.ndarray,
    ks: np.ndarray,
    bounds: np.ndarray,
    sets: _Sets,
    tol: np.ndarray,
) -> np.ndarray | None:
    """The multipliers ``lam >= 0`` that maximise the dual as it is on the piece of ``sets``
    (a concave quadratic: ``x = X(z) - sum(lam_i * D(a_i))`` there), by trying every set of
    binding constraints; None where that quadratic has no maximum over ``lam >= 0``."""
    m = len(a)
    x = _np_linear(z, sets, 1.0, ks - sets[0].sum(axis=1))
    d = np.stack([_np_linear(ai, sets, 0.0, np.zeros_like(ks)) for ai in a]).reshape(m, -1)
    gram = d @ d.T  # a_i . D(a_j), D being an orthogonal projector
    side = (a * x).sum(axis=(1, 2, 3)) - bounds  # the dual's slope at lam = 0
    for size in range(m + 1):
        for binding in itertools.combinations(range(m), size):
            lam = np.zeros(m)
            if binding:
                sub = gram[np.ix_(binding, binding)]
                lam[list(binding)] = np.linalg.lstsq(sub, side[list(binding)], rcond=None)[0]
            slope = side - gram @ lam
            if (
                (lam >= 0).all()
                and (slope <= tol).all()
                and (np.abs(slope[lam > 0]) <= tol[lam > 0]).all()
            ):
                return lam
    return None


def _independent(d: np.ndarray) -> list[int]:
    """Positions of rows of ``d`` that are linearly independent, in order, each kept where it
    adds a direction to those kept before it (zero rows never do)."""
    norms = np.sqrt((d * d).sum(axis=1))
    unit = d / np.where(norms > 0, norms, 1.0)[:, None]
    keep: list[int] = []
    for i in range(len(d)):
        if norms[i] <= 1e-10 * max(float(norms.max()), 1e-300):
            continue
        trial = keep + [i]
        if np.linalg.eigvalsh(unit[trial] @ unit[trial].T).min() > 1e-10:
            keep = trial
    return keep


def _multiplier(
    z: np.ndarray, a: np.ndarray, members: np.ndarray, ks: np.ndarray, bound: float
) -> tuple[_Sets, bool, float] | None:
    """The active sets at the constraint's multiplier, whether its piece is flat, and the
    multiplier; None when the constraint is slack without it. ``z`` is padded with -inf, ``a``
    with 0; ``members`` marks the real rows."""
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
                return right[3], True, hi[0]
        return hi[3], hi[2] <= flat, hi[0]
    if lo[2] > flat:  # lo's piece reaches the root
        return lo[3], False, lo[0] + (lo[1] - bound) / lo[2]
    return hi[3], hi[2] <= flat, hi[0]


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
