"""Plugin options: ``KEY=VALUE`` text typed and checked against the plugin constructor's signature."""

from __future__ import annotations

import inspect
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "AUGMENT_MODES",
    "STREAM_MODES",
    "OptionError",
    "accepted",
    "instantiate",
    "parse_pairs",
    "read_toml",
    "typed",
]

#: Accepted ``augment`` settings of searches and training (CLI, API, trainer): DARTS's crop and
#: flip (and cutout in training), crops only, none. Here, so that the CLI needs no torch for them.
AUGMENT_MODES = ("standard", "no-flip", "off")
#: Accepted ``stream`` settings: by the data's size, always through a DataLoader, always resident.
STREAM_MODES = ("auto", "on", "off")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class OptionError(ValueError):
    """A bad option or config file; the message is one line for the user."""


def parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{flag} takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise OptionError(f"config file {p} does not exist") from None
    except OSError as e:  # a directory, no permission, ...
        raise OptionError(
            f"config file {p} cannot be read ({e.strerror or e}); accepted: a TOML file"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OptionError(f"config file {p} is not valid TOML: {e}") from e
    except RecursionError:
        raise OptionError(f"config file {p} is nested too deeply") from None


def _params(cls: Any) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls)
    return {
        n: p
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def accepted(cls: Any) -> dict[str, Any]:
    """Option name -> default of a plugin class."""
    return {n: p.default for n, p in _params(cls).items()}


def _hints(cls: Any) -> dict[str, Any]:
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - evaluating a plugin's annotations runs its code; fall back to the defaults' types
        return {}


def _convert(value: Any, hint: Any, default: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if (
            isinstance(value, str)
            and value.lower() in ("none", "null")
            and len(args) < len(typing.get_args(hint))
        ):
            return None
        errors = []
        for a in args:
            try:
                return _convert(value, a, default)
            except (TypeError, ValueError) as e:
                errors.append(e)
        raise ValueError(f"expects {' or '.join(getattr(a, '__name__', str(a)) for a in args)}")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        for a in allowed:
            if str(a) == str(value):
                return a
        raise ValueError(f"expects one of {', '.join(map(str, allowed))}")
    if hint is inspect.Parameter.empty or hint is Any or hint is None:
        hint = type(default) if default not in (None, inspect.Parameter.empty) else str
    if hint is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError("expects a boolean (true/false)")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError("expects an integer")
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 0)
        except ValueError:
            raise ValueError("expects an integer") from None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise ValueError("expects a number") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ValueError("expects text")
        return str(value)
    return value


def instantiate(cls: Any, opts: Mapping[str, Any], what: str) -> Any:
    """Build a plugin from options, typed by its constructor's annotations.

    Args:
        cls: the plugin class (or factory).
        opts: option name -> text (from the CLI) or TOML value.
        what: how to name the plugin in errors, e.g. ``"relaxation 'sparsemax'"``.
    """
    kwargs = typed(cls, opts, what)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise OptionError(f"{what}: {e}") from e


def typed(cls: Any, opts: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The options as the constructor's keyword arguments, each typed by its annotation."""
    params = _params(cls)
    hints = _hints(cls)
    kwargs = {}
    for key, value in opts.items():
        if key not in params:
            names = ", ".join(params) or "none"
            raise OptionError(f"unknown option {key!r} for {what}; accepted: {names}")
        try:
            kwargs[key] = _convert(
                value, hints.get(key, params[key].annotation), params[key].default
            )
        except ValueError as e:
            raise OptionError(f"option {key}={value!r} of {what} {e}") from None
    return kwargs
