"""Plain data a strategy keeps across the epochs of a phase, saved in its checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Memo"]


class Memo(dict):
    """Plain data a strategy keeps across epochs (history, counters); saved in checkpoints."""

    def state_dict(self) -> dict[str, Any]:
        return dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.clear()
        self.update(state)
