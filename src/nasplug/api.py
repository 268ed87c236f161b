"""The Python API: :func:`search`, :func:`train` and :func:`compare`.

The ``nasplug`` command line is a thin layer over these three functions: it turns flags and
TOML tables into their arguments and prints what they return. So a search started from a
notebook and one started from the shell run the same code and, for the same seed, give the
same result.

Example:
    >>> import nasplug
    >>> found = nasplug.search("cell", "sparsemax", epochs=1,
    ...                        space_opts={"channels": 4, "layers": 2})  # doctest: +SKIP
    >>> found.genotype, found.metrics["val_accuracy"]                  # doctest: +SKIP
    >>> trained = found.train(epochs=10)                               # doctest: +SKIP

Errors are exceptions whose message is the one line the command line prints: ``ValueError``
(an :class:`~nasplug.core.options.OptionError` for bad settings) for bad input,
:class:`~nasplug.core.registry.PluginError` for a plugin that cannot be found or loaded,
:class:`~nasplug.run.rundir.RunError` for a damaged or mismatched run directory, and
:class:`RunFailed` for a run that failed after it had kept a checkpoint (its cause is chained).
Nothing here calls ``sys.exit``.

Nothing in this module imports torch at import time: the command line imports it first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasplug.core.options import AUGMENT_MODES, STREAM_MODES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nasplug.core.interfaces import SearchSpace
    from nasplug.core.types import Data, Genotype, Task
    from nasplug.run.inputs import Normalisation
    from nasplug.run.rundir import RunDir

__all__ = [
    "AUGMENT",
    "DEFAULTS",
    "PLUGIN_KEYS",
    "STREAM",
    "RunFailed",
    "SearchRun",
    "TrainRun",
    "benchmark_metrics",
    "compare",
    "search",
    "train",
]

#: Settings of a search and their defaults (the ``[run]`` table of a config file).
DEFAULTS: dict[str, Any] = {
    "space": "cell",
    "relax": "softmax",
    "strategy": "darts",
    "data": "fashion-mnist-small",
    "epochs": 8,
    "batch_size": 64,
    "seed": 0,
    "device": "auto",
    "deterministic": False,
    "augment": None,  # the data's own default (Data.augment), else standard
    "stream": "auto",
    "workers": 2,
    "out": None,
    "storage": None,
    "study": None,
    "tensorboard": False,
    "compile": None,
    "threads": None,
    "budget": None,  # {resource: limit}, see nasplug.run.budget
    "budget_penalty": None,
}
#: config key -> plugin axis (the option tables of a config file and of config.json)
PLUGIN_KEYS = {"space": "space", "relax": "relaxation", "strategy": "strategy", "data": "dataset"}
#: Accepted ``augment`` and ``stream`` settings (see :mod:`nasplug.core.options`).
AUGMENT = AUGMENT_MODES
STREAM = STREAM_MODES


class RunFailed(Exception):
    """A run failed after it had kept something (a checkpoint, a result); the cause is chained
    (``__cause__``) and the run directory can be resumed."""


# ---- results -----------------------------------------------------------------------------------
@dataclass
class SearchRun:
    """What :func:`search` found.

    Attributes:
        genotype: the derived (or best) architecture.
        metrics: final metrics (``val_<metric>``; for a supernet also the continuous and the
            derived network's metric inside it, and the discretisation gap).
        history: one record per search epoch (or per candidate of a black-box search).
        candidates: per-candidate records, where the strategy or space has them.
        space: the search space instance; ``data``: the data searched on.
        supernet: the trained supernet (gradient-based strategies; None otherwise), called as
            ``supernet(x, weights)``.
        weights: the final mixing weights of every choice (evaluation weights), where a
            supernet was trained.
        config: the run's settings, as stored in ``config.json``.
        run_dir: the run directory, or None for a run kept in memory only.
        normalisation: what the run's inputs were normalised with (None where the data does
            not say); :meth:`prepare` applies it.
    """

    genotype: Genotype
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    space: SearchSpace
    data: Data
    config: dict[str, Any]
    supernet: nn.Module | None = None
    weights: dict[str, torch.Tensor] | None = None
    run_dir: Path | None = None
    normalisation: Normalisation | None = None

    @property
    def task(self) -> Task:
        return self.data.task

    def prepare(self, x: Any) -> torch.Tensor:
        """Raw inputs (an array or tensor of ``(N, *input_shape)``, or one example) normalised
        as the run's data was: what :meth:`build`'s network and the supernet take."""
        return _prepare_inputs(self.normalisation, x)

    def predict(self, x: Any) -> torch.Tensor:
        """The outputs (logits for classification) of the trained supernet, with the final
        mixing weights, for raw inputs ``x`` (see :meth:`prepare`); gradient strategies only."""
        import torch

        if self.supernet is None or self.weights is None:
            raise ValueError(
                f"the {self.config['strategy']} search trained no supernet; train the genotype "
                "(found.train()) and predict with the TrainRun"
            )
        device = next(self.supernet.parameters()).device
        self.supernet.eval()
        with torch.no_grad():
            weights = {k: w.to(device) for k, w in self.weights.items()}
            return self.supernet(self.prepare(x).to(device), weights).float().cpu()

    def build(self) -> nn.Module:
        """The discrete network of :attr:`genotype`, untrained."""
        return self.space.build(self.genotype, self.data.task)

    def describe(self) -> str:
        """The genotype in the space's own words."""
        return self.space.describe(self.genotype)

    def train(self, **kwargs: Any) -> TrainRun:
        """Train :attr:`genotype` from scratch on this search's data: :func:`train` ``(self, ...)``.

        ``augment``, ``stream`` and ``workers`` default to the search's own settings.
        """
        for key in ("augment", "stream", "workers"):
            kwargs.setdefault(key, self.config[key])
        return train(self, **kwargs)

    def __repr__(self) -> str:
        m = self.data.task.metric
        where = f", run_dir={str(self.run_dir)!r}" if self.run_dir else ""
        return (
            f"SearchRun({self.config['strategy']} / {self.config['relax']} on "
            f"{self.config['space']}, val_{m}={self.metrics.get(f'val_{m}', float('nan')):.4f}"
            f"{where})"
        )


