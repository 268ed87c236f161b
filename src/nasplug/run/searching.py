"""Running a search: every check before anything is written, the run directory, the strategy,
the results, and resuming a run from its directory.

:func:`run_search` starts a search from a :class:`~nasplug.run.config.SearchConfig`;
:func:`resume_search` continues one from its run directory (or gives a finished one's stored
results). What the layers above add, a report and TensorBoard scalars, they hand in as
:class:`Reporting`.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasplug.core.errors import one_line
from nasplug.core.options import OptionError
from nasplug.run.config import PLUGIN_KEYS, SearchConfig, compile_backend
from nasplug.run.data import check_data_given, data_name, load_data, settle_data, warn_batch_size
from nasplug.run.results import finished_line, noting_outcome, prepare_inputs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nasplug.core.interfaces import SearchSpace
    from nasplug.core.types import Data, Genotype, Task
    from nasplug.run.inputs import Normalisation
    from nasplug.run.results import TrainRun
    from nasplug.run.rundir import RunDir

__all__ = [
    "Reporting",
    "SearchRun",
    "build_plugins",
    "plugin_versions",
    "resume_search",
    "run_search",
]


@dataclass
class SearchRun:
    """What :func:`nasplug.search` found.

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
        return prepare_inputs(self.normalisation, x)

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
        """Train :attr:`genotype` from scratch on this search's data: :func:`nasplug.train`
        ``(self, ...)``.

        ``augment``, ``stream`` and ``workers`` default to the search's own settings.
        """
        from nasplug.run.training import train

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


@dataclass(frozen=True)
class Reporting:
    """What the layers above the run add to a search's run directory: TensorBoard scalars
    (``check_tensorboard`` raises when they cannot be written, before anything is;
    ``tensorboard_sink`` makes the sink for a run directory) and a report, written by
    ``write_report`` once the results are (a failure there costs only the report)."""

    check_tensorboard: Callable[[], None] | None = None
    tensorboard_sink: Callable[[Path], Callable[[str, Mapping[str, Any]], None]] | None = None
    write_report: Callable[[Path, bool], Any] | None = None


@dataclass
class _Prepared:
    """What the checks before a search found: the settled config, the storage URL itself, the
    plugins, the data and the budget's costs."""

    cfg: SearchConfig
    storage: str | None
    plugins: dict[str, Any]
    data: Data
    costs: dict[str, Any]


# ---- starting and resuming ---------------------------------------------------------------------
def run_search(
    config: SearchConfig, *, quiet: bool = False, reporting: Reporting | None = None
) -> SearchRun:
    """Run the search of ``config``: check everything, create its run directory (when it has
    ``out``), search, write the results; see :func:`nasplug.search`."""
    from nasplug.engine import ddp
    from nasplug.engine.rng import current_threads, fixed_threads
    from nasplug.run.rundir import RunDir

    instances = config.instances()
    given = instances.get("data")
    names = {k: _name(v) for k, v in instances.items()}
    if "data" in instances:
        names["data"] = data_name(given) or names["data"]
    cfg = config.replace(**names, threads=config.threads or current_threads())
    writer = ddp.setup() == 0
    run: RunDir | None = None
    try:
        prepared = _prepare(
            cfg,
            instances,
            task=cfg.task,
            test=cfg.test,
            writer=writer,
            resume=False,
            reporting=reporting,
        )
        if prepared.cfg.out is not None:
            prepared.cfg = prepared.cfg.replace(versions=plugin_versions(prepared.cfg, instances))
            run = RunDir.create(str(prepared.cfg.out), prepared.cfg.to_dict(), writer=writer)

        def work() -> SearchRun:
            return _execute(prepared, run, quiet=quiet or not writer, reporting=reporting)

        with fixed_threads(prepared.cfg.threads):
            if run is None:
                return work()
            return noting_outcome(work, run, "run", created=True)
    finally:
        if run is not None:
            run.close()


