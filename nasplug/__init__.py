"""nasplug: neural architecture search where every axis is a plugin."""

from nasplug.interfaces import Dataset, Relaxation, SearchSpace, Strategy, Suggest, Weights
from nasplug.types import Choice, Data, Genotype, SearchResult, Task

__version__ = "0.1.0"

__all__ = ["Choice", "Data", "Dataset", "Genotype", "Relaxation", "SearchResult", "SearchSpace",
           "Strategy", "Suggest", "Task", "Weights", "__version__"]
