"""scikit-learn's diabetes regression data."""

from __future__ import annotations

from nasplug.core.interfaces import Dataset
from nasplug.core.types import Data
from nasplug.engine.userdata import build as _build
from nasplug.engine.userdata import split_indices as _split

from ._common import check_fraction

__all__ = ["Diabetes"]


class Diabetes(Dataset):
    """scikit-learn's diabetes regression data: 442 patients, 10 features, 1 target (raw units).

    Args:
        test_fraction: share of the examples held out as the test split.
        seed: seed of the split.
    """

    def __init__(self, test_fraction: float = 0.2, seed: int = 0) -> None:
        check_fraction("diabetes", test_fraction)
        self.test_fraction = test_fraction
        self.seed = seed

    def load(self) -> Data:
        try:
            from sklearn.datasets import load_diabetes
        except ImportError as e:
            raise ValueError(
                "diabetes needs scikit-learn, which is not installed: pip install scikit-learn"
            ) from e
        x, y = load_diabetes(return_X_y=True, scaled=False)
        train, test = _split(y, "regression", self.test_fraction, self.seed)
        return _build(
            "diabetes",
            "regression",
            {"train": (x[train], y[train]), "test": (x[test], y[test])},
            labels=("disease progression",),
        )
