"""Plugin discovery: entry points by axis, and the name a plugin goes by.

It imports no plugin contract, so the contracts (:mod:`nasplug.core.interfaces`) can name a
plugin without importing the loader (:mod:`nasplug.core.registry`), which checks a loaded class
against them. Its names are public through :mod:`nasplug.core.registry`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata

__all__ = [
    "AXES",
    "PluginError",
    "PluginInfo",
    "available",
    "info",
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
_BUILTIN_DIST = "nasplug"
_AUTOLOAD_OFF = "NASPLUG_DISABLE_PLUGIN_AUTOLOAD"
#: The class attribute :func:`load` sets on the class it returns: the name it was loaded as.
NAME_ATTR = "__nasplug_registered_name__"


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


def registered_name(cls: type) -> str | None:
    """The name ``cls`` is registered as: as loaded through :func:`load`, else the entry point
    whose value names this very class (imported directly, e.g. in a notebook); None if none.

    Read from the class's own namespace, so a subclass never inherits its parent's name.
    """
    name = vars(cls).get(NAME_ATTR)
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
