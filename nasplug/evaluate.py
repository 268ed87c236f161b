"""Training a searched genotype from scratch, baselines, and comparing runs."""

from __future__ import annotations

import argparse

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``compare``."""
