"""A run's settings: :class:`SearchConfig` and :class:`TrainConfig`, each checked once.

Both are frozen: every setting is checked when one is made (``dataclasses.replace`` makes a
changed copy, checked again), so a config that exists is a config that can run here. Each
writes what a run directory's ``config.json`` holds (:meth:`SearchConfig.to_dict`) and reads
it back, older runs' files included (:meth:`SearchConfig.from_stored`).

Example:
    >>> from nasplug.run.config import SearchConfig
    >>> cfg = SearchConfig(relax="sparsemax", epochs=2, space_opts={"channels": 4})
    >>> cfg.epochs, cfg.to_dict()["opts"]["space"]
    (2, {'channels': 4})

Nothing here imports torch at import time: the command line reads its config before torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from nasplug.core.errors import one_line
from nasplug.core.options import AUGMENT_MODES, STREAM_MODES, OptionError, read_toml

if TYPE_CHECKING:
    from nasplug.core.interfaces import Dataset, Relaxation, SearchSpace, Strategy
    from nasplug.core.types import Data, Task

__all__ = [
    "DEFAULTS",
    "LIMITS",
    "PLUGIN_KEYS",
    "SearchConfig",
    "SearchSettings",
    "TrainConfig",
    "check_config",
    "check_counts",
    "check_data_settings",
    "compile_backend",
]

#: config key -> plugin axis (the option tables of a config file and of config.json)
PLUGIN_KEYS = {"space": "space", "relax": "relaxation", "strategy": "strategy", "data": "dataset"}
#: The largest accepted ``epochs`` and ``batch_size`` (2**31-1: the largest 32-bit index;
#: a batch larger than the data is all of it, and the run says so).
LIMITS = {"epochs": 100_000, "batch_size": 2**31 - 1}
#: What a plugin slot given as an instance must be, by config key (for the error message).
_SLOT_KINDS = {"space": "SearchSpace", "relax": "Relaxation", "strategy": "Strategy"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_counts(values: Mapping[str, Any]) -> None:
    """``epochs`` and ``batch_size``: positive integers up to :data:`LIMITS`."""
    for key, limit in LIMITS.items():
        value = values.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise OptionError(f"{key} must be a positive integer, got {value!r}")
        if value > limit:
            raise OptionError(f"{key} {value} is too large; accepted: 1 to {limit:,}")


def check_data_settings(values: Mapping[str, Any]) -> None:
    """``augment``, ``stream`` and ``workers``: how batches are made, in search and training."""
    if values.get("augment") is not None and values["augment"] not in AUGMENT_MODES:
        raise OptionError(
            f"augment must be one of {', '.join(AUGMENT_MODES)}, got {values.get('augment')!r}"
        )
    if values.get("stream") not in STREAM_MODES:
        raise OptionError(
            f"stream must be one of {', '.join(STREAM_MODES)}, got {values.get('stream')!r}"
        )
    if not _is_int(values.get("workers")) or values["workers"] < 0:
        raise OptionError(
            f"workers must be an integer >= 0 (0: load in the main process), "
            f"got {values.get('workers')!r}"
        )


def compile_backend(value: Any) -> str | None:
    """The ``compile`` setting as a backend name: true means inductor, false or none eager."""
    if value is None or value is False or value == "":
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str):
        return value
    raise OptionError(f"compile must be true, false or a backend name, got {value!r}")


def _check_seed(seed: Any) -> None:
    if not _is_int(seed) or not 0 <= seed < 2**63:
        raise OptionError(f"seed must be an integer from 0 to 2**63-1, got {seed!r}")


def _check_device(device: Any) -> None:
    """Text naming a device that exists here, so nothing is written for a run that cannot start."""
    from nasplug.engine.trainer import pick_device

    if not isinstance(device, str):
        raise OptionError(f"device must be text (auto, cpu, cuda, cuda:N or mps), got {device!r}")
    try:
        pick_device(device)
    except (ValueError, RuntimeError) as e:
        raise OptionError(one_line(e)) from e


def _check_table(what: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise OptionError(f"{what} must be a table of options (KEY = VALUE), got {value!r}")
    return dict(value)


def _name(value: Any) -> str:
    """A plugin slot's name: the text itself, or an instance's registered (or class) name."""
    from nasplug.core import registry

    return value if isinstance(value, str) else registry.name_of(value)


def _instance_of(key: str, value: Any) -> bool:
    from nasplug.core.interfaces import Relaxation, SearchSpace, Strategy

    kinds = {"space": SearchSpace, "relax": Relaxation, "strategy": Strategy}
    return isinstance(value, kinds[key])


def _check_stored_opts(stored: Mapping[str, Any], keys: Any) -> dict[str, dict[str, Any]]:
    opts = stored.get("opts")
    if not isinstance(opts, Mapping) or not all(isinstance(opts.get(k, {}), Mapping) for k in keys):
        raise OptionError(f"opts must map {', '.join(keys)} to tables of options")
    return {k: dict(opts.get(k, {})) for k in keys}


# ---- search ------------------------------------------------------------------------------------
class SearchSettings(TypedDict, total=False):
    """The keyword settings of :func:`nasplug.search`, typed for type checkers and editors.

    They are :class:`SearchConfig`'s fields but the plugin slots and what a run records itself
    (``data_fingerprint``, ``versions``); None leaves the field as the config has it. A budget
    may be given as text (``"params=50k"``), a list of such texts or a mapping.
    """

    epochs: int | None
    batch_size: int | None
    seed: int | None
    device: str | None
    deterministic: bool | None
    augment: str | None
    stream: str | None
    workers: int | None
    out: str | Path | None
    storage: str | None
    study: str | None
    tensorboard: bool | None
    figures: bool | None
    compile: str | bool | None
    threads: int | None
    budget: str | Sequence[str] | Mapping[str, float] | None
    budget_penalty: float | None
    space_opts: Mapping[str, Any] | None
    relax_opts: Mapping[str, Any] | None
    strategy_opts: Mapping[str, Any] | None
    data_opts: Mapping[str, Any] | None
    task: str | Task | None
    test: Any


@dataclass(frozen=True)
class SearchConfig:
    """The settings of a search: what ``nasplug run`` flags and a config file's tables give.

    Plugin slots take a registered name (``nasplug list``) or an instance; ``data`` also takes a
    loaded :class:`~nasplug.Data`, an ``(x, y)`` pair of arrays or tensors (with ``task``) or a
    ``torch.utils.data.Dataset`` (see :func:`nasplug.search` for every setting). Made from a
    config file with :meth:`from_toml`.

    Raises:
        OptionError: on making one, for a setting of the wrong type or value (one line naming
            the setting and what it accepts), or a device that does not exist here.
    """

    space: str | SearchSpace = "cell"
    relax: str | Relaxation = "softmax"
    strategy: str | Strategy = "darts"
    data: str | Dataset | Data | Any = "fashion-mnist-small"
    epochs: int = 8
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    #: None: the data's own default (``Data.augment``), else ``standard``
    augment: str | None = None
    stream: str = "auto"
    workers: int = 2
    #: a Path is kept as its text
    out: str | Path | None = None
    storage: str | None = None
    study: str | None = None
    tensorboard: bool = False
    figures: bool = True
    compile: str | bool | None = None
    threads: int | None = None
    #: ``{resource: limit}`` once made; given also as ``"params=50k"`` or a list of such texts
    budget: Mapping[str, float] | None = None
    budget_penalty: float | None = None
    space_opts: Mapping[str, Any] = field(default_factory=dict)
    relax_opts: Mapping[str, Any] = field(default_factory=dict)
    strategy_opts: Mapping[str, Any] = field(default_factory=dict)
    data_opts: Mapping[str, Any] = field(default_factory=dict)
    #: for arrays and torch datasets: the task kind or a Task, and the test split
    task: str | Task | None = field(default=None, compare=False)
    test: Any = field(default=None, compare=False, repr=False)
    #: what the run found out about its data and plugins (config.json keeps them)
    data_fingerprint: Mapping[str, Any] | None = None
    versions: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        for key, kind in _SLOT_KINDS.items():
            value = getattr(self, key)
            if isinstance(value, str) and value:
                continue
            if isinstance(value, str) or value is None or not _instance_of(key, value):
                raise OptionError(f"{key} must be a plugin name (text) or a {kind}, got {value!r}")
        if self.data is None or (isinstance(self.data, str) and not self.data):
            raise OptionError(
                f"data must be a dataset name, a Dataset, a Data, arrays or a torch Dataset, "
                f"got {self.data!r}"
            )
        for key in PLUGIN_KEYS:
            opts = _check_table(f"{key}_opts", getattr(self, f"{key}_opts"))
            if opts and not isinstance(getattr(self, key), str):
                raise OptionError(
                    f"{key}_opts apply to a {key} given by name; an instance already has its "
                    "options"
                )
            object.__setattr__(self, f"{key}_opts", opts)
        self._check_settings()

    def _check_settings(self) -> None:
        from nasplug.engine.rng import check_threads
        from nasplug.run.budget import check_budget, check_penalty

        check_counts({"epochs": self.epochs, "batch_size": self.batch_size})
        _check_seed(self.seed)
        for key in ("deterministic", "tensorboard", "figures"):
            if not isinstance(getattr(self, key), bool):
                raise OptionError(f"{key} must be true or false, got {getattr(self, key)!r}")
        check_data_settings(
            {"augment": self.augment, "stream": self.stream, "workers": self.workers}
        )
        check_threads(self.threads)
        object.__setattr__(self, "budget", check_budget(self.budget) or None)
        object.__setattr__(self, "budget_penalty", check_penalty(self.budget_penalty))
        if self.budget_penalty is not None and not self.budget:
            raise OptionError("budget_penalty needs a budget (--budget RESOURCE=VALUE)")
        if isinstance(self.out, Path):
            object.__setattr__(self, "out", str(self.out))
        for key in ("out", "storage", "study"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise OptionError(f"{key} must be text, got {value!r}")
        _check_device(self.device)
        compile_backend(self.compile)
        if self.tensorboard and self.out is None:
            raise OptionError("tensorboard logs go into the run directory: give out=DIR")

    # ---- reading --------------------------------------------------------------------------
    def opts(self, key: str) -> dict[str, Any]:
        """The options of plugin slot ``key`` (``space``, ``relax``, ``strategy``, ``data``)."""
        return dict(getattr(self, f"{key}_opts"))

    def instances(self) -> dict[str, Any]:
        """The plugin slots given as objects rather than names, by config key."""
        return {k: getattr(self, k) for k in PLUGIN_KEYS if not isinstance(getattr(self, k), str)}

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """What ``config.json`` holds: the settings, plugins by name, ``opts`` by slot, and
        the data's fingerprint and plugin versions once known."""
        out = {key: getattr(self, key) for key in DEFAULTS}
        for key in PLUGIN_KEYS:
            out[key] = _name(out[key])
        out["budget"] = dict(self.budget) if self.budget else None
        out["opts"] = {key: self.opts(key) for key in PLUGIN_KEYS}
        if self.data_fingerprint is not None:
            out["data_fingerprint"] = dict(self.data_fingerprint)
        if self.versions is not None:
            out["versions"] = dict(self.versions)
        return out

    # ---- making one -----------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> SearchConfig:
        """The config of TOML file ``path`` (a ``[run]`` table of settings and ``[space]``,
        ``[relax]``, ``[strategy]``, ``[data]`` tables of plugin options), then ``overrides``.

        An override of None is not given (so command-line flags pass through as they are);
        ``*_opts`` overrides add to the file's table, option by option.
        """
        doc = read_toml(path)
        unknown = set(doc) - {"run", *PLUGIN_KEYS}
        if unknown:
            raise OptionError(
                f"config file {path}: unknown table {sorted(unknown)[0]!r}; "
                f"accepted: run, {', '.join(PLUGIN_KEYS)}"
            )
        for table in ("run", *PLUGIN_KEYS):
            if not isinstance(doc.get(table, {}), dict):
                raise OptionError(
                    f"config file {path}: {table} must be a table ([{table}]), got {doc[table]!r}"
                )
        values: dict[str, Any] = {}
        for key, value in doc.get("run", {}).items():
            key = key.replace("-", "_")
            if key not in DEFAULTS:
                raise OptionError(
                    f"config file {path}: unknown key {key!r} in [run]; "
                    f"accepted: {', '.join(DEFAULTS)}"
                )
            values[key] = value
        for key in PLUGIN_KEYS:
            values[f"{key}_opts"] = dict(doc.get(key, {}))
        return cls._with(values, overrides)

    @classmethod
    def _with(cls, values: dict[str, Any], overrides: Mapping[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in overrides.items():
            if key not in names:
                raise OptionError(f"unknown setting {key!r}; accepted: {', '.join(sorted(names))}")
            if value is None:
                continue
            if key.endswith("_opts") and key in values:
                values[key] = {**values[key], **_check_table(key, value)}
            else:
                values[key] = value
        return cls(**values)

    @classmethod
    def from_stored(cls, stored: Any, path: str | Path, **overrides: Any) -> SearchConfig:
        """The config a search run directory ``path`` holds (``stored``, its ``config.json``),
        with ``overrides`` (None: keep the stored value)."""
        values = cls.stored_values(stored, path)
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})

    @staticmethod
    def stored_values(stored: Any, path: str | Path) -> dict[str, Any]:
        """The settings of a search's ``config.json`` (``stored``, read from run directory
        ``path``) as :class:`SearchConfig`'s arguments, not yet checked.

        A run from before a setting existed gets the value it ran with: no augmentation
        (``augment = "off"``), the defaults for the rest.
        """
        from nasplug.run.rundir import CONFIG

        if not isinstance(stored, dict) or stored.get("command") == "train":
            raise OptionError(
                f"{path} is not a search run; continue training runs with "
                f"`nasplug train --resume {path}`"
            )
        for key in ("space", "relax", "strategy", "data", "epochs", "batch_size", "seed", "device"):
            if key not in stored:
                raise OptionError(
                    f"{path}/{CONFIG} lacks {key!r}; it was not written by `nasplug run`"
                )
        if "opts" not in stored:
            raise OptionError(f"{path}/{CONFIG} lacks 'opts'; it was not written by `nasplug run`")
        opts = _check_stored_opts(stored, PLUGIN_KEYS)
        values = {"augment": "off", **{k: v for k, v in stored.items() if k in DEFAULTS}}
        values.update({f"{k}_opts": opts[k] for k in PLUGIN_KEYS})
        values["data_fingerprint"] = stored.get("data_fingerprint")
        values["versions"] = stored.get("versions")
        return values


