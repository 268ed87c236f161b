"""A run directory: config, events log, checkpoints, genotype and final metrics.

Every file is written atomically (a temporary file renamed into place), so a run killed at
any moment leaves the previous valid version of each file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

__all__ = ["RunDir", "RunError", "atomic_write"]

CONFIG = "config.json"
EVENTS = "events.jsonl"
GENOTYPE = "genotype.json"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"


class RunError(Exception):
    """A run directory is missing, not a run, or holds a damaged file; one line for the user."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _clean(o: Any) -> Any:
    """JSON has no NaN or inf: write them as null."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Mapping):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def to_json(o: Any, indent: int | None = 2) -> str:
    return json.dumps(_clean(json.loads(json.dumps(o, default=_json_default))), indent=indent)


class RunDir:
    """The files of one run. ``rank0`` False makes every write a no-op (other DDP ranks)."""

    def __init__(self, path: str | Path, *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer

    # ---- creating and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any], *, writer: bool = True) -> RunDir:
        run = cls(path, writer=writer)
        if writer:
            if (run.path / CONFIG).exists():
                raise RunError(f"{run.path} already holds a run; resume it with "
                               f"`nasplug run --resume {run.path}` or choose another --out")
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write(run.path / CONFIG, to_json(config).encode())
        return run

    @classmethod
    def open(cls, path: str | Path, *, writer: bool = True) -> RunDir:
        run = cls(path, writer=writer)
        if not run.path.is_dir():
            raise RunError(f"run directory {run.path} does not exist")
        if not (run.path / CONFIG).is_file():
            raise RunError(f"{run.path} is not a nasplug run directory (no {CONFIG})")
        run.config()  # fail early on a damaged config
        return run

    def config(self) -> dict[str, Any]:
        return self._read_json(CONFIG)

    def _read_json(self, name: str) -> Any:
        p = self.path / name
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            raise RunError(f"{p} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{p} is damaged ({e}); it is not valid JSON") from e

    # ---- results ---------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        if self.writer:
            atomic_write(self.path / name, to_json(obj).encode())

    def read_json(self, name: str, default: Any = None) -> Any:
        if not (self.path / name).exists():
            return default
        return self._read_json(name)

    # ---- events ----------------------------------------------------------------------------
    def log(self, event: str, **fields: Any) -> None:
        """Append one JSON line to the events log."""
        if not self.writer:
            return
        rec = {"event": event, "time": time.time(), **fields}
        with open(self.path / EVENTS, "a") as f:
            f.write(to_json(rec, indent=None) + "\n")

    def events(self, event: str | None = None) -> Iterator[dict[str, Any]]:
        """The events log, skipping a torn last line left by a killed process."""
        p = self.path / EVENTS
        if not p.exists():
            return
        with open(p) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if event is None or rec.get("event") == event:
                    yield rec

    # ---- checkpoints -----------------------------------------------------------------------
    def checkpoint_path(self, phase: str) -> Path:
        return self.path / CHECKPOINTS / f"{phase}.pt"

    def save_checkpoint(self, phase: str, state: Mapping[str, Any]) -> None:
        if not self.writer:
            return
        buf = io.BytesIO()
        torch.save(dict(state), buf)
        atomic_write(self.checkpoint_path(phase), buf.getvalue())

    def load_checkpoint(self, phase: str) -> dict[str, Any] | None:
        p = self.checkpoint_path(phase)
        if not p.exists():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise RunError(f"checkpoint {p} is corrupt or truncated ({type(e).__name__}); "
                           f"delete it to redo phase {phase!r} from its start") from e
