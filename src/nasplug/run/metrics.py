"""What a run reports about the network it derived beyond its own metric: what the network
costs (against the run's budget) and its value in the space's benchmark table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nasplug.core.errors import one_line

if TYPE_CHECKING:
    from nasplug.core.interfaces import SearchSpace
    from nasplug.core.types import Genotype, Task

__all__ = ["benchmark_metrics", "cost_metrics", "feasible_under"]


def feasible_under(
    space: SearchSpace, costs: Mapping[str, Any], limits: Mapping[str, float]
) -> Callable[[Genotype], bool]:
    """Whether a genotype's network meets every limit, by the costs' tables."""
    from nasplug.run.budget import genotype_costs, within

    def feasible(genotype: Genotype) -> bool:
        spent = genotype_costs(space, costs, genotype)
        return all(within(spent[r], limit) for r, limit in limits.items())

    return feasible


def cost_metrics(
    space: SearchSpace,
    task: Task,
    genotype: Genotype,
    costs: Mapping[str, Any],
    limits: Mapping[str, float] | None,
    *,
    penalised: bool = False,
) -> dict[str, Any]:
    """The derived network's ``params`` and ``flops`` (counted on the built network), its
    ``latency_ms`` and ``latency_source`` where the budget timed a table, and with a budget
    (``limits``): ``budget``, ``budget_cost`` and ``feasible``.

    Raises:
        RuntimeError: a search that meets its budget by construction (not ``penalised``)
            derived a network outside it: the search, not the input, is wrong.
    """
    from nasplug.engine.memory import count_params
    from nasplug.run.budget import format_cost, genotype_costs, within
    from nasplug.searchlib.costs import module_cost

    net = space.build(genotype, task)
    out: dict[str, Any] = {
        "params": float(count_params(net)),
        "flops": module_cost(net, (1, *task.input_shape), "flops"),
    }
    if not limits:
        return out
    spent = genotype_costs(space, costs, genotype)
    spent.update({r: out[r] for r in ("params", "flops") if r in spent})  # exact counts
    if "latency" in spent:
        out["latency_ms"] = spent["latency"]
        out["latency_source"] = dict(costs["latency"].source)
    feasible = all(within(spent[r], limit) for r, limit in limits.items())
    if not feasible and not penalised:
        over = ", ".join(
            f"{r} {format_cost(r, spent[r])} > {format_cost(r, limit)}"
            for r, limit in limits.items()
            if not within(spent[r], limit)
        )
        raise RuntimeError(f"the search derived a network outside its budget: {over}")
    out.update(budget=dict(limits), budget_cost={r: spent[r] for r in limits}, feasible=feasible)
    return out


def benchmark_metrics(
    space: SearchSpace, genotype: Genotype, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The table's value of ``genotype`` when ``space`` offers a benchmark table, else nothing.

    Returns ``{table.metric: value, "table_metric": table.metric, "table_label": table.label}``
    (the keys :data:`nasplug.run.rundir.TABLE_METRIC` and :data:`~nasplug.run.rundir.TABLE_LABEL`).
    A table that cannot be had (an optional package missing, a damaged file) costs the run
    nothing but this value: ``say`` gets one line saying why, and the result is empty.
    """
    from nasplug.core.interfaces import OffersBenchmark
    from nasplug.run.rundir import TABLE_LABEL, TABLE_METRIC

    if not isinstance(space, OffersBenchmark):
        return {}
    try:
        table = space.benchmark()
        value = float(table.query(genotype))
    except ValueError as e:  # OptionError included: how to install the table
        if say is not None:
            say(f"nasplug: note: no benchmark table value for this run: {one_line(e)}")
        return {}
    return {table.metric: value, TABLE_METRIC: table.metric, TABLE_LABEL: table.label}
