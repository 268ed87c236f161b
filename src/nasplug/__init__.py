"""nasplug: neural architecture search where every axis is a plugin.

``nasplug.search``, ``nasplug.train`` and ``nasplug.compare`` are the Python API (see
:mod:`nasplug.api`), with ``nasplug.curve`` for black-box strategies on a benchmark table (see
:mod:`nasplug.report.curve`); the ``nasplug`` command runs the same functions.

The public names are imported on first use, so that ``nasplug.cli`` starts without importing
torch: an interrupt or a failure while torch loads then reaches the command line's handler.
"""

from importlib import import_module
from typing import Any

from nasplug import _moved

_moved.install()

__version__ = "0.1.0"

_WHERE = {
    **dict.fromkeys(
        [
            "BenchmarkTable",
            "Dataset",
            "OffersBenchmark",
            "Relaxation",
            "SearchContext",
            "SearchSpace",
            "SearchesTable",
            "Strategy",
            "Suggest",
            "Weights",
        ],
        "nasplug.core.interfaces",
    ),
    **dict.fromkeys(
        ["Choice", "Data", "Genotype", "Group", "SearchResult", "Task"], "nasplug.core.types"
    ),
    **dict.fromkeys(
        ["SearchConfig", "SearchRun", "TrainConfig", "TrainRun", "compare", "search", "train"],
        "nasplug.api",
    ),
    **dict.fromkeys(["QueryCurves", "curve"], "nasplug.report.curve"),
}

__all__ = [
    "BenchmarkTable",
    "Choice",
    "Data",
    "Dataset",
    "Genotype",
    "Group",
    "OffersBenchmark",
    "QueryCurves",
    "Relaxation",
    "SearchConfig",
    "SearchContext",
    "SearchResult",
    "SearchRun",
    "SearchSpace",
    "SearchesTable",
    "Strategy",
    "Suggest",
    "Task",
    "TrainConfig",
    "TrainRun",
    "Weights",
    "__version__",
    "compare",
    "curve",
    "search",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nasplug' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
