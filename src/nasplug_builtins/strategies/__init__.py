"""The built-in strategies: ``darts``, ``pdarts``, ``random``, ``evolution`` and ``tpe``."""
