"""The errors the layers share, each a one-line message for the user."""

from __future__ import annotations

__all__ = ["RunError"]


class RunError(Exception):
    """A run directory is missing, not a run, or holds a damaged file; one line for the user."""
