"""Plugin discovery: a thin layer over ``importlib.metadata`` entry points.

Only the plugin asked for is imported. Built-ins register through the same groups as any
third-party distribution.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

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

#: axis name -> entry-point group
AXES: dict[str, str] = {
    "space": "nasplug.spaces",
    "relaxation": "nasplug.relaxations",
    "strategy": "nasplug.strategies",
    "dataset": "nasplug.datasets",
}
#: axis name -> the abstract class in nasplug.interfaces that its plugins subclass
_BASES: dict[str, str] = {
    "space": "SearchSpace",
    "relaxation": "Relaxation",
    "strategy": "Strategy",
    "dataset": "Dataset",
}
_BUILTIN_DIST = "nasplug"
_AUTOLOAD_OFF = "NASPLUG_DISABLE_PLUGIN_AUTOLOAD"
#: The class attribute :func:`load` sets on the class it returns: the name it was loaded as.
_NAME_ATTR = "__nasplug_registered_name__"


class PluginError(Exception):
    """A plugin could not be found or loaded; the message is one line for the user."""


@dataclass(frozen=True)
class PluginInfo:
    axis: str
    name: str
    value: str
    dist: str
    version: str

    @property
    def builtin(self) -> bool:
        return self.dist == _BUILTIN_DIST


def available(axis: str) -> dict[str, list[PluginInfo]]:
    """Every registration of ``axis``, by name (a name with two entries is a conflict)."""
    group = _group(axis)
    only_builtin = os.environ.get(_AUTOLOAD_OFF, "") not in ("", "0")
    found: dict[str, list[PluginInfo]] = {}
    seen: set[tuple[str, str, str]] = set()
    for ep in metadata.entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if only_builtin and dist != _BUILTIN_DIST:
            continue
        key = (ep.name, ep.value, dist)
        if key in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(key)
        found.setdefault(ep.name, []).append(PluginInfo(axis, ep.name, ep.value, dist, version))
    return dict(sorted(found.items()))


def names(axis: str) -> list[str]:
    return list(available(axis))


def info(axis: str, name: str) -> PluginInfo:
    """The single registration of ``name``; an unknown or doubly registered name is an error."""
    regs = available(axis)
    if name not in regs:
        listing = ", ".join(regs) or "none installed"
        raise PluginError(f"unknown {axis} {name!r}; available: {listing}")
    if len(regs[name]) > 1:
        who = " and ".join(f"{p.dist} {p.version} ({p.value})" for p in regs[name])
        raise PluginError(f"{axis} {name!r} is registered twice, by {who}; uninstall one")
    return regs[name][0]


def load(axis: str, name: str) -> Any:
    """Import and return the class registered as ``name`` on ``axis``.

    Raises:
        PluginError: the name is unknown, the import fails (or calls ``sys.exit``), or the
            entry point is not a subclass of the axis's abstract class or leaves one of its
            abstract methods unimplemented.
    """
    from nasplug import interfaces

    p = info(axis, name)
    where = f"entry point {p.value!r} of {p.dist} {p.version}"
    try:
        obj = metadata.EntryPoint(p.name, p.value, AXES[axis]).load()
    except (Exception, SystemExit) as e:  # a plugin's import may fail in any way, even exit
        detail = " ".join(str(e).split())
        raise PluginError(
            f"{axis} {name!r} failed to load from {where}: {type(e).__name__}: {detail}"
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
    setattr(obj, _NAME_ATTR, name)
    return obj


def registered_name(cls: type) -> str | None:
    """The name ``cls`` is registered as: as loaded through :func:`load`, else the entry point
    whose value names this very class (imported directly, e.g. in a notebook); None if none.

    Read from the class's own namespace, so a subclass never inherits its parent's name.
    """
    name = vars(cls).get(_NAME_ATTR)
    if isinstance(name, str):
        return name
    value = f"{cls.__module__}:{cls.__qualname__}"
    for axis in AXES:
        for found, regs in available(axis).items():
            if any(p.value == value for p in regs):
                return found
    return None


def name_of(plugin: object) -> str:
    """The name a plugin instance goes by: its registered name, else its class name.

    Genotypes carry it (``Genotype.space``), so a genotype file names the space to load. The
    class name is the fallback for a class used directly, e.g. in a test.
    """
    cls = type(plugin)
    return registered_name(cls) or cls.__name__


def _group(axis: str) -> str:
    if axis not in AXES:
        raise PluginError(f"unknown plugin axis {axis!r}; accepted: {', '.join(AXES)}")
    return AXES[axis]
