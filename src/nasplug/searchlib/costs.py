"""What candidates cost: parameters, FLOPs and latency, per candidate where it sits.

A space with the :class:`~nasplug.core.interfaces.ReportsCosts` capability names, for every
(choice, candidate), the op modules the candidate puts into the built network and their input
shapes. :func:`candidate_costs` costs those modules and finds the rest of the network (stem,
preprocessing, head: ``fixed``) from whole networks; :func:`genotype_cost` adds up a genotype's
cost from the table. For params and FLOPs the sum equals the built network's own count exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasplug.core import registry
from nasplug.core.errors import one_line
from nasplug.core.interfaces import ReportsCosts, SearchSpace
from nasplug.core.types import Costs, Genotype, Task
from nasplug.engine.memory import count_params

__all__ = [
    "CACHE_ENV",
    "RESOURCES",
    "cache_directory",
    "calibration_genotypes",
    "candidate_costs",
    "genotype_cost",
    "latency_costs",
    "module_cost",
    "module_latency",
    "reference_genotype",
]

#: The resources a space's candidates can be costed in.
RESOURCES: tuple[str, ...] = ("params", "flops", "latency")
_UNITS = {"params": "", "flops": "", "latency": "ms"}
#: The environment variable naming the cache directory of latency tables.
CACHE_ENV = "NASPLUG_CACHE_DIR"
# The version of the latency table files: a file of another version is rebuilt.
_TABLE_FORMAT = 3
#: Untimed runs before the timed ones, and timed runs per module (the fastest is kept: another
#: process on the machine, or on the core's sibling thread, only ever adds time to a run, so the
#: fastest of many is the least disturbed; medians drifted by 20% between two builds of one
#: table on a shared machine, minima by a few percent).
WARMUP, REPEATS = 5, 25
#: Reference genotypes whose whole-network timings calibrate the latency table.
CALIBRATION = 16

#: ``(choice, candidate) -> [(module, input shape), ...]``, as ``cost_sites`` returns them.
Sites = Mapping[tuple[str, str], Sequence[tuple[nn.Module, tuple[int, ...]]]]


def candidate_costs(
    space: SearchSpace,
    task: Task,
    resource: str,
    *,
    device: str | torch.device = "cpu",
    batch: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Costs:
    """Every candidate's cost in ``resource`` where it sits in ``space``'s network for ``task``.

    ``params`` counts parameters as :func:`nasplug.engine.memory.count_params` does (an auxiliary
    head, used in training only, is left out); ``flops`` counts what
    ``torch.utils.flop_counter.FlopCounterMode`` counts (a multiply-add is two FLOPs; the
    convolutions and matrix products) in one forward of batch 1, in eval mode: the work the
    built network does, so an op that a space computes by a faster equivalent counts that
    equivalent's work (the cell space's polyphase dilated convolutions pad an odd-sized map to
    an even one, a few percent more than the plain convolution's count). For both,
    ``fixed`` is a reference genotype's (:func:`reference_genotype`) whole-network cost minus
    its candidates' entries, so :func:`genotype_cost` equals the built network's own count for
    every genotype of the space. ``latency`` is a table measured on ``device`` at ``batch``
    and cached in ``cache_dir`` (see :func:`latency_costs`); ``device`` and ``batch`` matter
    for it only.

    Raises:
        ValueError: one line, for an unknown ``resource`` or a space without ``cost_sites``.
    """
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; accepted: {', '.join(RESOURCES)}")
    if resource == "latency":
        return latency_costs(space, task, device=device, batch=batch, cache_dir=cache_dir)
    with _own_rng():
        sites = _sites(space, task)
        entries = {
            key: float(sum(module_cost(m, shape, resource) for m, shape in where))
            for key, where in sites.items()
        }
        reference = reference_genotype(space)
        whole = module_cost(space.build(reference, task), (1, *task.input_shape), resource)
    fixed = whole - _entries_sum(space, entries, reference)
    return Costs(resource, _UNITS[resource], fixed, entries, {"reference": str(reference)})


def genotype_cost(space: SearchSpace, costs: Costs, genotype: Genotype) -> float:
    """``costs.fixed`` plus the entries of ``genotype``'s candidates (its ``space.one_hot``)."""
    return costs.fixed + _entries_sum(space, costs.entries, genotype)


