"""Ranks with ties averaged and Spearman's rho, shared by the task metrics, reports and spaces."""

from __future__ import annotations

import math
import random

import pytest

from nasplug.engine.stats import ranks, spearman


def test_ties_share_their_average_rank():
    assert ranks([10, 30, 20, 30]) == [1.0, 3.5, 2.0, 3.5]
    assert ranks([5, 5, 5]) == [2.0, 2.0, 2.0]
    assert ranks([]) == []


def test_nan_ranks_last_each_on_its_own():
    assert ranks([2.0, math.nan, 1.0, math.nan]) == [2.0, 3.0, 1.0, 4.0]


def test_ranks_match_scipy_with_many_ties():
    stats = pytest.importorskip("scipy.stats")
    gen = random.Random(3)
    values = [gen.randint(0, 6) / 2 for _ in range(50)]
    assert ranks(values) == pytest.approx(list(stats.rankdata(values)))


def test_spearman_by_hand():
    # ranks (1, 2, 3, 4) against (1, 3, 2, 4): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_matches_scipy_with_ties_and_dropped_pairs():
    stats = pytest.importorskip("scipy.stats")
    gen = random.Random(0)
    x = [float(gen.randint(0, 4)) for _ in range(40)]
    y = [v + gen.gauss(0, 1) for v in x]
    ours = spearman(x + [None, math.nan, 1.0, True], y + [1.0, 2.0, math.inf, 3.0])
    assert ours == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2], [3, 4]),  # fewer than three pairs
        ([1, 2, None, 4], [1, None, 3, 4]),  # three values each, two pairs
        ([1, 1, 1], [1, 2, 3]),  # a constant side
        ([1, 2, 3], ["a", "b", "c"]),  # no numbers on one side
    ],
)
def test_spearman_is_none_where_rho_is_undefined(x, y):
    assert spearman(x, y) is None


def test_spearman_needs_sequences_of_one_length():
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_numpy_scalars_count_as_numbers():
    np = pytest.importorskip("numpy")
    x = [np.float32(v) for v in (1, 2, 3, 4)]
    assert spearman(x, [np.int64(v) for v in (10, 30, 20, 40)]) == pytest.approx(0.8)
