"""The library strategies share: supernet search and its steps, architecture logits, the
projections and vertices of the group polytope, black-box candidates, diagnostics and costs.

Named ``searchlib`` because ``nasplug.search`` is the function that runs a search. It imports
:mod:`nasplug.core` and :mod:`nasplug.engine`.
"""