def module_cost(module: nn.Module, shape: Sequence[int], resource: str) -> float:
    """The ``params`` or ``flops`` of ``module`` on an input of ``shape`` (see
    :func:`candidate_costs`); the module is left in eval mode."""
    if resource == "params":
        return float(count_params(module))
    if resource != "flops":
        raise ValueError(f"module_cost counts params or flops, not {resource!r}")
    module.eval()
    x = torch.zeros(tuple(shape))
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    return float(counter.get_total_flops())


def reference_genotype(space: SearchSpace) -> Genotype:
    """The genotype whose whole network gives ``fixed``: ``space.derive`` of equal weights."""
    return space.derive({c.name: torch.ones(len(c.candidates)) for c in space.choices()})


def _own_rng() -> contextlib.AbstractContextManager[None]:
    """Building modules draws their initial weights: keep that off the global random state."""
    return torch.random.fork_rng(devices=[])


def _sites(space: SearchSpace, task: Task) -> Sites:
    if not isinstance(space, ReportsCosts):
        raise ValueError(
            f"space {type(space).__name__} does not report costs (it has no cost_sites(task)); "
            f"budgets and costs need a space with the ReportsCosts capability"
        )
    return space.cost_sites(task)


def _entries_sum(
    space: SearchSpace, entries: Mapping[tuple[str, str], float], genotype: Genotype
) -> float:
    total = 0.0
    candidates = {c.name: c.candidates for c in space.choices()}
    for name, w in space.one_hot(genotype).items():
        for cand, weight in zip(candidates[name], w.tolist(), strict=True):
            if weight:
                total += weight * entries.get((name, cand), 0.0)
    return total


# --- latency ----------------------------------------------------------------------------------