#: Settings of a search and their defaults (the ``[run]`` table of a config file).
DEFAULTS: dict[str, Any] = {
    name: getattr(SearchConfig, name)
    for name in (
        "space",
        "relax",
        "strategy",
        "data",
        "epochs",
        "batch_size",
        "seed",
        "device",
        "deterministic",
        "augment",
        "stream",
        "workers",
        "out",
        "storage",
        "study",
        "tensorboard",
        "figures",
        "compile",
        "threads",
        "budget",
        "budget_penalty",
    )
}


def check_config(cfg: Mapping[str, Any]) -> SearchConfig:
    """The :class:`SearchConfig` of ``cfg``, a ``config.json``-shaped mapping (settings by name
    and an ``opts`` table per plugin slot); raises OptionError as making one does."""
    opts = _check_stored_opts(cfg, PLUGIN_KEYS)
    values: dict[str, Any] = {k: v for k, v in cfg.items() if k in DEFAULTS}
    values.update({f"{k}_opts": opts[k] for k in PLUGIN_KEYS})
    return SearchConfig(**values)


# ---- training ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """The settings of a training run and what it trains: a genotype of a space (``genotype``,
    ``space``) or a ``baseline``, on ``data``; as a training run's ``config.json`` holds them.

    ``source`` is the search run or genotype file it came from and ``search`` what the
    training run keeps about that search. ``cutout`` None is half the image side while
    augmenting; ``channels`` and ``layers`` set the network's width and depth.

    Raises:
        OptionError: on making one, for a setting of the wrong type or value.
    """

    source: str | None = None
    baseline: str | None = None
    genotype: Mapping[str, Any] | None = None
    space: str | None = None
    data: str | None = None
    space_opts: Mapping[str, Any] = field(default_factory=dict)
    data_opts: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, Any] | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.025
    cutout: int | None = None
    drop_path: float = 0.0
    auxiliary: bool = False
    seed: int = 0
    channels: int | None = None
    layers: int | None = None
    augment: str | None = None
    stream: str = "auto"
    workers: int = 2
    device: str = "auto"
    threads: int | None = None
    data_fingerprint: Mapping[str, Any] | None = None

    #: what config.json says a training run is
    command: ClassVar[str] = "train"

    def __post_init__(self) -> None:
        from nasplug.engine.rng import check_threads

        check_counts({"epochs": self.epochs, "batch_size": self.batch_size})
        if self.cutout is not None and (not _is_int(self.cutout) or self.cutout < 0):
            raise OptionError(f"cutout must be an integer >= 0 (0: off), got {self.cutout!r}")
        drop = self.drop_path
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0.0 <= drop < 1.0:
            raise OptionError(f"drop_path must be in [0, 1), got {drop!r}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
            raise OptionError(f"lr must be a positive number, got {lr!r}")
        if lr <= 0:
            raise OptionError(f"lr must be a positive number, got {lr!r}")
        _check_seed(self.seed)
        check_data_settings(
            {"augment": self.augment, "stream": self.stream, "workers": self.workers}
        )
        check_threads(self.threads)
        _check_device(self.device)
        if self.baseline is not None:
            from nasplug.engine.baselines import BASELINES

            if self.baseline not in BASELINES:
                raise OptionError(
                    f"unknown baseline {self.baseline!r}; accepted: {', '.join(BASELINES)}"
                )
        for key in ("space", "data"):
            object.__setattr__(
                self, f"{key}_opts", _check_table(f"{key}_opts", getattr(self, f"{key}_opts"))
            )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    def opts(self, key: str) -> dict[str, Any]:
        """The options of ``space`` or ``data``."""
        return dict(getattr(self, f"{key}_opts"))

    def to_dict(self) -> dict[str, Any]:
        """What a training run's ``config.json`` holds."""
        out: dict[str, Any] = {
            "command": self.command,
            "source": self.source,
            "baseline": self.baseline,
            "genotype": None if self.genotype is None else dict(self.genotype),
            "space": self.space,
            "data": self.data,
            "opts": {"space": self.opts("space"), "data": self.opts("data")},
            "search": None if self.search is None else dict(self.search),
        }
        for key in _TRAIN_SETTINGS:
            out[key] = getattr(self, key)
        out["data_fingerprint"] = (
            None if self.data_fingerprint is None else dict(self.data_fingerprint)
        )
        return out

    @classmethod
    def from_stored(cls, stored: Any, path: str | Path, **overrides: Any) -> TrainConfig:
        """The config a training run directory ``path`` holds (``stored``, its
        ``config.json``), with ``overrides`` (None: keep the stored value).

        A run from before a setting existed gets the value it ran with: no augmentation,
        ``stream = "auto"``, two workers, no recorded thread count.

        Raises:
            RunError: ``path`` holds no training run.
        """
        from nasplug.core.errors import RunError

        if not isinstance(stored, dict) or stored.get("command") != "train":
            raise RunError(
                f"{path} is not a training run; resume searches with `nasplug run --resume {path}`"
            )
        opts = _check_stored_opts(stored, ("space", "data"))
        names = {f.name for f in dataclasses.fields(cls)} - {"space_opts", "data_opts"}
        values = {"augment": "off", **{k: v for k, v in stored.items() if k in names}}
        values.update(space_opts=opts["space"], data_opts=opts["data"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


#: The settings of a training run, in the order its config.json lists them.
_TRAIN_SETTINGS = (
    "epochs",
    "batch_size",
    "lr",
    "cutout",
    "drop_path",
    "auxiliary",
    "seed",
    "channels",
    "layers",
    "augment",
    "stream",
    "workers",
    "device",
    "threads",
)
