"""What candidates cost: parameters, FLOPs and latency, per candidate where it sits.

A space with the :class:`~nasplug.interfaces.ReportsCosts` capability names, for every
(choice, candidate), the op modules the candidate puts into the built network and their input
shapes. :func:`candidate_costs` costs those modules and finds the rest of the network (stem,
preprocessing, head: ``fixed``) from whole networks; :func:`genotype_cost` adds up a genotype's
cost from the table. For params and FLOPs the sum equals the built network's own count exactly.

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasplug.interfaces import ReportsCosts, SearchSpace
from nasplug.training import count_params
from nasplug.types import Costs, Genotype, Task

__all__ = ["RESOURCES", "candidate_costs", "genotype_cost", "module_cost", "reference_genotype"]

#: The resources a space's candidates can be costed in.
RESOURCES: tuple[str, ...] = ("params", "flops", "latency")
_UNITS = {"params": "", "flops": "", "latency": "ms"}

#: ``(choice, candidate) -> [(module, input shape), ...]``, as ``cost_sites`` returns them.
Sites = Mapping[tuple[str, str], Sequence[tuple[nn.Module, tuple[int, ...]]]]


def candidate_costs(
    space: SearchSpace,
    task: Task,
    resource: str,
    *,
    device: str | torch.device = "cpu",
    batch: int = 1,
    cache_dir: str | None = None,
) -> Costs:
    """Every candidate's cost in ``resource`` where it sits in ``space``'s network for ``task``.

    ``params`` counts parameters as :func:`nasplug.training.count_params` does (an auxiliary
    head, used in training only, is left out); ``flops`` counts what
    ``torch.utils.flop_counter.FlopCounterMode`` counts (a multiply-add is two FLOPs; the
    convolutions and matrix products) in one forward of batch 1, in eval mode. For both,
    ``fixed`` is a reference genotype's (:func:`reference_genotype`) whole-network cost minus
    its candidates' entries, so :func:`genotype_cost` equals the built network's own count for
    every genotype of the space; ``device`` and ``batch`` matter for ``latency`` only (see
    :mod:`nasplug.latency`).

    Raises:
        ValueError: one line, for an unknown ``resource`` or a space without ``cost_sites``.
    """
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; accepted: {', '.join(RESOURCES)}")
    if not isinstance(space, ReportsCosts):
        raise ValueError(
            f"space {type(space).__name__} does not report costs (it has no cost_sites(task)); "
            f"budgets and costs need a space with the ReportsCosts capability"
        )
    if resource == "latency":
        raise ValueError("latency costs are not measured yet; accepted for now: params, flops")
    sites = space.cost_sites(task)
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
