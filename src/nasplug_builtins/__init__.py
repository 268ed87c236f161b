"""nasplug's built-in plugins, registered through the same entry points as any third-party
distribution: ``spaces``, ``relaxations``, ``strategies`` and ``datasets``.

They import :mod:`nasplug.core`, :mod:`nasplug.engine` and :mod:`nasplug.searchlib` only, and
no built-in imports another's module.
"""
