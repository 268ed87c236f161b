"""The errors the layers share, each a one-line message for the user, and that line's text."""

from __future__ import annotations

__all__ = ["RunError", "one_line"]

# Enough for any message written for a person; more is a dump (of a tensor, a config, ...).
_MAX_CHARS = 1000


class RunError(Exception):
    """A run directory is missing, not a run, or holds a damaged file; one line for the user."""


def one_line(e: BaseException, *, with_type: bool = False) -> str:
    """``e``'s message on one line (at most 1,000 characters), or its type's name.

    With ``with_type``, the type's name comes first (``KeyError: 'x'``), as for an error that
    is passed on from code the user did not call directly; a message-less error is its type's
    name either way.

    Example:
        >>> one_line(ValueError("bad\\n  value"))
        'bad value'
        >>> one_line(KeyError("x"), with_type=True)
        "KeyError: 'x'"
    """
    # A torch error may carry its C++ backtrace after this marker: nothing for the user.
    text = " ".join(str(e).split("Exception raised from ")[0].split())
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS] + " ..."
    name = type(e).__name__
    if not text:
        return name
    return f"{name}: {text}" if with_type else text
