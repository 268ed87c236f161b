"""The projection onto a group's polytope: exact, its vertices the DARTS rule's, its Jacobian exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from entmax import sparsemax
from hypothesis import given, settings
from hypothesis import strategies as st

from nasplug.core.registry import load
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.polytope import group_projection, is_vertex, nearest_vertex, vertex_distance


def _brute_force(rows: list[np.ndarray], k: int) -> np.ndarray:
    """argmin 1/2 ||x - z||^2 over P, by solving the equality-constrained QP of every active set
    (which entries are 0, which rows sum to 1) and keeping the best feasible solution."""
    z = np.concatenate(rows)
    owner = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    n, best = len(z), None
    for zero in itertools.product((False, True), repeat=n):
        for capped in itertools.product((False, True), repeat=len(rows)):
            a = [np.eye(n)[i] for i in range(n) if zero[i]]
            a += [(owner == e).astype(float) for e in range(len(rows)) if capped[e]]
            a.append(np.ones(n))
            b = [0.0] * sum(zero) + [1.0] * sum(capped) + [float(k)]
            a = np.array(a)
            kkt = np.block([[np.eye(n), a.T], [a, np.zeros((len(a), len(a)))]])
            rhs = np.concatenate([z, b])
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
            x = sol[:n]
            if not np.allclose(kkt @ sol, rhs, atol=1e-9) or (x < -1e-9).any():
                continue
            if any(x[owner == e].sum() > 1 + 1e-9 for e in range(len(rows))):
                continue
            cost = 0.5 * ((x - z) ** 2).sum()
            if best is None or cost < best[0] - 1e-12:
                best = (cost, x)
    assert best is not None
    return best[1]


_entries = st.one_of(
    st.integers(-3, 3).map(float),  # ties
    st.floats(-3, 3, allow_nan=False, allow_infinity=False),
)


@st.composite
def _groups(draw):
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    rows = [np.array(draw(st.lists(_entries, min_size=s, max_size=s))) for s in sizes]
    scale = draw(st.sampled_from([0.1, 1.0, 4.0]))
    return [r * scale for r in rows], draw(st.integers(1, len(sizes)))


@settings(max_examples=60, deadline=None)
@given(_groups())
def test_projection_lies_in_the_polytope_and_is_the_euclidean_projection(group):
    rows, k = group
    x = group_projection([torch.tensor(r) for r in rows], k)
    assert all((r >= 0).all() and float(r.sum()) <= 1 + 1e-12 for r in x)
    assert float(sum(r.sum() for r in x)) == pytest.approx(k, abs=1e-12)
    np.testing.assert_allclose(torch.cat(x).numpy(), _brute_force(rows, k), atol=1e-8)


def test_one_member_with_k_one_is_sparsemax():
    z = torch.randn(5, 7)
    for row in z:
        torch.testing.assert_close(group_projection([row], 1)[0], sparsemax(row, dim=-1))


def test_rows_of_different_lengths_and_all_capped():
    rows = [torch.tensor([0.3, 0.1]), torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0])]
    x = group_projection(rows, 3)  # k equals the rows: every row is its own sparsemax
    for r, xr in zip(rows, x, strict=True):
        torch.testing.assert_close(xr, sparsemax(r, dim=-1))


def test_vertices_are_the_darts_rule_genotypes():
    """P's vertices project onto themselves, and the projection of sharply tempered logits is
    the vertex the DARTS rule derives: the cell space's derive reads that vertex as its support."""
    space = load("space", "cell")(channels=2, layers=1)
    choices, groups = space.choices(), space.groups()
    node = groups[2]  # normal node 4: four incoming edges, two kept
    assert node.k == 2 and len(node.choices) == 4 and node.unused == "none"
    for e1, e2 in itertools.combinations(range(4), 2):
        for op1, op2 in itertools.product(range(7), repeat=2):
            v = [torch.zeros(7, dtype=torch.float64) for _ in range(4)]
            v[e1][op1] = v[e2][op2] = 1.0
            assert all(torch.equal(a, b) for a, b in zip(group_projection(v, 2), v, strict=True))
            assert is_vertex(v, 2) and vertex_distance(v, 2) == 0.0
    gen = torch.Generator().manual_seed(0)
    for seed in range(20):
        logits = ArchLogits(choices, init_scale=1.0, groups=groups)
        with torch.no_grad():
            for p in logits.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        relax = load("relaxation", "sparsemax")(tau_start=1e-4, tau_end=1e-4)
        w = {k: v.detach() for k, v in logits.weights(relax).items()}
        assert all(is_vertex([w[n][1:] for n in g.choices], g.k) for g in groups), seed
        support = space.one_hot(space.derive(w))
        assert all(torch.equal(support[k], w[k]) for k in w), seed
        # The nearest vertex of the raw logits is the same network.
        for g in groups:
            rows = [logits.as_dict()[n].detach()[1:] for n in g.choices]
            assert all(
                torch.equal(a, b[1:])
                for a, b in zip(nearest_vertex(rows, g.k), (w[n] for n in g.choices), strict=True)
            )


