"""Several groups under one linear constraint: the projection, its Jacobian and its vertex rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasplug.core.types import Choice, Group, LinearConstraint
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.polytope import (
    cap_constraints,
    constrained_projection,
    constrained_vertex,
    group_projection,
    is_vertex,
    least_cost,
)


def _tensors(groups):
    return [[torch.tensor(r, dtype=torch.float64) for r in g] for g in groups]


def _flat(groups) -> np.ndarray:
    return np.concatenate([np.concatenate([np.asarray(r, dtype=float) for r in g]) for g in groups])


def _brute_force_qp(groups, ks, costs, bound) -> np.ndarray:
    """argmin 1/2 ||x - z||^2 over the groups' polytopes cut by ``a . x <= bound`` (or, with
    lists of costs and bounds, by every such cut): the equality-constrained QP of every active
    set (zero entries, full rows, the cuts), the best feasible solution kept."""
    several = isinstance(bound, list)
    cuts = [_flat(c) for c in costs] if several else [_flat(costs)]
    bounds = bound if several else [bound]
    z = _flat(groups)
    sizes = [len(r) for g in groups for r in g]
    owner = np.repeat(np.arange(len(sizes)), sizes)
    group_of = np.repeat(np.arange(len(groups)), [sum(len(r) for r in g) for g in groups])
    n, best = len(z), None
    for zero in itertools.product((False, True), repeat=n):
        for full in itertools.product((False, True), repeat=len(sizes)):
            if any(f and np.array(zero)[owner == e].all() for e, f in enumerate(full)):
                continue  # a full row with every entry zero
            for cut in itertools.product((False, True), repeat=len(cuts)):
                rows = [np.eye(n)[i] for i in range(n) if zero[i]]
                rows += [(owner == e).astype(float) for e in range(len(sizes)) if full[e]]
                rows += [(group_of == g).astype(float) for g in range(len(groups))]
                rhs = [0.0] * sum(zero) + [1.0] * sum(full) + [float(k) for k in ks]
                rows += [a for a, on in zip(cuts, cut, strict=True) if on]
                rhs += [b for b, on in zip(bounds, cut, strict=True) if on]
                m = np.array(rows)
                kkt = np.block([[np.eye(n), m.T], [m, np.zeros((len(m), len(m)))]])
                b = np.concatenate([z, rhs])
                sol = np.linalg.lstsq(kkt, b, rcond=None)[0]
                x = sol[:n]
                if not np.allclose(kkt @ sol, b, atol=1e-9) or (x < -1e-9).any():
                    continue
                if any(x[owner == e].sum() > 1 + 1e-9 for e in range(len(sizes))):
                    continue
                if any(a @ x > b + 1e-9 for a, b in zip(cuts, bounds, strict=True)):
                    continue
                cost = 0.5 * ((x - z) ** 2).sum()
                if best is None or cost < best[0] - 1e-12:
                    best = (cost, x)
    assert best is not None
    return best[1]


_entries = st.one_of(
    st.integers(-2, 2).map(float),  # ties
    st.floats(-2, 2, allow_nan=False, allow_infinity=False),
)


@st.composite
def _cut_groups(draw, max_entries: int = 6):
    """Two groups of one or two members, six entries at most, 0/1 costs and a feasible bound."""
    groups, costs, ks = [], [], []
    left = max_entries
    for g in range(2):
        members = draw(st.integers(1, 2))
        rows, row_costs = [], []
        for e in range(members):
            width = draw(st.integers(1, max(1, min(2, left - (members - e - 1) - (1 - g)))))
            left -= width
            rows.append(draw(st.lists(_entries, min_size=width, max_size=width)))
            row_costs.append(
                draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=width, max_size=width))
            )
        groups.append(rows)
        costs.append(row_costs)
        ks.append(draw(st.integers(1, members)))
    scale = draw(st.sampled_from([0.5, 1.0, 4.0]))
    groups = [[[v * scale for v in r] for r in g] for g in groups]
    least = least_cost(ks, costs)
    bound = draw(st.sampled_from([least, least + 0.5, least + 1.0, float(sum(ks))]))
    return groups, ks, costs, bound


@settings(max_examples=25, deadline=None)
@given(_cut_groups())
def test_projection_is_the_euclidean_projection_onto_the_cut_polytope(case):
    groups, ks, costs, bound = case
    x = constrained_projection(_tensors(groups), ks, [_tensors(costs)], [bound])
    for g, k in zip(x, ks, strict=True):
        assert all((r >= 0).all() and float(r.sum()) <= 1 + 1e-12 for r in g)
        assert float(sum(r.sum() for r in g)) == pytest.approx(k, abs=1e-12)
    got = np.concatenate([torch.cat(g).numpy() for g in x])
    assert float(got @ _flat(costs)) <= bound + 1e-9
    np.testing.assert_allclose(got, _brute_force_qp(groups, ks, costs, bound), atol=1e-8)


def test_a_slack_constraint_leaves_each_group_projection_bit_for_bit():
    gen = torch.Generator().manual_seed(1)
    groups = [[torch.randn(4, generator=gen) for _ in range(e)] for e in (2, 3, 4)]
    costs = [[torch.ones(4) for _ in g] for g in groups]
    x = constrained_projection(groups, [2, 2, 2], [costs], [6.0])
    for got, rows in zip(x, groups, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, group_projection(rows, 2), strict=True))


def _cell(gen: torch.Generator, nodes: int = 3, width: int = 4):
    """A DARTS-like cell: node i has i + 2 incoming edges, two kept; the first two candidates
    of every edge are parameter-free."""
    groups = [
        [torch.randn(width, generator=gen, dtype=torch.float64) for _ in range(n + 2)]
        for n in range(nodes)
    ]
    costs = [
        [torch.tensor([1.0, 1.0] + [0.0] * (width - 2), dtype=torch.float64) for _ in g]
        for g in groups
    ]
    return groups, [2] * nodes, costs


def _genotypes(groups, ks):
    """Every genotype of the groups as one-hot rows: per group k members, one candidate each."""
    per_group = []
    for rows, k in zip(groups, ks, strict=True):
        options = []
        for members in itertools.combinations(range(len(rows)), k):
            for picks in itertools.product(*(range(len(rows[e])) for e in members)):
                v = [torch.zeros_like(r) for r in rows]
                for e, j in zip(members, picks, strict=True):
                    v[e][j] = 1.0
                options.append(v)
        per_group.append(options)
    return itertools.product(*per_group)


def _dot(a, b) -> float:
    return float(
        sum((x * y).sum() for ga, gb in zip(a, b, strict=True) for x, y in zip(ga, gb, strict=True))
    )


@pytest.mark.parametrize("cap", [0, 1, 2, 3])
def test_capped_vertex_rule_is_the_best_genotype_by_enumeration(cap):
    gen = torch.Generator().manual_seed(cap)
    for trial in range(3):
        groups, ks, costs = _cell(gen, nodes=2, width=3)
        if trial == 2:  # ties everywhere
            groups = [[r.round() for r in g] for g in groups]
        vertex = constrained_vertex(groups, ks, [costs], [cap])
        assert all(is_vertex(v, k) for v, k in zip(vertex, ks, strict=True))
        assert _dot(vertex, costs) <= cap
        best = max(_dot(v, groups) for v in _genotypes(groups, ks) if _dot(v, costs) <= cap)
        assert _dot(vertex, groups) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("cap", [0, 1, 2, 3])
def test_tempered_to_the_limit_the_projection_is_the_capped_vertex(cap):
    """The cut polytope's vertices are genotypes with at most ``cap`` parameter-free ops: random
    logits, tempered to the limit, always end exactly at one, the vertex rule's."""
    gen = torch.Generator().manual_seed(10 + cap)
    for _ in range(10):
        groups, ks, costs = _cell(gen, nodes=4, width=7)
        x = constrained_projection([[r / 1e-4 for r in g] for g in groups], ks, [costs], [cap])
        assert all(is_vertex(v, k) for v, k in zip(x, ks, strict=True))
        assert _dot(x, costs) <= cap
        vertex = constrained_vertex(groups, ks, [costs], [cap])
        assert all(
            torch.equal(a, b)
            for ga, gb in zip(x, vertex, strict=True)
            for a, b in zip(ga, gb, strict=True)
        )


