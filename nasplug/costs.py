"""What candidates cost: parameters, FLOPs and latency, per candidate where it sits.

A space with the :class:`~nasplug.interfaces.ReportsCosts` capability names, for every
(choice, candidate), the op modules the candidate puts into the built network and their input
shapes. :func:`candidate_costs` costs those modules and finds the rest of the network (stem,
preprocessing, head: ``fixed``) from whole networks; :func:`genotype_cost` adds up a genotype's
cost from the table. For params and FLOPs the sum equals the built network's own count exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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

from nasplug import registry
from nasplug.interfaces import ReportsCosts, SearchSpace
from nasplug.training import count_params
from nasplug.types import Costs, Genotype, Task

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
_TABLE_FORMAT = 1
#: Untimed runs before the timed ones, and timed runs per module (their median is kept).
WARMUP, REPEATS = 5, 25
#: Reference genotypes whose whole-network timings give the latency table's ``fixed``.
CALIBRATION = 5

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

    ``params`` counts parameters as :func:`nasplug.training.count_params` does (an auxiliary
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

    Every site of ``space.cost_sites(task)`` is timed on its own at its input shape with
    ``batch`` examples: the module in eval mode under ``torch.inference_mode``, :data:`WARMUP`
    untimed runs, then the median of :data:`REPEATS` timed runs (on CUDA each run is bracketed
    by ``torch.cuda.synchronize``); sites whose module and shape print the same are timed once.
    An entry sums its sites. ``fixed`` is calibrated on whole networks: for each of the
    :func:`calibration_genotypes`, its built network is timed the same way on ``(batch,
    *task.input_shape)``, its entries are subtracted, and ``fixed`` is the median of these
    differences. So the table predicts what it cannot see from single ops (the stem, the
    head, the sums and concatenations between ops) as one constant.

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
    timed: dict[tuple[str, tuple[int, ...]], float] = {}
    entries = {}
    for entry, where in sites.items():
        total = 0.0
        for module, shape in where:
            full = (batch, *shape[1:])
            site = (repr(module), full)
            if site not in timed:
                timed[site] = module_latency(module, full, dev)
            total += timed[site]
        entries[entry] = total
    gaps = [
        module_latency(net, (batch, *task.input_shape), dev) - _entries_sum(space, entries, g)
        for g, net in zip(calibration, nets, strict=True)
    ]
    source.update(
        built=True,
        reused=False,
        calibration=[str(g) for g in calibration],
        build_seconds=round(time.perf_counter() - started, 3),
    )
    costs = Costs("latency", "ms", statistics.median(gaps), entries, source)
    _write_atomically(path, {"key": key, "costs": costs.to_dict()})
    return costs


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
            f"latency table {path} is damaged or for another setting ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'unreadable'}); measuring it again",
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
    measured as :func:`latency_costs` measures its table (eval mode, inference mode, the median
    of :data:`REPEATS` runs after :data:`WARMUP`; 4-D inputs in ``channels_last``)."""
    module = module.to(device).eval()
    x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0)).to(device)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return _median_ms(lambda: module(x), device)


def _median_ms(run: Callable[[], Any], device: torch.device) -> float:
    """The median of :data:`REPEATS` timed calls of ``run`` after :data:`WARMUP` untimed ones."""
    sync: Callable[[], None] = (
        (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    )
    for _ in range(WARMUP):
        run()
    sync()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