def latency_costs(
    space: SearchSpace,
    task: Task,
    *,
    device: str | torch.device = "cpu",
    batch: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Costs:
    """A latency table (milliseconds) of ``space``'s candidates, measured on ``device``.

    Every site of ``space.cost_sites(task)`` is timed at its input shape with ``batch``
    examples: the module in eval mode under ``torch.inference_mode``, all sites in rotation
    (see :func:`_rotated_latencies`), the fastest of :data:`REPEATS` timed rounds after
    :data:`WARMUP` (on CUDA each run is bracketed by ``torch.cuda.synchronize``); sites whose
    module and shape print the same are timed once.
    An entry sums its sites. The table is then calibrated on whole networks: each of the
    :func:`calibration_genotypes` is built and timed the same way on ``(batch,
    *task.input_shape)``, and a least-squares line ``measured = fixed + scale * (sum of its
    entries)`` is fitted through them, or the offset alone (``scale`` 1) where that predicts a
    left-out calibration network better; the entries are stored multiplied by ``scale``. ``fixed``
    carries what no single op shows (the stem, the head), ``scale`` what the ops' timings still
    miss inside a network (the sums and concatenations between them). Where the calibration networks' sums do not spread (a space
    with one genotype) ``scale`` is 1 and ``fixed`` the median difference.

    On the CPU with one intra-op thread each run is timed by the thread's CPU clock
    (``time.thread_time``), so other processes on a shared machine do not inflate it; otherwise
    by the wall clock. ``source["clock"]`` says which.

    The table is built once per key (device name, torch version, intra-op threads, batch, the
    space's registered name and public settings, the task's shapes, and a digest of every site
    module, its shape and the calibration networks, which catches what settings alone miss,
    such as a restricted space's candidates) and kept as JSON
    in ``cache_dir``, else ``$NASPLUG_CACHE_DIR``, else the user's cache directory (see
    :func:`cache_directory`). The next call with the same key reads it back and measures
    nothing (``source["reused"]`` is true); a file that cannot be read or holds another key is
    rebuilt with a one-line warning. Files are written whole or not at all.

    The modules are built and fed under a forked random state: costing leaves torch's global
    random numbers as they were, so a seeded search is the same with or without it.

    ``source`` records ``device``, ``device_type``, ``batch``, ``threads``, ``torch``, ``cache``
    (the file), ``built`` and ``reused``, ``calibration`` (the genotypes) and ``build_seconds``.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    dev = _check_device(device)
    with _own_rng():
        return _latency_table(space, task, dev, batch, cache_directory(cache_dir))


def _latency_table(
    space: SearchSpace, task: Task, dev: torch.device, batch: int, directory: Path
) -> Costs:
    sites = _sites(space, task)
    calibration = calibration_genotypes(space)
    nets = [space.build(g, task).eval() for g in calibration]
    key = {
        "format": _TABLE_FORMAT,
        "device": _device_name(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "space": registry.name_of(space),
        "options": _options(space),
        "task": {"input_shape": list(task.input_shape), "outputs": task.outputs},
        "digest": _digest(sites, nets),
    }
    path = directory / f"latency-{_file_digest(key)}.json"
    source = {
        "device": key["device"],
        "device_type": dev.type,
        "batch": batch,
        "threads": key["threads"],
        "torch": key["torch"],
        "cache": str(path),
    }
    cached = _read_table(path, key, sites)
    if cached is not None:
        return Costs(
            "latency",
            "ms",
            cached.fixed,
            cached.entries,
            {**cached.source, **source, "built": False, "reused": True},
        )
    started = time.perf_counter()
    distinct: dict[tuple[str, tuple[int, ...]], nn.Module] = {}
    for where in sites.values():
        for module, shape in where:
            distinct.setdefault((repr(module), (batch, *shape[1:])), module)
    timed = _rotated_latencies(distinct, dev)
    entries = {
        entry: sum(timed[(repr(module), (batch, *shape[1:]))] for module, shape in where)
        for entry, where in sites.items()
    }
    sums = [_entries_sum(space, entries, g) for g in calibration]
    measured = [module_latency(net, (batch, *task.input_shape), dev) for net in nets]
    fixed, scale = _calibration_line(sums, measured)
    source.update(
        built=True,
        reused=False,
        calibration=[str(g) for g in calibration],
        scale=scale,
        clock=_clock_name(dev),
        build_seconds=round(time.perf_counter() - started, 3),
    )
    scaled = {entry: scale * value for entry, value in entries.items()}
    costs = Costs("latency", "ms", fixed, scaled, source)
    _write_atomically(path, {"key": key, "costs": costs.to_dict()})
    return costs


def _calibration_line(sums: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """``(fixed, scale)`` through the calibration networks: either an offset alone (scale 1,
    ``fixed`` the median difference) or the least-squares line ``measured = fixed + scale *
    sums``, whichever predicts each network better when it is left out of its own fit (the
    median relative error); the line only where its slope is positive."""

    def offset(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
        return statistics.median(y - x for x, y in zip(xs, ys, strict=True)), 1.0

    def line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        if spread <= 1e-12 * max(1.0, mean_x**2) * len(xs):
            return None
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
        return (mean_y - slope * mean_x, slope) if slope > 0 else None

    def left_out_error(fit: Callable[..., tuple[float, float] | None]) -> float:
        errors = []
        for i, (x, y) in enumerate(zip(sums, measured, strict=True)):
            params = fit([*sums[:i], *sums[i + 1 :]], [*measured[:i], *measured[i + 1 :]])
            if params is None:
                return math.inf
            errors.append(abs(params[0] + params[1] * x - y) / y)
        return statistics.median(errors)

    fitted = line(sums, measured)
    if fitted is not None and len(sums) > 2 and left_out_error(line) < left_out_error(offset):
        return fitted
    return offset(sums, measured)


def _clock_name(device: torch.device) -> str:
    return "thread" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"


def cache_directory(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where latency tables live: ``cache_dir``, else ``$NASPLUG_CACHE_DIR``, else
    ``platformdirs.user_cache_dir("nasplug")``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs  # only where it is needed: params and FLOPs work without it

    return Path(platformdirs.user_cache_dir("nasplug"))


def calibration_genotypes(space: SearchSpace) -> list[Genotype]:
    """The genotypes whose whole networks calibrate a latency table's ``fixed``:
    ``space.derive`` of uniform random weights drawn from seeds 0 to :data:`CALIBRATION` - 1,
    duplicates dropped. A measurement of the table's error should leave them out."""
    out: list[Genotype] = []
    for seed in range(CALIBRATION):
        gen = torch.Generator().manual_seed(seed)
        weights = {c.name: torch.rand(len(c.candidates), generator=gen) for c in space.choices()}
        g = space.derive(weights)
        if g not in out:
            out.append(g)
    return out


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"latency is measured on cpu or cuda, not {dev.type!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
    return dev


def _options(space: SearchSpace) -> dict[str, Any]:
    """The space's public settings of plain types (its constructor's options, as a rule)."""
    return {
        k: v
        for k, v in sorted(vars(space).items())
        if not k.startswith("_") and isinstance(v, (bool, int, float, str))
    }


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _digest(sites: Sites, nets: Sequence[nn.Module]) -> str:
    h = hashlib.sha256()
    for (choice, candidate), where in sorted(sites.items()):
        h.update(json.dumps([choice, candidate]).encode())
        for module, shape in where:
            h.update(repr(module).encode() + json.dumps(list(shape)).encode())
    for net in nets:
        h.update(repr(net).encode())
    return h.hexdigest()


def _file_digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _read_table(path: Path, key: Mapping[str, Any], sites: Sites) -> Costs | None:
    """The cached table at ``path`` if it holds ``key``; None when there is none, with a
    one-line warning when the file is damaged or for another key."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data["key"] != json.loads(json.dumps(key)):
            raise ValueError("another key")
        costs = Costs.from_dict(data["costs"])
        if costs.resource != "latency" or set(costs.entries) != set(sites):
            raise ValueError("other entries")
        return costs
    except (OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(
            f"latency table {path} is damaged or for another setting "
            f"({one_line(e, with_type=True)}); measuring it again",
            stacklevel=3,
        )
        return None


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def module_latency(module: nn.Module, shape: Sequence[int], device: torch.device) -> float:
    """Milliseconds of one forward of ``module`` on random input of ``shape`` on ``device``,
    measured as :func:`latency_costs` measures its table (eval mode, inference mode, the fastest
    of :data:`REPEATS` runs after :data:`WARMUP`; 4-D inputs in ``channels_last``)."""
    module = module.to(device).eval()
    x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0)).to(device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _fastest_ms(lambda: module(x), device)


def _rotated_latencies(
    sites: Mapping[tuple[str, tuple[int, ...]], nn.Module], device: torch.device
) -> dict[tuple[str, tuple[int, ...]], float]:
    """Milliseconds of one forward of each site, timed in rotation: every round runs each site
    once, in turn, so that, as inside a network, an op finds its weights and input no longer
    warm in the cache (timed alone and repeated, nb201's convolutions summed to about 80% of
    the network's time; in rotation, to within a few percent). :data:`WARMUP` untimed rounds,
    then the fastest of :data:`REPEATS` timed ones per site, with the clock of
    :func:`module_latency`."""
    gen = torch.Generator().manual_seed(0)
    runs = []
    for (_, shape), module in sites.items():
        module = module.to(device).eval()
        x = torch.randn(shape, generator=gen).to(device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        runs.append((module, x))
    clock = time.thread_time if _clock_name(device) == "thread" else time.perf_counter
    sync: Callable[[], None] = (
        (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    )
    times: list[list[float]] = [[] for _ in runs]
    with torch.inference_mode():
        for round_ in range(WARMUP + REPEATS):
            for i, (module, x) in enumerate(runs):
                sync()
                start = clock()
                module(x)
                sync()
                if round_ >= WARMUP:
                    times[i].append(clock() - start)
    return {site: 1000.0 * min(t) for site, t in zip(sites, times, strict=True)}


def _fastest_ms(run: Callable[[], Any], device: torch.device) -> float:
    """The fastest of :data:`REPEATS` timed calls of ``run`` after :data:`WARMUP` untimed ones."""
    sync: Callable[[], None] = (
        (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    )
    clock = time.thread_time if _clock_name(device) == "thread" else time.perf_counter
    for _ in range(WARMUP):
        run()
    sync()
    times = []
    for _ in range(REPEATS):
        start = clock()
        run()
        sync()
        times.append(clock() - start)
    return 1000.0 * min(times)