@dataclass
class TrainRun:
    """What :func:`train` gives: the trained network, its test metrics and history.

    ``result`` is what ``train.json`` holds (``test_<metric>``, ``params``, ``seconds``, ...).
    """

    result: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    config: dict[str, Any]
    run_dir: Path | None = None
    normalisation: Normalisation | None = None

    @property
    def metric(self) -> float:
        """The test value of the task's headline metric."""
        return float(self.result[f"test_{self.result['metric']}"])

    def prepare(self, x: Any) -> torch.Tensor:
        """Raw inputs (an array or tensor of ``(N, *input_shape)``, or one example) normalised
        as the training data was: what :attr:`model` takes."""
        return _prepare_inputs(self.normalisation, x)

    def predict(self, x: Any) -> torch.Tensor:
        """The trained network's outputs (logits for classification) for raw inputs ``x``."""
        import torch

        device = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad():
            return self.model(self.prepare(x).to(device)).float().cpu()

    def __repr__(self) -> str:
        where = f", run_dir={str(self.run_dir)!r}" if self.run_dir else ""
        return (
            f"TrainRun({self.result['method']}, test_{self.result['metric']}={self.metric:.4f}, "
            f"params={self.result['params']}{where})"
        )


def _prepare_inputs(normalisation: Normalisation | None, x: Any) -> torch.Tensor:
    if normalisation is None:
        raise ValueError(
            "this run's data did not say how its inputs were normalised (a Data built by hand "
            "without mean and std); normalise new inputs as you did the data"
        )
    return normalisation(x)


# ---- search ------------------------------------------------------------------------------------
def search(
    space: Any = None,
    relax: Any = None,
    strategy: Any = None,
    data: Any = None,
    *,
    space_opts: Mapping[str, Any] | None = None,
    relax_opts: Mapping[str, Any] | None = None,
    strategy_opts: Mapping[str, Any] | None = None,
    data_opts: Mapping[str, Any] | None = None,
    task: Any = None,
    test: Any = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    deterministic: bool | None = None,
    augment: str | None = None,
    stream: str | None = None,
    workers: int | None = None,
    compile: str | bool | None = None,
    threads: int | None = None,
    out: str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    tensorboard: bool | None = None,
    budget: str | Sequence[str] | Mapping[str, Any] | None = None,
    budget_penalty: float | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
) -> SearchRun:
    """Run a search and return what it found.

    Args:
        space, relax, strategy: a registered name (``nasplug list``) or an instance of
            :class:`~nasplug.SearchSpace`, :class:`~nasplug.Relaxation`,
            :class:`~nasplug.Strategy`. Defaults: ``cell``, ``softmax``, ``darts``.
        data: a registered dataset name (default ``fashion-mnist-small``), a
            :class:`~nasplug.Dataset` plugin instance, a loaded :class:`~nasplug.Data`, an
            ``(x, y)`` pair of arrays or tensors (give ``task``), or a
            ``torch.utils.data.Dataset`` of ``(x, y)`` items (streamed when large).
        space_opts, relax_opts, strategy_opts, data_opts: options of a plugin given by name,
            as the CLI's ``--space-opt`` etc. (strings are converted by the constructor's
            annotations).
        task: for arrays and torch datasets: the task kind (``classification``,
            ``regression``, ``multilabel``) or a :class:`~nasplug.Task`.
        test: for arrays and torch datasets: the test split, in the same form as ``data``
            (default: a share of ``data`` held out).
        epochs, batch_size, seed, device, deterministic, compile: as the CLI's flags.
        augment: ``standard`` (random crop and flip on image data), ``no-flip`` or ``off``;
            None: the dataset's own default (``Data.augment``), else ``standard``.
        stream: ``auto`` (by size), ``on`` (a DataLoader with ``workers`` processes) or ``off``.
        threads: torch's CPU threads for the run (default: as many as torch uses now). The run
            records the count and a resume uses it again, since a search repeats bit for bit
            only at the thread count it started with; given with ``resume``, it overrides that.
        out: a run directory to create, for checkpoints, events and a report; None keeps the
            run in memory (no resume).
        storage, study: Optuna storage URL (or ``env:NAME``, ``file:PATH``) and study name of
            black-box strategies.
        tensorboard: also log scalars for TensorBoard into ``out/tensorboard``.
        budget: what the derived network may cost: ``"params=50k"``, a list of such texts
            (``["params=50k", "latency=4ms"]``) or a mapping (``{"flops": 3e8}``); resources
            ``params``, ``flops`` and ``latency`` (milliseconds at batch 1 on the run's device,
            from a table measured there once and cached). A supernet search with a relaxation
            that has the :class:`~nasplug.core.interfaces.Constrains` capability (``sparsemax``,
            ``gumbel-hard``) meets it inside its projection, so the derived network is the one
            it trained; other relaxations derive the best network within it; black-box
            strategies propose only networks within it. A budget no network meets is refused
            before anything is written, naming the least cost.
        budget_penalty: instead of meeting the budget by construction, add ``budget_penalty``
            times the weights' expected cost over what the budget leaves the candidates (summed
            over the budget's resources) to the architecture loss, as ProxylessNAS does; the
            derived network may then break the budget (``metrics["feasible"]`` says).
            Supernet strategies only.
        resume: a run directory to continue; its stored settings are used (``device`` and
            ``storage`` may be given again). A run started with plugin instances or in-memory
            data needs them passed again; data whose fingerprint differs from the one stored
            in ``config.json`` is refused. A finished run is left as it is: its stored results
            are returned (without ``supernet`` and ``weights``) and nothing is written.
        quiet: no progress bars or per-epoch lines.
    """
    from nasplug.core import registry
    from nasplug.core.options import OptionError
    from nasplug.engine import ddp
    from nasplug.engine.rng import current_threads, fixed_threads
    from nasplug.run.rundir import COSTS, RunDir

    given = {"space": space, "relax": relax, "strategy": strategy, "data": data}
    opts_given = {
        "space": space_opts,
        "relax": relax_opts,
        "strategy": strategy_opts,
        "data": data_opts,
    }
    instances = {k: v for k, v in given.items() if v is not None and not isinstance(v, str)}
    for key, opts in opts_given.items():
        if opts and key in instances:
            raise OptionError(
                f"{key}_opts apply to a {key} given by name; an instance already has its options"
            )
    writer = ddp.setup() == 0
    run: RunDir | None = None
    try:
        if resume is not None:
            run = RunDir.open(resume, writer=writer)
            if run.read_json("metrics.json") is not None:
                return _finished_search(run, instances, device, storage, task=task, test=test)
            run.lock()
            cfg = _resumed_config(run, device=device, storage=storage, threads=threads)
            _check_resumed_instances(cfg, instances)
        else:
            cfg = dict(DEFAULTS)
            for key, value in given.items():
                if isinstance(value, str):
                    cfg[key] = value
                elif value is not None:
                    cfg[key] = registry.name_of(value)
            settings = {
                "epochs": epochs,
                "batch_size": batch_size,
                "seed": seed,
                "device": device,
                "deterministic": deterministic,
                "augment": augment,
                "stream": stream,
                "workers": workers,
                "compile": compile,
                "threads": threads,
                "out": None if out is None else str(out),
                "storage": storage,
                "study": study,
                "tensorboard": tensorboard,
                "budget": budget,
                "budget_penalty": budget_penalty,
            }
            cfg.update({k: v for k, v in settings.items() if v is not None})
            cfg["opts"] = {k: dict(v or {}) for k, v in opts_given.items()}
            check_config(cfg)
            cfg["threads"] = cfg["threads"] or current_threads()
            if cfg.get("tensorboard") and cfg["out"] is None:
                raise OptionError("tensorboard logs go into the run directory: give out=DIR")
        resolved_storage, plugins, loaded, costs = _prepare(
            cfg,
            instances,
            task=task,
            test=test,
            writer=writer,
            resume=resume is not None,
            stored_costs=run.read_json(COSTS) if run is not None else None,
        )
        if run is not None:
            run.log("resumed", device=cfg["device"])
        elif cfg["out"] is not None:
            cfg["versions"] = plugin_versions(cfg, instances)
            run = RunDir.create(cfg["out"], cfg, writer=writer)
        quiet = quiet or not writer

        def work() -> SearchRun:
            return _execute(cfg, run, plugins, loaded, costs, quiet=quiet, storage=resolved_storage)

        with fixed_threads(cfg["threads"]):
            if run is None:
                return work()
            return noting_outcome(work, run, "run", created=resume is None)
    finally:
        if run is not None:
            run.close()