@pytest.mark.parametrize("case", ["cap binding", "cap binding with ties", "cap slack"])
def test_jacobian_matches_finite_differences(case):
    gen = torch.Generator().manual_seed(5)
    groups, ks, costs = _cell(gen, nodes=3, width=4)
    sizes = [[len(r) for r in g] for g in groups]
    flat = torch.cat([torch.cat(g) for g in groups]) * 0.5
    if case == "cap binding with ties":
        flat[1] = flat[0]
        flat[6] = flat[4]
    bound = 4.0 if case == "cap slack" else 1.0

    def split(v: torch.Tensor) -> list[list[torch.Tensor]]:
        parts, i = [], 0
        for g in sizes:
            parts.append([v[i + sum(g[:e]) : i + sum(g[: e + 1])] for e in range(len(g))])
            i += sum(g)
        return parts

    def f(v: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [torch.cat(g) for g in constrained_projection(split(v), ks, [costs], [bound])]
        )

    x = f(flat)
    a = torch.cat([torch.cat(c) for c in costs])
    uncapped = torch.cat([torch.cat(group_projection(g, 2)) for g in split(flat)])
    assert ((x > 0) & (x < 1)).any(), "the case must not sit at a vertex"
    if case == "cap slack":
        assert torch.equal(x, uncapped)
    else:
        assert float(a @ x) == pytest.approx(bound), "the cap binds"
        assert float(a @ uncapped) > bound + 0.1, "without the cap the case would break it"
    assert torch.autograd.gradcheck(f, (flat.clone().requires_grad_(),), eps=1e-7, atol=1e-6)