def resume_search(
    path: str | Path,
    *,
    instances: Mapping[str, Any] | None = None,
    device: str | None = None,
    storage: str | None = None,
    threads: int | None = None,
    task: Any = None,
    test: Any = None,
    quiet: bool = False,
    reporting: Reporting | None = None,
) -> SearchRun:
    """Continue the search in run directory ``path`` with its stored settings (``device``,
    ``storage`` and ``threads`` may be given again; plugin ``instances`` and in-memory data
    must be, if it was started with them). A finished run's stored results are returned and
    nothing is written."""
    from nasplug.engine import ddp
    from nasplug.engine.rng import fixed_threads
    from nasplug.run.rundir import COSTS, RunDir

    instances = dict(instances or {})
    writer = ddp.setup() == 0
    run: RunDir | None = None
    try:
        run = RunDir.open(path, writer=writer)
        if run.metrics() is not None:
            return _finished_search(run, instances, device, storage, task=task, test=test)
        run.lock()
        cfg = _resumed_config(run, device=device, storage=storage, threads=threads)
        _check_resumed_instances(cfg, instances)
        prepared = _prepare(
            cfg,
            instances,
            task=task,
            test=test,
            writer=writer,
            resume=True,
            stored_costs=run.read_json(COSTS),
            reporting=reporting,
        )
        run.log("resumed", device=prepared.cfg.device)
        resumed = run

        def work() -> SearchRun:
            return _execute(prepared, resumed, quiet=quiet or not writer, reporting=reporting)

        with fixed_threads(prepared.cfg.threads):
            return noting_outcome(work, run, "run", created=False)
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
    from nasplug.run.rundir import GENOTYPE, METRICS, RunError

    cfg = _resumed_config(run, device=device, storage=storage)
    _check_resumed_instances(cfg, instances)
    genotype = run.genotype()
    if genotype is None:
        raise RunError(f"{run.path} has {METRICS} but no {GENOTYPE}; it is damaged")
    space = build_plugins(cfg, instances, keys=("space",))["space"]
    given = instances.get("data")
    check_data_given(cfg, given, "the run")
    data = load_data(str(cfg.data), cfg.opts("data"), given, task=task, test=test)
    cfg = settle_data(cfg, data, given, test, resume=True, label="the run")
    try:
        normalisation: Normalisation | None = inputs.load(run.path)
    except ValueError:  # a run from before inputs.json was kept
        normalisation = None
    if run.writer:
        print(finished_line(run.path, "run"), file=sys.stderr)
    return SearchRun(
        genotype=Genotype.from_dict(genotype),
        metrics=run.metrics() or {},
        history=[
            {k: v for k, v in ev.items() if k not in ("event", "time")}
            for ev in run.events("search_epoch")
        ],
        candidates=list(run.candidates()),
        space=space,
        data=data,
        config=cfg.to_dict(),
        run_dir=run.path,
        normalisation=normalisation,
    )


def _resumed_config(
    run: RunDir, *, device: str | None, storage: str | None, threads: int | None = None
) -> SearchConfig:
    """The stored config of ``run``, checked, with the settings a resume may change."""
    from nasplug.engine.rng import resumed_threads
    from nasplug.run.credentials import mask

    stored = SearchConfig.stored_values(run.config(), run.path)
    if storage is not None:
        if stored.get("storage") is None or mask(storage) != mask(stored["storage"]):
            raise OptionError(
                f"--storage with --resume must give the run's own storage again "
                f"({mask(str(stored.get('storage')))}), got {mask(storage)}"
            )
        stored["storage"] = storage
    if device is not None:
        stored["device"] = device
    stored["threads"] = resumed_threads(stored.get("threads"), threads)
    return SearchConfig(**stored)


def _check_resumed_instances(cfg: SearchConfig, instances: Mapping[str, Any]) -> None:
    """A resumed run takes instances only of the plugins it was started with."""
    for key, obj in instances.items():
        if key == "data":
            continue  # in-memory data has no name to compare
        if _name(obj) != getattr(cfg, key):
            raise OptionError(
                f"{key} given to resume is a {type(obj).__name__}, but the run was started with "
                f"{getattr(cfg, key)!r}"
            )


def _name(plugin: Any) -> str:
    from nasplug.core import registry

    return registry.name_of(plugin)


# ---- plugins -----------------------------------------------------------------------------------
def build_plugins(
    cfg: SearchConfig,
    instances: Mapping[str, Any] | None = None,
    keys: Sequence[str] = ("space", "relax", "strategy"),
) -> dict[str, Any]:
    """The plugins of a config: the instances given, the others built from their registered
    names and options (only the ones named are imported). Data comes from
    :func:`~nasplug.run.data.load_data`."""
    from nasplug.core import registry
    from nasplug.core.options import instantiate

    out = {}
    for key in keys:
        axis = PLUGIN_KEYS[key]
        if instances and key in instances:
            out[key] = instances[key]
            continue
        name = getattr(cfg, key)
        cls = registry.load(axis, name)
        out[key] = instantiate(cls, cfg.opts(key), f"{axis} {name!r}")
    return out