def _finished_search(
    run: RunDir,
    instances: Mapping[str, Any],
    device: str | None,
    storage: str | None,
    *,
    task: Any,
    test: Any,
) -> SearchRun:
    """A finished run given to resume: its stored results; nothing is run, locked or written
    (no supernet or weights: they are not kept)."""
    from nasplug.core.types import Genotype
    from nasplug.run import inputs
    from nasplug.run.rundir import RunError

    cfg = _resumed_config(run, device=device, storage=storage)
    _check_resumed_instances(cfg, instances)
    genotype = run.read_json("genotype.json")
    if genotype is None:
        raise RunError(f"{run.path} has metrics.json but no genotype.json; it is damaged")
    space = build_plugins(cfg, instances, keys=("space",))["space"]
    given = instances.get("data")
    check_data_given(cfg, given, "the run")
    data = load_data(cfg["data"], cfg["opts"]["data"], given, task=task, test=test)
    settle_data(cfg, data, given, test, resume=True, label="the run")
    try:
        normalisation: Normalisation | None = inputs.load(run.path)
    except ValueError:  # a run from before inputs.json was kept
        normalisation = None
    if run.writer:
        print(finished_line(run.path, "run"), file=sys.stderr)
    return SearchRun(
        genotype=Genotype.from_dict(genotype),
        metrics=run.read_json("metrics.json"),
        history=[
            {k: v for k, v in ev.items() if k not in ("event", "time")}
            for ev in run.events("search_epoch")
        ],
        candidates=list(run.read_json("candidates.json", [])),
        space=space,
        data=data,
        config=cfg,
        run_dir=run.path,
        normalisation=normalisation,
    )