def _jacobian(f, z: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(f, z)


def _split(z: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(z.split(sizes))


@pytest.mark.parametrize("case", ["generic", "ties inside the support", "equal rows"])
def test_jacobian_matches_finite_differences(case):
    gen = torch.Generator().manual_seed(3)
    sizes = [4, 3, 4, 2]
    z = torch.randn(sum(sizes), generator=gen, dtype=torch.float64) * 0.6
    if case == "ties inside the support":
        z[0] = z[1] = z[5] = float(z.max()) + 0.1
    if case == "equal rows":
        z[:4] = z[7:11]
    f = lambda v: torch.cat(group_projection(_split(v, sizes), 2))  # noqa: E731
    x = f(z)
    assert ((x > 0) & (x < 1)).any(), "the case must not sit at a vertex"
    assert torch.autograd.gradcheck(f, (z.clone().requires_grad_(),), eps=1e-7, atol=1e-6)


def test_jacobian_at_the_boundary_of_the_active_set_is_a_one_sided_derivative():
    """Where an entry sits exactly at its threshold the projection has a kink: each column of
    the Jacobian must equal the derivative from one side or the other."""
    sizes = [3, 3, 3]
    base = torch.tensor([0.9, 0.2, -0.5, 0.7, 0.1, -1.0, 0.4, -0.2, -0.9], dtype=torch.float64)
    f = lambda v: torch.cat(group_projection(_split(v, sizes), 2))  # noqa: E731
    x = f(base)
    # Raise one inactive entry to exactly where it enters the support: there x is still 0.
    zero = int((x == 0).nonzero()[0])
    lo, hi = float(base[zero]), 5.0
    for _ in range(200):
        mid = (lo + hi) / 2
        probe = base.clone()
        probe[zero] = mid
        lo, hi = (lo, mid) if f(probe)[zero] > 0 else (mid, hi)
    at_kink = base.clone()
    at_kink[zero] = lo
    assert f(at_kink)[zero] == 0 and f(at_kink + 1e-9 * torch.eye(len(base))[zero])[zero] > 0
    jac = _jacobian(f, at_kink)
    h = 1e-7
    for i in range(len(base)):
        e = torch.zeros_like(base)
        e[i] = h
        right, left = (f(at_kink + e) - f(at_kink)) / h, (f(at_kink) - f(at_kink - e)) / h
        assert torch.allclose(jac[:, i], right, atol=1e-5) or torch.allclose(
            jac[:, i], left, atol=1e-5
        ), i


def test_jacobian_is_zero_outside_the_support():
    """Zero-weight entries have zero rows and columns: skipping them is exact."""
    sizes = [4, 4, 4]
    z = torch.tensor([2.0, 1.5, -1, -2, 1.8, 0.2, -3, 0, -1, -1, -2, -0.5], dtype=torch.float64)
    f = lambda v: torch.cat(group_projection(_split(v, sizes), 2))  # noqa: E731
    x = f(z)
    jac = _jacobian(f, z)
    off = x == 0
    assert off.any() and (~off).any()
    assert (jac[off] == 0).all() and (jac[:, off] == 0).all()


def test_bad_groups_are_value_errors():
    with pytest.raises(ValueError, match="cannot use k=3"):
        group_projection([torch.zeros(2), torch.zeros(2)], 3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        nearest_vertex([torch.zeros(0)], 1)