def _tiny_cell() -> tuple[tuple[Choice, ...], tuple[Group, ...], list[tuple[str, str]]]:
    """Two nodes (2 and 3 incoming edges, 2 kept each) and their parameter-free entries."""
    choices = tuple(
        Choice(f"n{i}<-{j}", ("none", "pool", "skip", "conv")) for i in (2, 3) for j in range(i)
    )
    groups = (
        Group("n2", ("n2<-0", "n2<-1"), 2, "none"),
        Group("n3", ("n3<-0", "n3<-1", "n3<-2"), 2, "none"),
    )
    return choices, groups, [(c.name, op) for c in choices for op in ("pool", "skip")]


def test_cell_capped_through_arch_logits_and_derivable_weights():
    choices, groups, free = _tiny_cell()
    (cap,) = cap_constraints({"cell": free}, 1)
    assert cap == LinearConstraint("cell:parameter-free", tuple((c, k, 1.0) for c, k in free), 1)
    logits = ArchLogits(choices, groups=groups, constraints=(cap,))
    with torch.no_grad():
        for p in logits.parameters():
            p.copy_(torch.tensor([0.0, 3.0, 2.0, 1.0]))  # pools lead everywhere
    # The DARTS rule on these weights would keep four pools; the rule under the cap keeps one.
    w = {n: r.detach() for n, r in logits.as_dict().items()}
    hot = logits.derivable(w)
    assert sum(float(hot[c.name][1:3].sum()) for c in choices) == 1.0
    assert sum(float(hot[c.name].sum()) for c in choices) == 4.0
    # Unconstrained logits leave the weights as they are.
    assert ArchLogits(choices, groups=groups).derivable(w) == w


def test_bad_constraints_are_one_line_errors():
    choices = (Choice("a", ("none", "pool", "conv")), Choice("b", ("none", "pool", "conv")))
    groups = (Group("g", ("a", "b"), 2, "none"),)

    def build(*constraints):
        return ArchLogits(choices, groups=groups, constraints=constraints)

    with pytest.raises(ValueError, match="unknown choice 'c'"):
        build(LinearConstraint("x", (("c", "pool", 1.0),), 1))
    with pytest.raises(
        ValueError, match="'skip' is not a candidate of 'a'; candidates: none, pool, conv"
    ):
        build(LinearConstraint("x", (("a", "skip", 1.0),), 1))
    pools = tuple((c, "pool", 1.0) for c in "ab")
    convs = tuple((c, "conv", 1.0) for c in "ab")
    # Each can be met (two convs; two pools), not both: the group uses both of its members.
    with pytest.raises(
        ValueError,
        match="constraints 'x' and 'y' cannot be met together: with 'x' met, the least any "
        "genotype costs in 'y' is 1, its bound is 0",
    ):
        build(LinearConstraint("x", pools, 1), LinearConstraint("y", convs, 0))
    only_pools = tuple((c, "pool", 1.0) for c in "ab") + tuple((c, "conv", 1.0) for c in "ab")
    with pytest.raises(
        ValueError, match="cannot be met: its bound is 1, the least any genotype costs is 2"
    ):
        build(LinearConstraint("x", only_pools, 1))
    with pytest.raises(ValueError, match="bound >= 0"):
        LinearConstraint("x", (("a", "pool", 1.0),), -1)
    with pytest.raises(ValueError, match="names an entry twice"):
        LinearConstraint("x", (("a", "pool", 1.0), ("a", "pool", 2.0)), 1)


