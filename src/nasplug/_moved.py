"""Module names of 0.1.0 that moved into the layers or were renamed since, importable with a
DeprecationWarning.

``import nasplug.interfaces`` gives the module now at ``nasplug.core.interfaces`` (the same
object, so classes compare equal) and warns once per name where it moved. The names go in the
next minor release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

#: old module name -> where it lives now
MOVED: dict[str, str] = {
    "nasplug.augment": "nasplug.engine.augment",
    "nasplug.baselines": "nasplug.engine.baselines",
    "nasplug.batchnorm": "nasplug.engine.batchnorm",
    "nasplug.budget": "nasplug.run.budget",
    "nasplug.candidates": "nasplug.searchlib.blackbox",
    "nasplug.comparison": "nasplug.report.comparison",
    "nasplug.compiling": "nasplug.engine.compiling",
    "nasplug.costs": "nasplug.searchlib.costs",
    "nasplug.credentials": "nasplug.run.credentials",
    "nasplug.ddp": "nasplug.engine.ddp",
    "nasplug.diagnostics": "nasplug.searchlib.diagnostics",
    "nasplug.inputs": "nasplug.run.inputs",
    "nasplug.interfaces": "nasplug.core.interfaces",
    "nasplug.logits": "nasplug.searchlib.logits",
    "nasplug.memo": "nasplug.engine.memo",
    "nasplug.memory": "nasplug.engine.memory",
    "nasplug.options": "nasplug.core.options",
    "nasplug.plotting": "nasplug.report.plotting",
    "nasplug.polytope": "nasplug.searchlib.polytope",
    "nasplug.querycurve": "nasplug.report.curve",
    "nasplug.registry": "nasplug.core.registry",
    "nasplug.rng": "nasplug.engine.rng",
    "nasplug.rundir": "nasplug.run.rundir",
    "nasplug.searchlib.candidates": "nasplug.searchlib.blackbox",
    "nasplug.streaming": "nasplug.engine.streaming",
    "nasplug.supernet": "nasplug.searchlib.supernet",
    "nasplug.supernet_options": "nasplug.searchlib.supernet_options",
    "nasplug.tasks": "nasplug.engine.tasks",
    "nasplug.trainer": "nasplug.engine.trainer",
    "nasplug.training": "nasplug.run.training",
    "nasplug.types": "nasplug.core.types",
    "nasplug.unrolled": "nasplug.searchlib.unrolled",
    "nasplug.userdata": "nasplug.engine.userdata",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a moved name and loads it as the module at its new home."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there ({spec.name} goes in 0.2)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module was run at its new home; nothing is left to run."""


def install() -> None:
    """Put the alias finder last on ``sys.meta_path`` (once): real modules are found first."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
