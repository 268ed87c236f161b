"""The built-in search spaces: ``cell`` (DARTS), ``dense`` (DAG blocks of dense layers) and ``nb201``."""
