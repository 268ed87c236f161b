"""The plugin contracts, the lowest layer: the four axes' classes and their optional
capabilities (:mod:`~nasplug.core.interfaces`, :mod:`~nasplug.core.protocols`), the types
they exchange, options, discovery and loading, and the errors every layer raises.

It imports nothing else of nasplug; every other layer may import it.
"""
