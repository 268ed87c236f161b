"""Rank statistics of plain number sequences: ranks with ties averaged, and Spearman's rho.

The task metrics (ROC AUC), the report's correlations and the spaces' property correlations
all rank values the same way, so they agree on ties.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["ranks", "spearman"]


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1 in ascending order, equal values sharing their average rank.

    NaN ranks after every number, each NaN on its own, in the order given.

    Example:
        >>> ranks([10, 30, 20, 30])
        [1.0, 3.5, 2.0, 3.5]
    """
    order = sorted(range(len(values)), key=lambda i: (math.isnan(values[i]), values[i]))
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(x: Sequence[Any], y: Sequence[Any]) -> float | None:
    """Spearman's rank correlation over the pairs where both values are finite numbers.

    Anything else (None, NaN, infinities, booleans, text) drops its pair; ties are averaged.
    None when fewer than three pairs remain or either side is constant: rho is undefined then.

    Example:
        >>> spearman([1, 2, 3, None], [10, 30, 20, 40])
        0.5
    """
    pairs = [(float(a), float(b)) for a, b in zip(x, y, strict=True) if _number(a) and _number(b)]
    if len(pairs) < 3:
        return None
    rx, ry = ranks([a for a, _ in pairs]), ranks([b for _, b in pairs])
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def _number(v: Any) -> bool:
    # numbers.Real takes numpy scalars too (float32 is no float); a bool is no measurement.
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