def plugin_versions(
    cfg: SearchConfig, instances: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """``axis:name -> distribution version`` of every registered plugin of the run."""
    from nasplug.core import registry
    from nasplug.core.registry import PluginError

    out = {}
    for key, axis in PLUGIN_KEYS.items():
        name = getattr(cfg, key)
        try:
            i = registry.info(axis, name)
        except PluginError:  # an unregistered instance or in-memory data
            obj = (instances or {}).get(key)
            out[f"{axis}:{name}"] = type(obj).__module__ if obj is not None else "?"
            continue
        out[f"{axis}:{name}"] = f"{i.dist} {i.version}"
    return out


# ---- checks before anything is written --------------------------------------------------------
def _prepare(
    cfg: SearchConfig,
    instances: Mapping[str, Any],
    *,
    task: Any,
    test: Any,
    writer: bool,
    resume: bool,
    stored_costs: Any = None,
    reporting: Reporting | None = None,
) -> _Prepared:
    """Every check that can fail before anything is written: the output path, the storage,
    the device and compiler, the plugins, the data, whether the space takes the data, and
    whether its constraints and budget can be met."""
    from nasplug.engine import ddp
    from nasplug.run.credentials import has_secret, resolve_storage
    from nasplug.run.rundir import CONFIG, check_new_run_path

    ddp.check_batch_size(cfg.batch_size)
    if writer and not resume and cfg.out:
        check_new_run_path(cfg.out)
    storage = resolve_storage(cfg.storage)
    backend = compile_backend(cfg.compile)
    if backend is not None:
        from nasplug.engine.compiling import check_compile
        from nasplug.engine.trainer import pick_device

        check_compile(backend, pick_device(cfg.device))
    if cfg.tensorboard:
        if reporting is None or reporting.check_tensorboard is None:
            raise OptionError("tensorboard logs need nasplug.search or `nasplug run`")
        reporting.check_tensorboard()
    given_data = instances.get("data")
    if resume:
        check_data_given(cfg, given_data, "the run")
    plugins = build_plugins(cfg, instances)
    _check_table(plugins, str(cfg.strategy))
    data = load_data(str(cfg.data), cfg.opts("data"), given_data, task=task, test=test)
    cfg = settle_data(cfg, data, given_data, test, resume=resume, label="the run")
    _check_space_takes(plugins["space"], data, cfg)
    costs = _check_constraints(plugins["space"], plugins["relax"], cfg, data.task, stored_costs)
    if writer and not resume and cfg.storage and has_secret(cfg.storage):
        print(
            f"nasplug: warning: the storage password is not stored ({CONFIG} shows ***); "
            "to resume, give --storage again, or pass the URL as env:NAME or file:PATH",
            file=sys.stderr,
        )
    return _Prepared(cfg, storage, plugins, data, costs)


def _check_table(plugins: Mapping[str, Any], strategy_name: str) -> None:
    """A strategy that scores by a benchmark table (``method=table``) needs a space with one."""
    from nasplug.core.interfaces import SearchesTable
    from nasplug.searchlib.blackbox import benchmark_of

    strategy = plugins["strategy"]
    if isinstance(strategy, SearchesTable) and strategy.method == "table":
        benchmark_of(plugins["space"], strategy_name)


def _check_space_takes(space: Any, data: Data, cfg: SearchConfig) -> None:
    """Build the supernet once on the data's task, on the meta device where the space allows
    (nothing is allocated): a space that cannot take this data, or whose supernet cannot fit
    in the device's memory, fails here, before a run directory exists."""
    from nasplug.engine.memory import check_fits, on_meta
    from nasplug.engine.trainer import pick_device

    opts = cfg.opts("space")
    with_opts = f" with {', '.join(f'{k}={v}' for k, v in opts.items())}" if opts else ""
    try:
        space.choices()
        net = on_meta(lambda: space.supernet(data.task))
        if net is None:
            space.supernet(data.task)
    except Exception as e:  # noqa: BLE001 - a plugin's own error, whatever its type
        raise OptionError(
            f"space {cfg.space!r}{with_opts} cannot take the data of {cfg.data!r} "
            f"({data.task.kind}, input shape {tuple(data.task.input_shape)}): "
            f"{one_line(e, with_type=True)}"
        ) from e
    if net is not None:
        check_fits(
            net,
            pick_device(cfg.device),
            f"the supernet of space {cfg.space!r}{with_opts}",
            "smaller space options (channels, layers) or another --device",
        )


def _check_constraints(
    space: Any, relaxation: Any, cfg: SearchConfig, task: Task, stored: Any
) -> dict[str, Any]:
    """The relaxation's constraints on the space (a cap on parameter-free ops) and the run's
    budget can be met; returns the budget's costs (``{resource: Costs}``, empty without one),
    read from the run's ``costs.json`` when ``stored`` holds it (a resume), else made here."""
    from nasplug.core.interfaces import Constrains
    from nasplug.core.types import Costs
    from nasplug.engine.trainer import pick_device
    from nasplug.run.budget import budget_constraints, budget_costs, cost_range, format_cost
    from nasplug.searchlib.polytope import constraint_layout, group_layout

    limits = dict(cfg.budget or {})
    costs: dict[str, Any] = {}
    if limits:
        if isinstance(stored, dict) and set(limits) <= set(stored):
            costs = {r: Costs.from_dict(stored[r]) for r in limits}
        else:
            try:
                costs = budget_costs(space, task, list(limits), device=pick_device(cfg.device))
            except ValueError as e:
                raise OptionError(f"budget on space {cfg.space!r}: {one_line(e)}") from e
        for resource, limit in limits.items():
            least, largest = cost_range(space, costs[resource])
            if least > limit:
                raise OptionError(
                    f"budget {resource}={format_cost(resource, limit)} cannot be met on space "
                    f"{cfg.space!r}: the smallest network it can derive costs "
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
            raise OptionError(f"relaxation {cfg.relax!r} on space {cfg.space!r}: {e}") from e
    return costs


# ---- the search itself -------------------------------------------------------------------------
def _execute(
    prepared: _Prepared,
    run: RunDir | None,
    *,
    quiet: bool = False,
    reporting: Reporting | None = None,
) -> SearchRun:
    """Build the trainer, run the strategy and write the results into ``run`` (if any)."""
    from nasplug.core.interfaces import SearchContext
    from nasplug.engine.trainer import Trainer
    from nasplug.run.budget import budget_constraints
    from nasplug.run.inputs import Normalisation
    from nasplug.run.metrics import benchmark_metrics, cost_metrics, feasible_under
    from nasplug.run.rundir import CANDIDATES, COSTS, GENOTYPE, INPUTS, METRICS

    cfg, plugins, data, costs = prepared.cfg, prepared.plugins, prepared.data, prepared.costs
    space = plugins["space"]
    sink = None
    if cfg.tensorboard and run is not None and run.writer and reporting is not None:
        if reporting.tensorboard_sink is not None:
            sink = reporting.tensorboard_sink(run.path)
    trainer = Trainer(
        data,
        run=run,
        device=cfg.device,
        seed=cfg.seed,
        deterministic=cfg.deterministic,
        quiet=quiet,
        sink=sink,
        compile=compile_backend(cfg.compile),
        augment=cfg.augment,
        stream=cfg.stream,
        workers=cfg.workers,
    )
    options = {
        "storage": prepared.storage,
        "study": cfg.study,
        "run_dir": str(run.path) if run is not None else None,
        "tensorboard": cfg.tensorboard,
    }
    limits = dict(cfg.budget or {})
    if run is not None and run.writer and limits and run.read_json(COSTS) is None:
        run.write_json(COSTS, {r: c.to_dict() for r, c in costs.items()})
    ctx = SearchContext(
        space=space,
        relaxation=plugins["relax"],
        trainer=trainer,
        data=data,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        options=options,
        feasible=feasible_under(space, costs, limits) if limits else None,
        constraints=budget_constraints(space, costs, limits),
        budget_penalty=cfg.budget_penalty,
    )
    where = f"; run directory {run.path}" if run is not None else ""
    trainer.say(
        f"nasplug: {cfg.strategy} search of {cfg.space} with {cfg.relax} on "
        f"{cfg.data} ({data.task.kind}, {trainer.size('train')} train / "
        f"{trainer.size('test')} test) on {trainer.device}{where}"
    )
    if data.note:
        trainer.say(f"nasplug: {data.note}")
    if run is None or run.writer:
        warn_batch_size(cfg.batch_size, trainer.size("weight"), "each half of the search data")
    config = cfg.to_dict()
    trainer.log("start", config=config, device=str(trainer.device))
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
    metrics.update(
        cost_metrics(
            space,
            data.task,
            result.genotype,
            costs,
            limits,
            penalised=cfg.budget_penalty is not None,
        )
    )
    metrics.update(benchmark_metrics(space, result.genotype, trainer.say))
    if run is not None:
        run.write_json(GENOTYPE, result.genotype.to_dict())
        run.write_json(METRICS, metrics)
        if normalisation is not None:
            run.write_json(INPUTS, normalisation.to_dict())
        if result.candidates:
            run.write_json(CANDIDATES, list(result.candidates))
        run.log("end", metrics=metrics, genotype=result.genotype.to_dict())
        if run.writer and reporting is not None and reporting.write_report is not None:
            _write_report(reporting.write_report, run.path, cfg.figures)
    return SearchRun(
        genotype=result.genotype,
        metrics=metrics,
        history=[dict(r) for r in result.history],
        candidates=[dict(c) for c in result.candidates],
        space=space,
        data=data,
        config=config,
        supernet=result.supernet,
        weights=dict(result.weights) if result.weights is not None else None,
        run_dir=run.path if run is not None else None,
        normalisation=normalisation,
    )


def _write_report(write: Callable[[Path, bool], Any], path: Path, figures: bool) -> None:
    """report.md, with its pictures unless ``figures`` is off; a failure here never loses the
    search results."""
    try:
        write(path, figures)
    except Exception as e:  # noqa: BLE001 - a report is a convenience on top of the results
        print(f"nasplug: warning: report not written: {one_line(e)}", file=sys.stderr)


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
