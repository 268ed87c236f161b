"""Secrets in storage URLs: masked wherever they are shown or stored, read only when used.

A storage URL such as ``postgresql://user:secret@host/db`` carries a password. nasplug never
writes it: messages, ``config.json`` and ``events.jsonl`` show ``postgresql://user:***@host/db``,
as SQLAlchemy renders URLs. To resume such a run without typing the URL again, give it
indirectly: ``env:NAME`` reads the URL from the environment variable ``NAME`` and ``file:PATH``
from the first line of the file ``PATH``; only those references are stored.

Example:
    >>> mask("postgresql://user:secret@host/db")
    'postgresql://user:***@host/db'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["MASK", "has_secret", "mask", "mask_all", "resolve_storage"]

MASK = "***"
# scheme://user:password@  -- the password runs to the last '@' before the host part.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s/]*)@")


def mask(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)


def has_secret(text: str) -> bool:
    """Whether ``text`` holds a URL with a password that :func:`mask` would hide."""
    return any(m["pw"] != MASK for m in _URL_PASSWORD.finditer(text))


def mask_all(obj: Any) -> Any:
    """A copy of JSON-like ``obj`` with every string masked."""
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, dict):
        return {k: mask_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_all(v) for v in obj]
    return obj


def resolve_storage(value: str | None) -> str | None:
    """The storage URL that ``value`` stands for: itself, ``env:NAME`` or ``file:PATH``.

    Raises:
        ValueError: the variable is unset or empty, or the file cannot be read or is empty.
    """
    if value is None:
        return None
    if value.startswith("env:"):
        name = value[len("env:") :]
        url = os.environ.get(name, "").strip() if name else ""
        if not url:
            raise ValueError(
                f"--storage {value}: environment variable {name!r} is not set or empty; "
                f"accepted: a storage URL, env:NAME or file:PATH"
            )
        return url
    if value.startswith("file:"):
        path = Path(value[len("file:") :]).expanduser()
        try:
            first = path.read_text().strip().splitlines()[0:1]
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ValueError(
                f"--storage {value}: cannot read {path} ({why}); accepted: a storage "
                f"URL, env:NAME or file:PATH"
            ) from None
        if not first or not first[0].strip():
            raise ValueError(
                f"--storage {value}: {path} is empty; it must hold the storage URL "
                f"on its first line"
            )
        return first[0].strip()
    if MASK in value and _URL_PASSWORD.search(value):
        raise ValueError(
            f"storage {value} has a masked password (it is never stored); give the "
            f"URL again with --storage, or as --storage env:NAME or file:PATH"
        )
    return value