# --- several constraints on the same groups ---------------------------------------------------


@st.composite
def _two_cuts(draw, real_cuts: int = 1):
    """Two groups (six entries at most) under a 0/1 cap and ``real_cuts`` real-valued costs,
    with bounds some genotype meets together."""
    groups, ks, caps, cap = draw(_cut_groups())
    costs = [caps]
    for _ in range(real_cuts):
        costs.append(
            [
                [
                    draw(
                        st.lists(
                            st.sampled_from([0.0, 0.5, 1.5, 3.0]), min_size=len(r), max_size=len(r)
                        )
                    )
                    for r in g
                ]
                for g in groups
            ]
        )
    tensors = [_tensors(c) for c in costs]
    feasible = [v for v in _genotypes(_tensors(groups), ks) if _dot(v, tensors[0]) <= cap]
    least = min(max(_dot(v, t) for t in tensors[1:]) for v in feasible)
    bounds = [cap] + [least + draw(st.sampled_from([0.0, 0.25, 1.0]))] * real_cuts
    return groups, ks, costs, bounds


def _feasible(x, groups, ks, costs, bounds) -> None:
    """x lies in the groups' polytopes and meets every cut."""
    got = np.concatenate([torch.cat(g).numpy() for g in x])
    for c, b in zip(costs, bounds, strict=True):
        assert float(got @ _flat(c)) <= b + 1e-9
    for g, k in zip(x, ks, strict=True):
        assert all((r >= 0).all() and float(r.sum()) <= 1 + 1e-12 for r in g)
        assert float(sum(r.sum() for r in g)) == pytest.approx(k, abs=1e-12)


@pytest.mark.parametrize("real_cuts", [1, 2])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_projection_under_several_cuts_is_the_euclidean_projection(real_cuts, data):
    groups, ks, costs, bounds = data.draw(_two_cuts(real_cuts))
    x = constrained_projection(_tensors(groups), ks, [_tensors(c) for c in costs], bounds)
    _feasible(x, groups, ks, costs, bounds)
    got = np.concatenate([torch.cat(g).numpy() for g in x])
    np.testing.assert_allclose(got, _brute_force_qp(groups, ks, costs, bounds), atol=1e-8)


def _cell_with_budget(gen: torch.Generator, nodes: int = 3, width: int = 4):
    """:func:`_cell` plus a parameter budget: the parameter-free candidates cost nothing, the
    others a real cost each."""
    groups, ks, caps = _cell(gen, nodes, width)
    params = [
        [
            torch.tensor(
                [0.0, 0.0] + [1.0 + 0.7 * j for j in range(width - 2)], dtype=torch.float64
            )
            for _ in g
        ]
        for g in groups
    ]
    return groups, ks, caps, params


def test_slack_constraints_leave_each_group_projection_bit_for_bit():
    gen = torch.Generator().manual_seed(3)
    groups, ks, caps, params = _cell_with_budget(gen)
    x = constrained_projection(groups, ks, [caps, params], [6.0, 100.0])
    for got, rows in zip(x, groups, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, group_projection(rows, 2), strict=True))


