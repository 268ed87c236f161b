"""Resource budgets: ``--budget params=50k``, ``flops=300M``, ``latency=4ms``.

A budget caps what the derived network costs, in one or several resources (see
:data:`nasplug.searchlib.costs.RESOURCES`). :func:`parse_budget` reads the user's text;
:func:`budget_costs` costs every candidate of the space where it sits (params and FLOPs
exactly, latency from the device's measured table); :func:`budget_constraints` turns each limit
into a :class:`~nasplug.core.types.LinearConstraint` ``cost . x <= limit - fixed`` on the mixing
weights, which a relaxation with the :class:`~nasplug.core.interfaces.Constrains` capability meets
inside its projection, so that the derived network meets the budget by construction.
:func:`genotype_costs` and :func:`within` check a genotype against it (the black-box strategies'
``SearchContext.feasible``); :func:`cost_range` gives the least and the largest a derivable
network costs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nasplug.core.interfaces import SearchSpace
from nasplug.core.options import OptionError
from nasplug.core.types import Costs, Genotype, LinearConstraint, Task
from nasplug.searchlib.costs import RESOURCES, candidate_costs, genotype_cost
from nasplug.searchlib.polytope import group_layout, least_cost

__all__ = [
    "BUDGET_SLACK",
    "budget_constraints",
    "budget_costs",
    "check_budget",
    "check_penalty",
    "cost_range",
    "format_cost",
    "genotype_costs",
    "parse_budget",
    "within",
]

#: Relative slack under which a cost computed in floating point still meets its limit.
BUDGET_SLACK = 1e-9
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_FORMAT = (
    "RESOURCE=VALUE with RESOURCE one of params, flops, latency, and VALUE a positive number, "
    "optionally with k, M or G (params=50k, flops=300M) or ms for latency (latency=4ms)"
)


def parse_budget(text: str) -> tuple[str, float]:
    """``"params=50k"`` as ``("params", 50000.0)``; latency in milliseconds (``latency=4ms``).

    Raises:
        OptionError: one line naming what was wrong and the accepted form.
    """
    resource, sep, value = str(text).partition("=")
    resource = resource.strip().lower()
    if not sep:
        raise OptionError(f"budget {text!r} is not {_FORMAT}")
    if resource not in RESOURCES:
        raise OptionError(
            f"budget {text!r}: unknown resource {resource!r}; accepted: {', '.join(RESOURCES)}"
        )
    return resource, _amount(resource, value.strip(), text)


def _amount(resource: str, value: str | float, text: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise OptionError(f"budget {text!r}: the value must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        unit = "ms" if resource == "latency" else "[kKmMgGtT]?"
        match = re.fullmatch(rf"([0-9.eE+-]+)\s*({unit})?", value)
        try:
            number = float(match.group(1)) if match else math.nan
        except ValueError:
            number = math.nan
        if match and resource != "latency":
            number *= _SCALE[(match.group(2) or "").lower()]
    if not (math.isfinite(number) and number > 0):
        raise OptionError(f"budget {text!r}: the value must be positive; the form is {_FORMAT}")
    return number


def check_budget(value: Any) -> dict[str, float]:
    """A budget in any accepted form as ``{resource: limit}``: None or empty (no budget), one
    ``"RESOURCE=VALUE"`` text, a list of them, or a mapping of resource to a number or text
    (``{"params": "50k"}``). A resource given twice is an error."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        out = {}
        for resource, amount in value.items():
            r = str(resource).strip().lower()
            if r not in RESOURCES:
                raise OptionError(
                    f"budget: unknown resource {resource!r}; accepted: {', '.join(RESOURCES)}"
                )
            out[r] = _amount(r, amount, f"{resource}={amount}")
        return out
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise OptionError(
            f"budget must be text such as params=50k, or a list of them, got {value!r}"
        )
    out = {}
    for text in value:
        resource, amount = parse_budget(text)
        if resource in out:
            raise OptionError(f"budget: {resource} is given twice; give each resource once")
        out[resource] = amount
    return out


def check_penalty(value: Any) -> float | None:
    """The soft penalty's lambda: None (the budget is met by construction) or a number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(f"budget_penalty must be a number >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise OptionError(f"budget_penalty must be a number >= 0, got {value!r}")
    return float(value)


def budget_costs(
    space: SearchSpace,
    task: Task,
    resources: Sequence[str],
    *,
    device: Any = "cpu",
    cache_dir: Any = None,
) -> dict[str, Costs]:
    """Every candidate's cost in each of ``resources`` (see
    :func:`nasplug.searchlib.costs.candidate_costs`; latency at batch 1 on ``device``)."""
    return {
        r: candidate_costs(space, task, r, device=device, cache_dir=cache_dir) for r in resources
    }


def budget_constraints(
    space: SearchSpace, costs: Mapping[str, Costs], limits: Mapping[str, float]
) -> tuple[LinearConstraint, ...]:
    """Per limit, ``sum(cost * weight) <= limit - fixed`` over ``space``'s candidates, named
    ``budget:<resource>``. Entries of candidates the space does not have (a space restricted
    since the costs were made) are left out."""
    out = []
    for resource, limit in limits.items():
        c = costs[resource]
        terms = tuple(
            (choice, cand, cost) for (choice, cand), cost in sorted(c.entries.items()) if cost > 0
        )
        bound = max(limit - c.fixed, 0.0)
        out.append(LinearConstraint(f"budget:{resource}", terms, bound).on(space.choices()))
    return tuple(out)


def cost_range(space: SearchSpace, costs: Costs) -> tuple[float, float]:
    """The least and the largest cost of a network the space can derive (every group with its
    ``k`` members, each with one candidate; the group's ``unused`` candidate never)."""
    choices = space.choices()
    layout = group_layout(choices, space.groups())
    candidates = {c.name: c.candidates for c in choices}
    tables = [
        [
            [costs.entries.get((name, candidates[name][j]), 0.0) for j in keep]
            for name, keep in members
        ]
        for _, _, members in layout
    ]
    ks = [k for _, k, _ in layout]
    least = least_cost(ks, tables)
    largest = -least_cost(ks, [[[-v for v in row] for row in group] for group in tables])
    return costs.fixed + least, costs.fixed + largest


def genotype_costs(
    space: SearchSpace, costs: Mapping[str, Costs], genotype: Genotype
) -> dict[str, float]:
    """What ``genotype`` costs in each resource of ``costs``."""
    return {r: genotype_cost(space, c, genotype) for r, c in costs.items()}


def within(cost: float, limit: float) -> bool:
    """Whether ``cost`` meets ``limit`` (up to :data:`BUDGET_SLACK`, relative)."""
    return cost <= limit * (1 + BUDGET_SLACK)


def format_cost(resource: str, value: float) -> str:
    """``12,345`` parameters or FLOPs, ``3.210ms`` latency."""
    return f"{value:.3f}ms" if resource == "latency" else f"{value:,.0f}"
