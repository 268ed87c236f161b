"""Plugin discovery and loading: a thin layer over ``importlib.metadata`` entry points.

Only the plugin asked for is imported. Built-ins register through the same groups as any
third-party distribution. Discovery is written in :mod:`nasplug.core._discovery`, apart, only so
that the contracts can name a plugin without importing the loader; import it from here.
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

from nasplug.core import interfaces
from nasplug.core._discovery import (
    AXES,
    NAME_ATTR,
    PluginError,
    PluginInfo,
    available,
    info,
    name_of,
    names,
    registered_name,
)
from nasplug.core.errors import one_line

__all__ = [
    "AXES",
    "PluginError",
    "PluginInfo",
    "available",
    "info",
    "load",
    "name_of",
    "names",
    "registered_name",
]

#: axis name -> the abstract class in nasplug.core.interfaces that its plugins subclass
_BASES: dict[str, str] = {
    "space": "SearchSpace",
    "relaxation": "Relaxation",
    "strategy": "Strategy",
    "dataset": "Dataset",
}


def load(axis: str, name: str) -> Any:
    """Import and return the class registered as ``name`` on ``axis``.

    Raises:
        PluginError: the name is unknown, the import fails (or calls ``sys.exit``), or the
            entry point is not a subclass of the axis's abstract class or leaves one of its
            abstract methods unimplemented.
    """
    p = info(axis, name)
    where = f"entry point {p.value!r} of {p.dist} {p.version}"
    try:
        obj = metadata.EntryPoint(p.name, p.value, AXES[axis]).load()
    except (Exception, SystemExit) as e:  # a plugin's import may fail in any way, even exit
        raise PluginError(
            f"{axis} {name!r} failed to load from {where}: {one_line(e, with_type=True)}"
        ) from e
    base = getattr(interfaces, _BASES[axis])
    if not isinstance(obj, type) or not issubclass(obj, base):
        what = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise PluginError(
            f"{axis} {name!r} from {where} is {what}, not a subclass of nasplug.{_BASES[axis]}"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise PluginError(
            f"{axis} {name!r} from {where} is class {obj.__name__}, which does not implement "
            f"{missing} (abstract in nasplug.{_BASES[axis]})"
        )
    setattr(obj, NAME_ATTR, name)
    return obj