def test_jacobian_with_two_binding_constraints_matches_finite_differences():
    gen = torch.Generator().manual_seed(5)
    groups, ks, caps, params = _cell_with_budget(gen)
    sizes = [[len(r) for r in g] for g in groups]
    flat = torch.cat([torch.cat(g) for g in groups]) * 0.5
    bounds = [1.0, 6.0]

    def split(v: torch.Tensor) -> list[list[torch.Tensor]]:
        parts, i = [], 0
        for g in sizes:
            parts.append([v[i + sum(g[:e]) : i + sum(g[: e + 1])] for e in range(len(g))])
            i += sum(g)
        return parts

    def f(v: torch.Tensor) -> torch.Tensor:
        x = constrained_projection(split(v), ks, [caps, params], bounds)
        return torch.cat([torch.cat(g) for g in x])

    x = f(flat)
    for costs, bound in zip([caps, params], bounds, strict=True):
        a = torch.cat([torch.cat(c) for c in costs])
        assert float(a @ x) == pytest.approx(bound), "both constraints bind"
    assert torch.autograd.gradcheck(f, (flat.clone().requires_grad_(),), eps=1e-7, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_vertex_under_two_costs_is_the_best_genotype_by_enumeration(seed):
    gen = torch.Generator().manual_seed(20 + seed)
    groups, ks, caps, params = _cell_with_budget(gen, nodes=2, width=3)
    if seed == 3:  # ties everywhere
        groups = [[r.round() for r in g] for g in groups]
    every = list(_genotypes(groups, ks))
    for cap in (0, 1, 2):
        feasible = [v for v in every if _dot(v, caps) <= cap]
        least = min(_dot(v, params) for v in feasible)
        for budget in (least, least + 0.7, least + 2.0):
            vertex = constrained_vertex(groups, ks, [caps, params], [cap, budget])
            assert all(is_vertex(v, k) for v, k in zip(vertex, ks, strict=True))
            assert _dot(vertex, caps) <= cap and _dot(vertex, params) <= budget + 1e-12
            best = max(_dot(v, groups) for v in feasible if _dot(v, params) <= budget + 1e-12)
            assert _dot(vertex, groups) == pytest.approx(best, abs=1e-12)


def test_constraints_sharing_groups_form_one_block_checked_together():
    choices, groups, free = _tiny_cell()
    (cap,) = cap_constraints({"cell": free}, 1)
    convs = tuple((c.name, "conv", 2.0) for c in choices)
    budget = LinearConstraint("params", convs, 7.0)  # at most three convolutions
    logits = ArchLogits(choices, groups=groups, constraints=(cap, budget))
    with torch.no_grad():
        for p in logits.parameters():
            p.copy_(torch.tensor([0.0, 3.0, 2.0, 1.0]))
    hot = logits.derivable({n: r.detach() for n, r in logits.as_dict().items()})
    assert sum(float(hot[c.name][1:3].sum()) for c in choices) == 1.0
    assert sum(float(hot[c.name][3]) for c in choices) == 3.0
    # Four ops, at most one parameter-free and at most two convolutions: no genotype.
    with pytest.raises(
        ValueError,
        match="constraints 'cell:parameter-free' and 'params' cannot be met together: with "
        "'cell:parameter-free' met, the least any genotype costs in 'params' is 6, its bound is 5",
    ):
        ArchLogits(choices, groups=groups, constraints=(cap, LinearConstraint("params", convs, 5)))


def test_the_vertex_of_repeated_logits_is_remembered(monkeypatch):
    from nasplug.searchlib import polytope as polytope

    gen = torch.Generator().manual_seed(7)
    groups, ks, caps, params = _cell_with_budget(gen)
    calls = []
    solve = polytope._best_genotype
    monkeypatch.setattr(polytope, "_best_genotype", lambda *args: calls.append(1) or solve(*args))
    first = constrained_vertex(groups, ks, [caps, params], [1.0, 8.0])
    assert calls, "the DARTS rule's vertex breaks the cap here"
    first[0][0].add_(5.0)  # the caller's copy: what is remembered stays as it was
    again = constrained_vertex(
        [[r.clone() for r in g] for g in groups], ks, [caps, params], [1.0, 8.0]
    )
    assert len(calls) == 1
    assert all(is_vertex(v, k) for v, k in zip(again, ks, strict=True))
    other = constrained_vertex(groups, ks, [caps, params], [1.0, 7.0])
    assert len(calls) == 2 and _dot(other, params) <= 7.0