def finished_line(path: Path, command: str) -> str:
    """What a resume of a finished run says."""
    return (
        f"nasplug: {path} is finished; nothing was run or changed (its results follow; "
        f"`nasplug show {path}` prints them, and a new `nasplug {command} --out` starts again)"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(cfg: dict[str, Any]) -> None:
    """Raise OptionError unless every setting of ``cfg`` has an accepted type and value.

    Also checks that the device exists here, so that nothing is written for a run that
    cannot start.
    """
    from nasplug.core.options import OptionError
    from nasplug.engine.rng import check_threads
    from nasplug.engine.trainer import pick_device
    from nasplug.run.budget import check_budget, check_penalty

    for key in PLUGIN_KEYS:
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise OptionError(f"{key} must be a plugin name (text), got {cfg.get(key)!r}")
    check_counts(cfg)
    if not _is_int(cfg.get("seed")) or not 0 <= cfg["seed"] < 2**63:
        raise OptionError(f"seed must be an integer from 0 to 2**63-1, got {cfg.get('seed')!r}")
    for key in ("deterministic", "tensorboard"):
        if not isinstance(cfg.get(key), bool):
            raise OptionError(f"{key} must be true or false, got {cfg.get(key)!r}")
    check_data_settings(cfg)
    check_threads(cfg.get("threads"))
    cfg["budget"] = check_budget(cfg.get("budget")) or None
    cfg["budget_penalty"] = check_penalty(cfg.get("budget_penalty"))
    if cfg["budget_penalty"] is not None and not cfg["budget"]:
        raise OptionError("budget_penalty needs a budget (--budget RESOURCE=VALUE)")
    for key in ("out", "storage", "study"):
        if cfg.get(key) is not None and (not isinstance(cfg[key], str) or not cfg[key]):
            raise OptionError(f"{key} must be text, got {cfg[key]!r}")
    if not isinstance(cfg.get("device"), str):
        raise OptionError(
            f"device must be text (auto, cpu, cuda, cuda:N or mps), got {cfg.get('device')!r}"
        )
    if not isinstance(cfg.get("opts"), dict) or not all(
        isinstance(cfg["opts"].get(k, {}), dict) for k in PLUGIN_KEYS
    ):
        raise OptionError(f"opts must map {', '.join(PLUGIN_KEYS)} to tables of options")
    try:
        pick_device(cfg["device"])
    except (ValueError, RuntimeError) as e:
        raise OptionError(one_line(e)) from e
    compile_backend(cfg.get("compile"))


#: The largest accepted ``epochs`` and ``batch_size`` (2**31-1: the largest 32-bit index;
#: a batch larger than the data is all of it, and the run says so).
LIMITS = {"epochs": 100_000, "batch_size": 2**31 - 1}


def check_counts(cfg: Mapping[str, Any]) -> None:
    """``epochs`` and ``batch_size``: positive integers up to :data:`LIMITS`."""
    from nasplug.core.options import OptionError

    for key, limit in LIMITS.items():
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise OptionError(f"{key} must be a positive integer, got {value!r}")
        if value > limit:
            raise OptionError(f"{key} {value} is too large; accepted: 1 to {limit:,}")


def warn_batch_size(batch_size: int, rows: int, what: str) -> None:
    """Say that a batch larger than the data it draws from is all of the data."""
    if batch_size > rows:
        print(
            f"nasplug: warning: batch size {batch_size} is larger than the {rows} rows of {what}; "
            f"each step uses all {rows} rows (as batch size {rows} would)",
            file=sys.stderr,
        )


def check_data_settings(cfg: Mapping[str, Any]) -> None:
    """``augment``, ``stream`` and ``workers``: how batches are made, in search and training."""
    from nasplug.core.options import OptionError

    if cfg.get("augment") is not None and cfg["augment"] not in AUGMENT:
        raise OptionError(
            f"augment must be one of {', '.join(AUGMENT)}, got {cfg.get('augment')!r}"
        )
    if cfg.get("stream") not in STREAM:
        raise OptionError(f"stream must be one of {', '.join(STREAM)}, got {cfg.get('stream')!r}")
    if not _is_int(cfg.get("workers")) or cfg["workers"] < 0:
        raise OptionError(
            f"workers must be an integer >= 0 (0: load in the main process), "
            f"got {cfg.get('workers')!r}"
        )


def compile_backend(value: Any) -> str | None:
    """The ``compile`` setting as a backend name: true means inductor, false or none eager."""
    from nasplug.core.options import OptionError

    if value is None or value is False or value == "":
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str):
        return value
    raise OptionError(f"compile must be true, false or a backend name, got {value!r}")


def _check_resumed_instances(cfg: Mapping[str, Any], instances: Mapping[str, Any]) -> None:
    """A resumed run takes instances only of the plugins it was started with."""
    from nasplug.core import registry
    from nasplug.core.options import OptionError

    for key, obj in instances.items():
        if key == "data":
            continue  # in-memory data has no name to compare
        if registry.name_of(obj) != cfg[key]:
            raise OptionError(
                f"{key} given to resume is a {type(obj).__name__}, but the run was started with "
                f"{cfg[key]!r}"
            )


def _resumed_config(
    run: Any, *, device: str | None, storage: str | None, threads: int | None = None
) -> dict[str, Any]:
    """The stored config of ``run``, checked, with the settings a resume may change."""
    from nasplug.core.options import OptionError
    from nasplug.engine.rng import resumed_threads
    from nasplug.run.credentials import mask

    cfg = run.config()
    if not isinstance(cfg, dict) or cfg.get("command") == "train":
        raise OptionError(
            f"{run.path} is not a search run; continue training runs with "
            f"`nasplug train --resume {run.path}`"
        )
    for key in ("space", "relax", "strategy", "data", "epochs", "batch_size", "seed", "device"):
        if key not in cfg:
            raise OptionError(
                f"{run.path}/config.json lacks {key!r}; it was not written by `nasplug run`"
            )
    if "opts" not in cfg:
        raise OptionError(
            f"{run.path}/config.json lacks 'opts'; it was not written by `nasplug run`"
        )
    # A run from before augmentation existed searched without it.
    cfg = {**DEFAULTS, "augment": "off", **cfg}
    if device is not None:
        cfg["device"] = device
    if storage is not None:
        if cfg.get("storage") is None or mask(storage) != mask(cfg["storage"]):
            raise OptionError(
                f"--storage with --resume must give the run's own storage again "
                f"({mask(str(cfg.get('storage')))}), got {mask(storage)}"
            )
        cfg["storage"] = storage
    cfg["threads"] = resumed_threads(cfg.get("threads"), threads)
    check_config(cfg)
    return cfg


def build_plugins(
    cfg: Mapping[str, Any],
    instances: Mapping[str, Any] | None = None,
    keys: Sequence[str] = ("space", "relax", "strategy"),
) -> dict[str, Any]:
    """The plugins of a config: the instances given, the others built from their registered
    names and options (only the ones named are imported). Data comes from :func:`load_data`."""
    from nasplug.core import registry
    from nasplug.core.options import instantiate

    out = {}
    for key in keys:
        axis = PLUGIN_KEYS[key]
        if instances and key in instances:
            out[key] = instances[key]
            continue
        name = cfg[key]
        cls = registry.load(axis, name)
        out[key] = instantiate(cls, cfg["opts"][key], f"{axis} {name!r}")
    return out


