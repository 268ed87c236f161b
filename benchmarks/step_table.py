"""Interleaved search-step timings of dense softmax against sparse relaxations, as a table.

Usage: ``python benchmarks/step_table.py BATCH ROUNDS`` (C=16, 8 cells, 3x32x32, 2 threads).
Each variant warms up twice, then the variants take turns; medians are printed with the
speed-up over dense softmax. Run each batch size in its own process: at batch 64 every dense
variant holds about 10 GB.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from test_search_step import make_stepper  # noqa: E402

VARIANTS = [("softmax", "fresh"), ("softmax", "sparse"), ("sparsemax", "sparse"),
            ("entmax15", "sparse"), ("gumbel-hard", "sparse")]


def main(batch: int, rounds: int) -> None:
    steppers = {v: make_stepper(v[0], batch, v[1]) for v in VARIANTS}
    times: dict[tuple[str, str], list[float]] = {v: [] for v in VARIANTS}
    for stepper, wb, ab, _ in steppers.values():
        for _ in range(2):
            stepper.step(wb, ab)
    for _ in range(rounds):
        for v, (stepper, wb, ab, _) in steppers.items():
            t = time.perf_counter()
            stepper.step(wb, ab)
            times[v].append(time.perf_counter() - t)
    base = statistics.median(times[VARIANTS[0]])
    for (relax, state), ts in times.items():
        m = statistics.median(ts)
        print(f"b{batch} {relax:12s} {state:6s} median {m:.3f}s  {base / m:.2f}x vs dense softmax")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
