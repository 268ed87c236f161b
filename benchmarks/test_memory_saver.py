"""Time of one first-order search step with and without the memory saver (``checkpoint_cells``).

The saver recomputes every cell's inside during backward, so it trades about one more forward
pass of time for activation memory; ``benchmarks/peak_memory.py`` measures the memory side.
Sizes of docs/benchmarks.md: C=16, 8 cells, 3x32x32 random input, 10 classes, 2 threads. Run::

    python -m pytest benchmarks/test_memory_saver.py --benchmark-columns=median,min,max,rounds
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# peak_memory.py is a script next to this file, not an installed module.
_spec = importlib.util.spec_from_file_location(
    "peak_memory", Path(__file__).with_name("peak_memory.py")
)
peak_memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peak_memory)


@pytest.mark.parametrize("batch", [16, 64])
@pytest.mark.parametrize("state", ["fresh", "sparse"])
@pytest.mark.parametrize("saver", [False, True], ids=["saver-off", "saver-on"])
def test_search_step_with_and_without_the_memory_saver(benchmark, saver, state, batch):
    relax = "softmax" if state == "fresh" else "sparsemax"
    step = peak_memory.build_step(relax, state, batch, saver)
    benchmark.group = f"memory saver b{batch} {state} {relax}"
    benchmark.extra_info.update(saver=saver, state=state, relaxation=relax, batch=batch)
    benchmark.pedantic(step, warmup_rounds=1, rounds=5)
