"""A run directory: config, events log, checkpoints, genotype and final metrics.

Every file is written atomically (a temporary file renamed into place), so a run killed at
any moment leaves the previous valid version of each file; the temporary files such a kill
leaves are removed when the run is next locked. A process that runs or resumes a run holds the
directory's lock file (its process id inside), so two processes never run one run at once.

Run directories are created readable by their owner only (mode 0o700): a run's config, events
and Optuna study may name databases, paths and hosts, and one rule for every run is simpler
to trust than a guess at which runs hold something private.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import pickle
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from nasplug.core.errors import RunError
from nasplug.run.credentials import mask_all

__all__ = ["RunDir", "RunError", "atomic_write", "check_new_run_path"]

CONFIG = "config.json"
EVENTS = "events.jsonl"
GENOTYPE = "genotype.json"
METRICS = "metrics.json"
#: The candidates a strategy evaluated, where it keeps them.
CANDIDATES = "candidates.json"
#: A training run's result (its test metric, parameters, time).
TRAIN = "train.json"
#: The run's report, written beside its pictures (see :mod:`nasplug.report.summary`).
REPORT = "report.md"
#: The folder of TensorBoard scalars.
TENSORBOARD = "tensorboard"
#: The statistics that prepare new inputs as the run's were (see :mod:`nasplug.run.inputs`).
INPUTS = "inputs.json"
#: What each candidate costs in every resource of the run's budget (see :mod:`nasplug.run.budget`).
COSTS = "costs.json"
CHECKPOINTS = "checkpoints"
LOCK = "nasplug.lock"
#: Keys of a run's metrics that say which benchmark table its genotype was looked up in: the
#: name of the metric holding the table's value, and the table's label.
TABLE_METRIC = "table_metric"
TABLE_LABEL = "table_label"
#: What a run holds before its first checkpoint or result: nothing worth keeping.
_SCAFFOLD = {CONFIG, EVENTS, LOCK}


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a torn one.

    Raises:
        OSError: naming ``path`` (not the temporary file) when the write fails.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_new_run_path(path: str | Path, *, resume: str = "nasplug run --resume") -> None:
    """Raise RunError unless a new run can be created at ``path``; writes nothing.

    ``path`` may be missing or an existing directory that holds no run; the nearest existing
    folder above it must be writable.
    """
    p = Path(path)
    _check_links(p)
    if p.exists() and not p.is_dir():
        raise RunError(f"--out {p} is an existing file; accepted: a new directory or an empty one")
    if (p / CONFIG).exists():
        raise RunError(
            f"{p} already holds a run; resume it with `{resume} {p}` or choose another --out"
        )
    target = p
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        raise RunError(f"cannot create {p}: {target} is a file, not a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only_fs(target) else "permission denied or immutable"
        raise RunError(f"cannot create {p}: {target} is not writable ({why}); choose another --out")


def _check_links(p: Path) -> None:
    """A symbolic link loop or a dangling link at ``p`` is refused by name (creating the
    folder would only say "File exists")."""
    try:
        os.stat(p)
    except OSError as e:
        accepted = "accepted: a new directory or an empty one"
        if e.errno == errno.ELOOP:
            raise RunError(f"--out {p} is a symbolic link loop; {accepted}") from None
        if p.is_symlink():
            raise RunError(
                f"--out {p} is a symbolic link to {os.readlink(p)}, which does not exist; "
                f"{accepted}"
            ) from None


def _make_dirs(path: Path, made: list[Path]) -> None:
    """Create ``path`` and its missing parents; append to ``made`` each folder this call
    created (not those another process created meanwhile), outermost first."""
    missing = []
    p = path
    while not p.is_dir() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700 if folder == path else 0o777)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        made.append(folder)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
    """JSON text of ``o``; NaN and inf become null and URL passwords ``***``."""
    plain = json.loads(json.dumps(o, default=_json_default))
    return json.dumps(mask_all(_clean(plain)), indent=indent)


class RunDir:
    """The files of one run. ``rank0`` False makes every write a no-op (other DDP ranks)."""

    def __init__(self, path: str | Path, *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self._lock_fd: int | None = None
        self._made: list[Path] = []  # the folders create() made, outermost first
        self._owner = False  # whether this process wrote the run's config.json (create())
        self._logged = False  # whether this process appended to the events log yet

    # ---- creating and opening -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any], *, writer: bool = True) -> RunDir:
        """A new run at ``path``, locked by this process until :meth:`close`.

        Safe against other processes creating a run at the same ``path`` at the same moment:
        the run belongs to the one process that takes the lock and then writes ``config.json``
        where none exists yet (see :meth:`_claim`); the others raise RunError. If creating it
        fails half-way, this process removes what it made itself, and nothing else.
        """
        run = cls(path, writer=writer)
        if not writer:
            return run
        check_new_run_path(run.path)
        try:
            _make_dirs(run.path, run._made)
            try:
                run._lock()
            except RunError:
                raise RunError(
                    f"{run.path} is in use by {_holder(run.path / LOCK)}, which is creating or "
                    f"running a run there; choose another --out"
                ) from None
            run._claim(to_json(config).encode())
        except BaseException:
            run.abandon()
            raise
        return run

    def _claim(self, data: bytes) -> None:
        """Write ``config.json`` only where none exists: a hard link to a complete temporary
        file fails if the name is taken, so two processes never both create the run and a
        reader never sees a torn config. (File systems without hard links fall back to a
        check and a rename, which the lock this process holds keeps safe among nasplug
        processes.)"""
        target = self.path / CONFIG
        taken = RunError(
            f"{self.path} already holds a run (another process created it just now); "
            f"choose another --out"
        )
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{CONFIG}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise taken from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise OSError(e.errno, e.strerror, str(target)) from e
                if target.exists():
                    raise taken from None
                os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        self._owner = True

    @classmethod
    def open(cls, path: str | Path, *, writer: bool = True) -> RunDir:
        """An existing run. A process that goes on with it calls :meth:`lock` first."""
        run = cls(path, writer=writer)
        if not run.path.is_dir():
            raise RunError(f"run directory {run.path} does not exist")
        if not (run.path / CONFIG).is_file():
            raise RunError(f"{run.path} is not a nasplug run directory (no {CONFIG})")
        run.config()  # fail early on a damaged config
        return run

    def lock(self) -> RunDir:
        """Take the run's lock (see :meth:`_lock`) and remove the temporary files that a killed
        write left; readers and report writers need no lock."""
        if self.writer:
            self._lock()
            self._remove_leftovers()
        return self

    def close(self) -> None:
        """Release the lock (the process's exit releases it too, leaving a stale lock file)."""
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        _HELD.pop(os.path.realpath(self.path), None)
        (self.path / LOCK).unlink(missing_ok=True)
        os.close(fd)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def abandon(self) -> bool:
        """Undo :meth:`create` if this process created the run and it holds nothing worth
        keeping yet.

        A run without a checkpoint or result (only its config, events and lock) would block
        the next try at the same ``--out``; it is removed, with the folders create() made.
        Only what this process made is ever removed: a run that another process created at
        the same path, or a folder that is not empty, is left alone. Returns whether the run
        was removed.
        """
        removed = False
        if self.writer and self._owner and self.path.is_dir() and self._only_scaffold():
            for name in _SCAFFOLD - {LOCK}:
                (self.path / name).unlink(missing_ok=True)
            self._remove_leftovers()
            for d in sorted(self.path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            self._owner = False
            removed = True
        self.close()
        for folder in reversed(self._made):  # innermost first; a folder in use is not empty
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []
        return removed

    def _only_scaffold(self) -> bool:
        for p in self.path.rglob("*"):
            rel = p.relative_to(self.path)
            if p.is_dir() or str(rel) in _SCAFFOLD or p.name.endswith(".tmp"):
                continue
            return False
        return True

    # ---- the lock ----------------------------------------------------------------------------
    def _lock(self) -> None:
        """Take the run's lock or raise RunError naming the process that holds it.

        The lock is an ``flock`` on ``nasplug.lock``, which holds the owner's process id and
        host: the kernel drops it when the owner dies, so a lock file left by a killed process
        is stale and taken over. Where the file system has no ``flock``, a lock file naming a
        live process of this host counts as held. One process may open its own run twice.
        """
        key = os.path.realpath(self.path)
        if key in _HELD:  # opened again by its own process: the first opener keeps the lock
            return
        path = self.path / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _flock(fd, path)
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # released and removed between open and flock
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        _HELD[key] = fd
        self._lock_fd = fd

    def _remove_leftovers(self) -> None:
        """Temporary files of writes that a kill interrupted (only the lock holder may)."""
        for tmp in self.path.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)

    def config(self) -> dict[str, Any]:
        return self._read_json(CONFIG)

    def metrics(self) -> dict[str, Any] | None:
        """A search's final metrics; None until it has finished."""
        return self.read_json(METRICS)

    def genotype(self) -> dict[str, Any] | None:
        """The genotype a search derived, as stored; None until it has finished."""
        return self.read_json(GENOTYPE)

    def candidates(self) -> Any:
        """The candidates a strategy kept (a list; empty where it kept none)."""
        return self.read_json(CANDIDATES, [])

    def train_result(self) -> dict[str, Any] | None:
        """A training run's result; None until it has finished."""
        return self.read_json(TRAIN)

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
        with open(self.path / EVENTS, "a+b") as f:
            line = to_json(rec, indent=None) + "\n"
            if not self._logged and f.tell() > 0:
                # A killed process may have left a torn last line: start a new one after it.
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())
        self._logged = True

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
        p = self.checkpoint_path(phase)
        try:
            atomic_write(p, buf.getvalue())
        except OSError as e:
            kept = "the previous checkpoint is kept" if p.exists() else "no checkpoint was kept"
            raise OSError(e.errno, f"cannot write checkpoint {p}: {e.strerror or e}; {kept}") from e

    def load_checkpoint(self, phase: str) -> dict[str, Any] | None:
        p = self.checkpoint_path(phase)
        if not p.exists():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            unsafe = re.search(r"GLOBAL ([\w.]+)", str(e))
            if unsafe is None:
                raise RunError(
                    f"checkpoint {p} is corrupt or truncated ({type(e).__name__}); "
                    f"delete it to redo phase {phase!r} from its start"
                ) from e
            raise RunError(
                f"checkpoint {p} is refused as unsafe: loading it would import "
                f"{unsafe.group(1)}, and a nasplug checkpoint holds only tensors and plain data; "
                f"delete it to redo phase {phase!r} from its start"
            ) from e
        except Exception as e:
            raise RunError(
                f"checkpoint {p} is corrupt or truncated ({type(e).__name__}); "
                f"delete it to redo phase {phase!r} from its start"
            ) from e


#: run directory (real path) -> the descriptor of the lock this process holds on it
_HELD: dict[str, int] = {}


def _flock(fd: int, path: Path) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise RunError(
                f"{path.parent} is in use by {_holder(path)}; wait for it to finish or stop it"
            ) from None
    # No flock on this file system: trust the process id in the file.
    pid, host = _read_lock(path)
    if pid is not None and pid != os.getpid() and host == socket.gethostname() and _alive(pid):
        raise RunError(
            f"{path.parent} is in use by {_holder(path)}; wait for it to finish or stop it"
        )


def _read_lock(path: Path) -> tuple[int | None, str]:
    try:
        pid, _, host = path.read_text().strip().partition(" ")
    except (OSError, UnicodeDecodeError):
        return None, ""
    return (int(pid) if pid.isdigit() else None), host


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _holder(lock: Path) -> str:
    pid, host = _read_lock(lock)
    if pid is None:
        return "another process"
    return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
