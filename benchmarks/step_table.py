"""Interleaved search-step timings of dense softmax against sparse relaxations, as a table.

Usage: ``python benchmarks/step_table.py BATCH ROUNDS [RELAX:STATE ...]`` (C=16, 8 cells,
3x32x32, 2 threads). Each variant warms up twice, then the variants take turns; medians are
printed with the speed-up over the first variant (by default dense softmax, then every sparse
one). Run each batch size in its own process. At batch 64 a dense variant holds about 6 GB and
a sparse one about 2.5 GB, so on 24 GB compare a few at a time, dense softmax first::

    python benchmarks/step_table.py 64 5 softmax:fresh sparsemax:sparse gumbel-hard:sparse
    python benchmarks/step_table.py 64 5 softmax:fresh entmax15:sparse
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_search_step import make_stepper  # noqa: E402

VARIANTS = [
    ("softmax", "fresh"),
    ("softmax", "sparse"),
    ("sparsemax", "sparse"),
    ("entmax15", "sparse"),
    ("gumbel-hard", "sparse"),
]


def main(batch: int, rounds: int, variants: list[tuple[str, str]]) -> None:
    steppers = {v: make_stepper(v[0], batch, v[1]) for v in variants}
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for stepper, wb, ab, _ in steppers.values():
        for _ in range(2):
            stepper.step(wb, ab)
    for _ in range(rounds):
        for v, (stepper, wb, ab, _) in steppers.items():
            t = time.perf_counter()
            stepper.step(wb, ab)
            times[v].append(time.perf_counter() - t)
    base = statistics.median(times[variants[0]])
    for (relax, state), ts in times.items():
        m = statistics.median(ts)
        print(
            f"b{batch} {relax:12s} {state:6s} median {m:.3f}s  "
            f"{base / m:.2f}x vs {variants[0][0]} {variants[0][1]}"
        )


if __name__ == "__main__":
    chosen = [tuple(a.split(":", 1)) for a in sys.argv[3:]] or VARIANTS
    main(int(sys.argv[1]), int(sys.argv[2]), chosen)
