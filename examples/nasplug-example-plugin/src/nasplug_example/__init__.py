"""Example nasplug plugins: a relaxation, a search space and a strategy of a third party.

Nothing here is imported by nasplug directly: the entry points in pyproject.toml register
``fair-sigmoid`` (relaxation), ``mlp`` (space) and ``example-evolution`` (strategy), and nasplug imports
a module only when its plugin is asked for.
"""

__version__ = "0.1.0"