def plugin_versions(
    cfg: Mapping[str, Any], instances: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``axis:name -> distribution version`` of every registered plugin of the run."""
    from nasplug.core import registry
    from nasplug.core.registry import PluginError

    out = {}
    for key, axis in PLUGIN_KEYS.items():
        try:
            i = registry.info(axis, cfg[key])
        except PluginError:  # an unregistered instance or in-memory data
            obj = (instances or {}).get(key)
            out[f"{axis}:{cfg[key]}"] = type(obj).__module__ if obj is not None else "?"
            continue
        out[f"{axis}:{cfg[key]}"] = f"{i.dist} {i.version}"
    return out


def load_data(
    name: str,
    opts: Mapping[str, Any],
    given: Any = None,
    *,
    task: Any = None,
    test: Any = None,
) -> Data:
    """The data of a run: ``given`` (see :func:`search`'s ``data``) or the dataset plugin
    registered as ``name`` with options ``opts``."""
    from nasplug.core import registry
    from nasplug.core.interfaces import Dataset
    from nasplug.core.options import OptionError, instantiate
    from nasplug.core.types import Data

    if (task is not None or test is not None) and (
        given is None or isinstance(given, (Data, Dataset))
    ):
        raise OptionError("task= and test= go with arrays or a torch Dataset given as data")
    if given is None:
        cls = registry.load("dataset", name)
        return instantiate(cls, opts, f"dataset {name!r}").load()
    if isinstance(given, Data):
        return given
    if isinstance(given, Dataset):
        return given.load()
    from nasplug.engine.userdata import to_data

    return to_data(given, task=task, test=test, name=name)


def check_data_given(cfg: Mapping[str, Any], given: Any, label: str) -> None:
    """Refuse to go on without the in-memory data a run was made from (which no name loads)."""
    from nasplug.core.options import OptionError

    stored = cfg.get("data_fingerprint") or {}
    name = str(cfg.get("data"))
    legacy = name == "arrays" or name.startswith("torch-dataset:")
    if given is None and (stored.get("in_memory") or (legacy and not stored)):
        raise OptionError(
            f"{label} was made from in-memory data ({name}), which is not stored with it; "
            "pass the same data again (data=... from Python)"
        )


def settle_data(
    cfg: dict[str, Any], data: Data, given: Any, test: Any, *, resume: bool, label: str
) -> None:
    """Fingerprint the loaded ``data`` into ``cfg`` (checked against the stored one on resume),
    name in-memory data by it, and take the data's augmentation when none was given."""
    from nasplug.core.interfaces import Dataset
    from nasplug.core.options import OptionError
    from nasplug.engine.userdata import check_same_data, run_fingerprint

    handed = None if isinstance(given, Dataset) else given
    found = run_fingerprint(data, handed, test, in_memory=given is not None)
    stored = cfg.get("data_fingerprint")
    if resume:
        if stored:
            try:
                check_same_data(label, stored, found)
            except ValueError as e:
                raise OptionError(str(e)) from None
    else:
        if cfg["data"] in ("arrays", "data") or cfg["data"].startswith("torch-dataset:"):
            cfg["data"] = f"{cfg['data']}-{found['hash'][:8]}"
        cfg["data_fingerprint"] = found
    if data.augment is not None and data.augment not in AUGMENT:
        raise OptionError(
            f"dataset {cfg['data']!r} declares augment={data.augment!r}; accepted: "
            f"{', '.join(AUGMENT)} or None"
        )
    if cfg.get("augment") is None:
        cfg["augment"] = data.augment or "standard"


def _data_name(given: Any) -> str | None:
    """The config's name for data given in memory: a loaded ``Data``'s own name; ``arrays``,
    ``torch-dataset:<class>`` or ``data`` (a nameless ``Data``), to which :func:`settle_data`
    adds the fingerprint. None for a dataset plugin or a name."""
    import torch.utils.data

    from nasplug.core.interfaces import Dataset
    from nasplug.core.types import Data

    if given is None or isinstance(given, (str, Dataset)):
        return None
    if isinstance(given, Data):
        return given.name or "data"
    if isinstance(given, torch.utils.data.Dataset):
        return f"torch-dataset:{type(given).__name__}"
    return "arrays"


def _check_constraints(
    space: Any, relaxation: Any, cfg: Mapping[str, Any], task: Any, stored: Any
) -> dict[str, Any]:
    """The relaxation's constraints on the space (a cap on parameter-free ops) and the run's
    budget can be met; returns the budget's costs (``{resource: Costs}``, empty without one),
    read from the run's ``costs.json`` when ``stored`` holds it (a resume), else made here."""
    from nasplug.core.interfaces import Constrains
    from nasplug.core.options import OptionError
    from nasplug.core.types import Costs
    from nasplug.engine.trainer import pick_device
    from nasplug.run.budget import budget_constraints, budget_costs, cost_range, format_cost
    from nasplug.searchlib.polytope import constraint_layout, group_layout

    limits = cfg.get("budget") or {}
    costs: dict[str, Any] = {}
    if limits:
        if isinstance(stored, dict) and set(limits) <= set(stored):
            costs = {r: Costs.from_dict(stored[r]) for r in limits}
        else:
            try:
                costs = budget_costs(space, task, list(limits), device=pick_device(cfg["device"]))
            except ValueError as e:
                raise OptionError(f"budget on space {cfg['space']!r}: {one_line(e)}") from e
        for resource, limit in limits.items():
            least, largest = cost_range(space, costs[resource])
            if least > limit:
                raise OptionError(
                    f"budget {resource}={format_cost(resource, limit)} cannot be met on space "
                    f"{cfg['space']!r}: the smallest network it can derive costs "
                    f"{format_cost(resource, least)} (the largest {format_cost(resource, largest)})"
                )
    # Checked together: the relaxation's cap and the budget's resources can each be met and
    # still not all at once.
    constraints = relaxation.constraints(space) if isinstance(relaxation, Constrains) else ()
    constraints += budget_constraints(space, costs, limits)
    if constraints:
        choices = space.choices()
        try:
            constraint_layout(choices, group_layout(choices, space.groups()), constraints)
        except ValueError as e:
            raise OptionError(f"relaxation {cfg['relax']!r} on space {cfg['space']!r}: {e}") from e
    return costs


def _prepare(
    cfg: dict[str, Any],
    instances: Mapping[str, Any],
    *,
    task: Any,
    test: Any,
    writer: bool,
    resume: bool,
    stored_costs: Any = None,
) -> tuple[str | None, dict[str, Any], Any, dict[str, Any]]:
    """Every check that can fail before anything is written: the output path, the storage,
    the device and compiler, the plugins, the data, whether the space takes the data, and
    whether its constraints and budget can be met (whose costs are returned last)."""
    from nasplug.engine import ddp
    from nasplug.run.credentials import has_secret, resolve_storage
    from nasplug.run.rundir import check_new_run_path

    ddp.check_batch_size(cfg["batch_size"])
    if writer and not resume and cfg["out"]:
        check_new_run_path(cfg["out"])
    storage = resolve_storage(cfg.get("storage"))
    backend = compile_backend(cfg.get("compile"))
    if backend is not None:
        from nasplug.engine.compiling import check_compile
        from nasplug.engine.trainer import pick_device

        check_compile(backend, pick_device(cfg["device"]))
    if cfg.get("tensorboard"):
        from nasplug.report import summary as report

        report.check_tensorboard()
    given_data = instances.get("data")
    if resume:
        check_data_given(cfg, given_data, "the run")
    else:
        cfg["data"] = _data_name(given_data) or cfg["data"]
    plugins = build_plugins(cfg, instances)
    _check_table(plugins, cfg)
    data = load_data(cfg["data"], cfg["opts"]["data"], given_data, task=task, test=test)
    settle_data(cfg, data, given_data, test, resume=resume, label="the run")
    _check_space_takes(plugins["space"], data, cfg)
    costs = _check_constraints(plugins["space"], plugins["relax"], cfg, data.task, stored_costs)
    if writer and not resume and cfg.get("storage") and has_secret(cfg["storage"]):
        print(
            "nasplug: warning: the storage password is not stored (config.json shows ***); "
            "to resume, give --storage again, or pass the URL as env:NAME or file:PATH",
            file=sys.stderr,
        )
    return storage, plugins, data, costs


def _check_table(plugins: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
    """A strategy that scores by a benchmark table (``method=table``) needs a space with one."""
    from nasplug.core.interfaces import SearchesTable
    from nasplug.searchlib.candidates import benchmark_of

    strategy = plugins["strategy"]
    if isinstance(strategy, SearchesTable) and strategy.method == "table":
        benchmark_of(plugins["space"], cfg["strategy"])


def _check_space_takes(space: Any, data: Any, cfg: Mapping[str, Any]) -> None:
    """Build the supernet once on the data's task, on the meta device where the space allows
    (nothing is allocated): a space that cannot take this data, or whose supernet cannot fit
    in the device's memory, fails here, before a run directory exists."""
    from nasplug.core.options import OptionError
    from nasplug.engine.memory import check_fits, on_meta
    from nasplug.engine.trainer import pick_device

    opts = cfg["opts"]["space"]
    with_opts = f" with {', '.join(f'{k}={v}' for k, v in opts.items())}" if opts else ""
    try:
        space.choices()
        net = on_meta(lambda: space.supernet(data.task))
        if net is None:
            space.supernet(data.task)
    except Exception as e:  # noqa: BLE001 - a plugin's own error, whatever its type
        raise OptionError(
            f"space {cfg['space']!r}{with_opts} cannot take the data of {cfg['data']!r} "
            f"({data.task.kind}, input shape {tuple(data.task.input_shape)}): "
            f"{type(e).__name__}: {one_line(e)}"
        ) from e
    if net is not None:
        check_fits(
            net,
            pick_device(cfg["device"]),
            f"the supernet of space {cfg['space']!r}{with_opts}",
            "smaller space options (channels, layers) or another --device",
        )


def noting_outcome(work: Callable[[], Any], run: Any, command: str, *, created: bool) -> Any:
    """``work()``; a failure says what became of ``run`` (see :func:`note_outcome`) and, where
    the run had kept something, becomes a :class:`RunFailed`."""
    try:
        return work()
    except Exception as e:
        if note_outcome(e, run, command, created=created):
            raise  # nothing ran that could be kept: an input error stays an input error
        raise RunFailed(str(e)) from e
    except BaseException as e:
        note_outcome(e, run, command, created=created)
        raise


def note_outcome(e: BaseException, run: Any, command: str, *, created: bool) -> bool:
    """Say on ``e`` what became of the run directory: removed when it held nothing to resume
    (so that it does not block the next try), otherwise how to resume it. Returns whether it
    was removed."""
    if created and run.abandon():
        e.add_note(f"run directory {run.path} removed: it held nothing to resume")
        return True
    if isinstance(e, (KeyboardInterrupt, OSError)):
        e.add_note(f"resume with `nasplug {command} --resume {run.path}`")
    return False


def _execute(
    cfg: dict[str, Any],
    run: RunDir | None,
    plugins: dict[str, Any],
    data: Data,
    costs: Mapping[str, Any],
    *,
    quiet: bool = False,
    storage: str | None = None,
) -> SearchRun:
    """Build the trainer, run the strategy and write the results into ``run`` (if any).

    ``storage`` is the storage URL itself (``cfg`` holds it masked or as ``env:``/``file:``);
    ``costs`` are the budget's (see :func:`_check_constraints`).
    """
    from nasplug.core.interfaces import SearchContext
    from nasplug.engine.trainer import Trainer
    from nasplug.run.budget import budget_constraints
    from nasplug.run.credentials import resolve_storage
    from nasplug.run.inputs import Normalisation
    from nasplug.run.rundir import COSTS, INPUTS

    sink = None
    if cfg.get("tensorboard") and run is not None and run.writer:
        from nasplug.report import summary as report

        sink = report.tensorboard_sink(run.path)
    trainer = Trainer(
        data,
        run=run,
        device=cfg["device"],
        seed=cfg["seed"],
        deterministic=bool(cfg["deterministic"]),
        quiet=quiet,
        sink=sink,
        compile=compile_backend(cfg.get("compile")),
        augment=cfg["augment"],
        stream=cfg["stream"],
        workers=cfg["workers"],
    )
    options = {
        "storage": storage or resolve_storage(cfg.get("storage")),
        "study": cfg.get("study"),
        "run_dir": str(run.path) if run is not None else None,
        "tensorboard": cfg.get("tensorboard"),
    }
    limits = cfg.get("budget") or {}
    if run is not None and run.writer and limits and run.read_json(COSTS) is None:
        run.write_json(COSTS, {r: c.to_dict() for r, c in costs.items()})
    ctx = SearchContext(
        space=plugins["space"],
        relaxation=plugins["relax"],
        trainer=trainer,
        data=data,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        seed=cfg["seed"],
        options=options,
        feasible=_feasible(plugins["space"], costs, limits) if limits else None,
        constraints=budget_constraints(plugins["space"], costs, limits),
        budget_penalty=cfg.get("budget_penalty"),
    )
    where = f"; run directory {run.path}" if run is not None else ""
    trainer.say(
        f"nasplug: {cfg['strategy']} search of {cfg['space']} with {cfg['relax']} on "
        f"{cfg['data']} ({data.task.kind}, {trainer.size('train')} train / "
        f"{trainer.size('test')} test) on {trainer.device}{where}"
    )
    if data.note:
        trainer.say(f"nasplug: {data.note}")
    if run is None or run.writer:
        warn_batch_size(cfg["batch_size"], trainer.size("weight"), "each half of the search data")
    trainer.log("start", config=cfg, device=str(trainer.device))
    normalisation = Normalisation.of(data.task.input_shape, *trainer.input_stats)
    t0 = time.time()
    result = plugins["strategy"].search(ctx)
    metrics = {
        **result.metrics,
        "wall_seconds": time.time() - t0,
        "metric": data.task.metric,
        "higher_is_better": data.task.higher_is_better,
    }
    _check_ranks_agree(result, metrics)
    metrics.update(cost_metrics(plugins["space"], data.task, result.genotype, costs, cfg))
    metrics.update(benchmark_metrics(plugins["space"], result.genotype, trainer.say))
    if run is not None:
        run.write_json("genotype.json", result.genotype.to_dict())
        run.write_json("metrics.json", metrics)
        if normalisation is not None:
            run.write_json(INPUTS, normalisation.to_dict())
        if result.candidates:
            run.write_json("candidates.json", list(result.candidates))
        run.log("end", metrics=metrics, genotype=result.genotype.to_dict())
        if run.writer:
            _write_report(run)
    return SearchRun(
        genotype=result.genotype,
        metrics=metrics,
        history=[dict(r) for r in result.history],
        candidates=[dict(c) for c in result.candidates],
        space=plugins["space"],
        data=data,
        config=cfg,
        supernet=result.supernet,
        weights=dict(result.weights) if result.weights is not None else None,
        run_dir=run.path if run is not None else None,
        normalisation=normalisation,
    )


def _feasible(
    space: SearchSpace, costs: Mapping[str, Any], limits: Mapping[str, float]
) -> Callable[[Genotype], bool]:
    """Whether a genotype's network meets every limit, by the costs' tables."""
    from nasplug.run.budget import genotype_costs, within

    def feasible(genotype: Genotype) -> bool:
        spent = genotype_costs(space, costs, genotype)
        return all(within(spent[r], limit) for r, limit in limits.items())

    return feasible


def cost_metrics(
    space: SearchSpace,
    task: Task,
    genotype: Genotype,
    costs: Mapping[str, Any],
    cfg: Mapping[str, Any],
) -> dict[str, Any]:
    """The derived network's ``params`` and ``flops`` (counted on the built network), its
    ``latency_ms`` and ``latency_source`` where the budget timed a table, and with a budget:
    ``budget``, ``budget_cost`` and ``feasible``.

    Raises:
        RuntimeError: a search that meets its budget by construction (no ``budget_penalty``)
            derived a network outside it: the search, not the input, is wrong.
    """
    from nasplug.engine.memory import count_params
    from nasplug.run.budget import format_cost, genotype_costs, within
    from nasplug.searchlib.costs import module_cost

    net = space.build(genotype, task)
    out: dict[str, Any] = {
        "params": float(count_params(net)),
        "flops": module_cost(net, (1, *task.input_shape), "flops"),
    }
    limits = cfg.get("budget") or {}
    if not limits:
        return out
    spent = genotype_costs(space, costs, genotype)
    spent.update({r: out[r] for r in ("params", "flops") if r in spent})  # exact counts
    if "latency" in spent:
        out["latency_ms"] = spent["latency"]
        out["latency_source"] = dict(costs["latency"].source)
    feasible = all(within(spent[r], limit) for r, limit in limits.items())
    if not feasible and cfg.get("budget_penalty") is None:
        over = ", ".join(
            f"{r} {format_cost(r, spent[r])} > {format_cost(r, limit)}"
            for r, limit in limits.items()
            if not within(spent[r], limit)
        )
        raise RuntimeError(f"the search derived a network outside its budget: {over}")
    out.update(budget=dict(limits), budget_cost={r: spent[r] for r in limits}, feasible=feasible)
    return out


def benchmark_metrics(
    space: SearchSpace, genotype: Genotype, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The table's value of ``genotype`` when ``space`` offers a benchmark table, else nothing.

    Returns ``{table.metric: value, "table_metric": table.metric, "table_label": table.label}``
    (the keys :data:`nasplug.run.rundir.TABLE_METRIC` and :data:`~nasplug.run.rundir.TABLE_LABEL`).
    A table that cannot be had (an optional package missing, a damaged file) costs the run
    nothing but this value: ``say`` gets one line saying why, and the result is empty.
    """
    from nasplug.core.interfaces import OffersBenchmark
    from nasplug.run.rundir import TABLE_LABEL, TABLE_METRIC

    if not isinstance(space, OffersBenchmark):
        return {}
    try:
        table = space.benchmark()
        value = float(table.query(genotype))
    except ValueError as e:  # OptionError included: how to install the table
        if say is not None:
            say(f"nasplug: note: no benchmark table value for this run: {one_line(e)}")
        return {}
    return {table.metric: value, TABLE_METRIC: table.metric, TABLE_LABEL: table.label}


def _check_ranks_agree(result: Any, metrics: Mapping[str, Any]) -> None:
    """Under ``torchrun``: print one line per rank and check that all ranks found the same.

    The genotype must agree; the search history (mixing weights and metrics of every epoch,
    timings left out) should, and a difference is reported.
    """
    from nasplug.engine import ddp

    if not ddp.is_distributed():
        return
    timeless = [{k: v for k, v in rec.items() if "seconds" not in k} for rec in result.history]
    mine = (
        ddp.fingerprint(result.genotype.to_dict()),
        ddp.fingerprint([timeless, {k: v for k, v in metrics.items() if "seconds" not in k}]),
    )
    # One write per line: the ranks share the terminal.
    sys.stderr.write(
        f"nasplug: rank {ddp.rank()}/{ddp.world_size()}: genotype {mine[0]}, search {mine[1]}\n"
    )
    sys.stderr.flush()
    everyone = ddp.gather_object(mine)
    if len({g for g, _ in everyone}) > 1:
        raise RuntimeError(
            f"the {len(everyone)} processes derived different genotypes "
            f"({', '.join(g for g, _ in everyone)}); results not written"
        )
    if len({h for _, h in everyone}) > 1 and ddp.rank() == 0:
        print(
            "nasplug: warning: the processes agree on the genotype but their search histories "
            "differ (non-deterministic kernels?)",
            file=sys.stderr,
        )


def _write_report(run: Any) -> None:
    """Pictures and report.md; a failure here never loses the search results."""
    from nasplug.report import summary as report

    try:
        report.write_report(run.path)
    except Exception as e:  # noqa: BLE001 - a report is a convenience on top of the results
        print(f"nasplug: warning: report not written: {one_line(e)}", file=sys.stderr)


def one_line(e: BaseException) -> str:
    """``e``'s message on one line (at most 1,000 characters), or its type when it has none."""
    # A torch error may carry its C++ backtrace after this marker: nothing for the user.
    text = " ".join(str(e).split("Exception raised from ")[0].split()) or type(e).__name__
    return text if len(text) <= 1000 else text[:1000] + " ..."


# ---- train -------------------------------------------------------------------------------------
def train(
    source: Any = None,
    *,
    baseline: str | None = None,
    data: Any = None,
    data_opts: Mapping[str, Any] | None = None,
    space: Any = None,
    space_opts: Mapping[str, Any] | None = None,
    task: Any = None,
    test: Any = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.025,
    cutout: int | None = None,
    drop_path: float = 0.0,
    auxiliary: bool = False,
    channels: int | None = None,
    layers: int | None = None,
    seed: int = 0,
    device: str | None = None,
    augment: str | None = None,
    stream: str = "auto",
    workers: int = 2,
    threads: int | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
) -> TrainRun:
    """Train a searched network (or a baseline) from scratch and report its test metric.

    Args:
        source: what to train: a :class:`SearchRun`, a search run directory, a genotype file
            (JSON or a DARTS ``Genotype(...)`` string) or a :class:`~nasplug.Genotype`; None with
            ``baseline``.
        baseline: train a hand-designed network instead (``resnet``), on ``source``'s data.
        data, data_opts, task, test: the data, as in :func:`search` (default: the search's).
        space, space_opts: the space of a genotype (default: the genotype's own); a name or
            an instance.
        epochs, batch_size, lr, drop_path, auxiliary, seed, device: as ``nasplug train``.
        cutout: cutout square in pixels; None: half the image side while ``augment`` is on,
            0: off.
        channels, layers: width and depth (space options ``channels``, ``layers``; a
            baseline's width and blocks per stage).
        augment, stream, workers, threads: as in :func:`search`.
        out: a training run directory to create (``train.json``, checkpoints); None: in memory.
        resume: a training run directory to continue.
    """
    from nasplug.run import training

    return training.run_training(
        source,
        resume=resume,
        out=out,
        quiet=quiet,
        settings={
            "baseline": baseline,
            "data": data,
            "data_opts": data_opts,
            "space": space,
            "space_opts": space_opts,
            "task": task,
            "test": test,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "cutout": cutout,
            "drop_path": drop_path,
            "auxiliary": auxiliary,
            "channels": channels,
            "layers": layers,
            "seed": seed,
            "device": device,
            "augment": augment,
            "stream": stream,
            "workers": workers,
            "threads": threads,
        },
    )


# ---- compare -----------------------------------------------------------------------------------
def compare(runs: Sequence[Any], *, mean: bool = False, pareto: str | None = None) -> str:
    """A Markdown table of search and training runs on one dataset.

    ``runs`` are run directories, or :class:`SearchRun` / :class:`TrainRun` results that have
    one. With ``mean``, runs of the same method (e.g. seeds) share a row with mean ± sd. With
    ``pareto`` (``params``, ``flops`` or ``latency``), as ``nasplug compare --pareto``: the
    resource's column, the runs on the Pareto front of accuracy against it marked, and a line
    naming the front (:func:`nasplug.report.comparison.pareto_of` gives the front and its plot).
    """
    from nasplug.core.options import OptionError
    from nasplug.report.comparison import compare_table

    paths: list[str | Path] = []
    for r in runs:
        if isinstance(r, (SearchRun, TrainRun)):
            if r.run_dir is None:
                raise OptionError("compare reads run directories: run with out=DIR to keep one")
            paths.append(r.run_dir)
        else:
            paths.append(r)
    if not paths:
        raise OptionError("compare needs at least one run")
    return compare_table(paths, mean=mean, pareto=pareto)
