"""Training a searched genotype (or a hand-designed baseline) from scratch.

:func:`nasplug.train` and ``nasplug train`` run :func:`train`: it trains the discrete network of
a genotype on the whole search data (both halves) with :func:`train_network`, and reports its
test metric, parameter count and wall time, in a training run directory of its own
(``train.json``) when one is given.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasplug.core.errors import one_line
from nasplug.core.options import OptionError
from nasplug.run.config import DEFAULTS, TrainConfig
from nasplug.run.data import check_data_given, data_name, load_data, settle_data, warn_batch_size
from nasplug.run.metrics import benchmark_metrics
from nasplug.run.results import SearchOutcome, TrainRun, finished_line, noting_outcome

if TYPE_CHECKING:
    from torch import nn

    from nasplug.core.interfaces import SearchSpace
    from nasplug.core.types import Data, Genotype
    from nasplug.run.inputs import Normalisation
    from nasplug.run.rundir import RunDir

__all__ = ["PreparedTraining", "prepare_train", "train", "train_config", "train_network"]

#: A genotype's benchmark-table metrics, given where to say why the table is unavailable.
TableLookup = Callable[[Callable[[str], None]], dict[str, Any]]


@dataclass
class PreparedTraining:
    """A training run checked and ready to train: its settled config, the data, the network,
    the network's name and its benchmark-table lookup (None for a baseline)."""

    cfg: TrainConfig
    data: Data
    model: nn.Module
    name: str
    table: TableLookup | None


def train(
    source: SearchOutcome | str | Path | Genotype | None = None,
    *,
    baseline: str | None = None,
    data: Any = None,
    data_opts: Mapping[str, Any] | None = None,
    space: str | SearchSpace | None = None,
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
        source: what to train: a :class:`~nasplug.SearchRun`, a search run directory, a genotype
            file (JSON or a DARTS ``Genotype(...)`` string) or a :class:`~nasplug.Genotype`;
            None with ``baseline``.
        baseline: train a hand-designed network instead (``resnet``), on ``source``'s data.
        data, data_opts, task, test: the data, as in :func:`nasplug.search` (default: the
            search's).
        space, space_opts: the space of a genotype (default: the genotype's own); a name or
            an instance.
        epochs, batch_size, lr, drop_path, auxiliary, seed, device: as ``nasplug train``.
        cutout: cutout square in pixels; None: half the image side while ``augment`` is on,
            0: off.
        channels, layers: width and depth (space options ``channels``, ``layers``; a
            baseline's width and blocks per stage).
        augment, stream, workers, threads: as in :func:`nasplug.search`.
        out: a training run directory to create (``train.json``, checkpoints); None: in memory.
        resume: a training run directory to continue (``device``, ``threads`` and in-memory
            ``data`` may be given again).
    """
    from nasplug.engine.rng import current_threads
    from nasplug.run.rundir import RunDir, check_new_run_path

    given = None if data is None or isinstance(data, str) else data
    if resume is not None:
        return _resume_training(
            resume, device=device, threads=threads, given=given, task=task, test=test, quiet=quiet
        )
    settings = TrainConfig(
        baseline=baseline,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        cutout=cutout,
        drop_path=drop_path,
        auxiliary=auxiliary,
        seed=seed,
        channels=channels,
        layers=layers,
        augment=augment,
        stream=stream,
        workers=workers,
        device=device or "auto",
        threads=threads,
    )
    settings = settings.replace(threads=settings.threads or current_threads())
    cfg, reuse = train_config(
        source, settings, space=space, space_opts=space_opts, data=data, data_opts=data_opts
    )
    if out is not None:
        check_new_run_path(out, resume="nasplug train --resume")
    # Bad input stops here, before a run directory exists.
    prepared = prepare_train(cfg, reuse, task=task, test=test)
    run = RunDir.create(out, prepared.cfg.to_dict()) if out is not None else None
    try:
        return _train(prepared, run, quiet=quiet, created=True)
    finally:
        if run is not None:
            run.close()


def _resume_training(
    path: str | Path,
    *,
    device: str | None,
    threads: int | None,
    given: Any,
    task: Any,
    test: Any,
    quiet: bool,
) -> TrainRun:
    """Continue the training run in ``path``, or give a finished one's stored result."""
    from nasplug.engine.rng import resumed_threads
    from nasplug.run.rundir import RunDir

    run = RunDir.open(path)
    try:
        stored = run.config()
        if run.train_result() is not None:
            cfg = TrainConfig.from_stored(stored, path, device=device)
            return _finished_training(run, cfg, given, task=task, test=test)
        cfg = TrainConfig.from_stored(stored, path, device=device)
        run.lock()
        cfg = cfg.replace(threads=resumed_threads(cfg.threads, threads))
        reuse = {"given_data": given} if given is not None else {}
        prepared = prepare_train(cfg, reuse, task=task, test=test, resume=True)
        run.log("resumed", device=prepared.cfg.device)
        return _train(prepared, run, quiet=quiet, created=False)
    finally:
        run.close()


def _train(
    prepared: PreparedTraining,
    run: RunDir | None,
    *,
    quiet: bool,
    created: bool,
) -> TrainRun:
    """Train under the run's thread count; a failure says what became of ``run``."""
    from nasplug.engine.rng import fixed_threads

    def work() -> tuple[dict[str, Any], list[dict[str, Any]], nn.Module, Any]:
        return train_network(prepared, run, quiet=quiet)

    with fixed_threads(prepared.cfg.threads):
        if run is None:
            result, hist, model, normalisation = work()
        else:
            result, hist, model, normalisation = noting_outcome(work, run, "train", created=created)
    return TrainRun(
        result=result,
        history=hist,
        model=model,
        config=prepared.cfg.to_dict(),
        run_dir=run.path if run is not None else None,
        normalisation=normalisation,
    )


def train_config(
    source: Any,
    settings: TrainConfig,
    *,
    space: Any = None,
    space_opts: Mapping[str, Any] | None = None,
    data: Any = None,
    data_opts: Mapping[str, Any] | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config of a training run, and the objects it reuses (``space``, ``data``).

    ``source`` is a :class:`~nasplug.run.searching.SearchRun`, a search run directory, a
    genotype file, a :class:`~nasplug.core.types.Genotype` or None (with a baseline);
    ``settings`` the checked settings of :func:`train`; ``space`` and ``data`` given as names
    or objects replace the source's.
    """
    from nasplug.core import registry
    from nasplug.core.types import Genotype
    from nasplug.run.rundir import GENOTYPE, RunDir, RunError

    cfg = settings
    baseline = settings.baseline
    opts: dict[str, dict[str, Any]] = {"space": {}, "data": {}}
    reuse: dict[str, Any] = {}
    if source is None and baseline is None:
        raise OptionError("train needs a run directory or genotype file, or --baseline")
    if isinstance(source, SearchOutcome):
        sc = source.config
        cfg = cfg.replace(
            space=sc["space"],
            data=sc["data"],
            source=_text(source.run_dir),
            data_fingerprint=sc.get("data_fingerprint"),
        )
        opts = {"space": dict(sc["opts"]["space"]), "data": dict(sc["opts"]["data"])}
        reuse.update(space=source.space, data=source.data)
        if baseline is None:
            cfg = cfg.replace(
                search=_search_record(sc, source.metrics, _text(source.run_dir)),
                genotype=source.genotype.to_dict(),
            )
    elif isinstance(source, Genotype):
        if baseline is not None:
            raise OptionError("baseline takes a search (for its dataset), not a genotype")
        cfg = cfg.replace(genotype=source.to_dict(), space=source.space)
    elif source is not None:
        src = Path(source)
        cfg = cfg.replace(source=str(src))
        if src.is_dir():
            run = RunDir.open(src, writer=False)
            rc = run.config()
            if rc.get("command") == "train":
                raise RunError(f"{src} is a training run; pass the search run it came from")
            cfg = cfg.replace(
                space=rc["space"], data=rc["data"], data_fingerprint=rc.get("data_fingerprint")
            )
            opts = {
                "space": dict(rc.get("opts", {}).get("space", {})),
                "data": dict(rc.get("opts", {}).get("data", {})),
            }
            if baseline is None:
                cfg = cfg.replace(search=_search_record(rc, run.metrics() or {}, str(src)))
                g = run.genotype()
                if g is None:
                    raise RunError(
                        f"{src} has no {GENOTYPE}: its search has not finished; "
                        f"resume it with `nasplug run --resume {src}`"
                    )
                cfg = cfg.replace(genotype=Genotype.from_dict(g).to_dict())
        elif src.is_file():
            if baseline is not None:
                raise OptionError(
                    "--baseline takes a search run directory (for its dataset), not a genotype file"
                )
            g = _read_genotype_file(src, space, space_opts or {})
            cfg = cfg.replace(genotype=g.to_dict(), space=g.space)
        else:
            raise FileNotFoundError(f"{src} is neither a run directory nor a genotype file")
    if space is not None:
        if isinstance(space, str):
            cfg = cfg.replace(space=space)
            reuse.pop("space", None)
        else:
            cfg = cfg.replace(space=registry.name_of(space))
            reuse["space"] = space
    if data is not None:
        reuse.pop("data", None)
        cfg = cfg.replace(data_fingerprint=None)  # other data than the search's
        if isinstance(data, str):
            cfg = cfg.replace(data=data)
        else:
            reuse["given_data"] = data
    cfg = cfg.replace(data=cfg.data or DEFAULTS["data"])
    for key, given_opts in (("space", space_opts), ("data", data_opts)):
        if given_opts and key in reuse:
            raise OptionError(
                f"{key}_opts apply to a {key} given by name; an instance already has its options"
            )
        opts[key].update(given_opts or {})
    if baseline is None:
        for key in ("channels", "layers"):
            if getattr(settings, key) is not None:
                opts["space"][key] = getattr(settings, key)
                reuse.pop("space", None)  # a changed width or depth is another space instance
        if settings.auxiliary:
            opts["space"]["auxiliary"] = True
            reuse.pop("space", None)
    elif settings.auxiliary:
        raise OptionError("--auxiliary needs a searched network; baselines have no auxiliary head")
    return cfg.replace(space_opts=opts["space"], data_opts=opts["data"]), reuse


def _read_genotype_file(src: Path, space: Any, opts: Mapping[str, Any]) -> Any:
    """The genotype in file ``src``: JSON, a DARTS ``Genotype(...)`` string, or, with ``space``
    given (a name or an instance), text in the space's own notation (see
    :class:`~nasplug.core.interfaces.ParsesGenotype`)."""
    from nasplug.core import registry
    from nasplug.core.interfaces import ParsesGenotype
    from nasplug.core.options import instantiate
    from nasplug.core.types import Genotype

    text = src.read_text()
    try:
        return Genotype.parse(text)
    except ValueError as e:
        if text.lstrip().startswith(("{", "Genotype")):
            raise
        if space is None:
            raise ValueError(f"{e}, or text in a space's own notation with --space NAME") from None
    if isinstance(space, str):
        space = instantiate(registry.load("space", space), opts, f"space {space!r}")
    if not isinstance(space, ParsesGenotype):
        return Genotype.parse(text)  # the space reads no other notation: the parse error
    return space.parse_genotype(text)


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _search_record(cfg: Mapping[str, Any], metrics: Mapping[str, Any], run: str | None) -> dict:
    """What a training run keeps about the search its genotype came from."""
    return {
        "run": run,
        "strategy": cfg.get("strategy"),
        "relax": cfg.get("relax"),
        "supernet": any(k.endswith("_continuous") for k in metrics),
        "search_seconds": metrics.get("search_seconds", metrics.get("wall_seconds")),
    }


def prepare_train(
    cfg: TrainConfig,
    reuse: Mapping[str, Any] | None = None,
    *,
    task: Any = None,
    test: Any = None,
    resume: bool = False,
) -> PreparedTraining:
    """The data, the network, its name and its benchmark-table lookup for ``cfg``: every input
    checked, nothing written.

    With ``resume``, ``cfg`` is a stored config and data given in ``reuse`` must be the data
    it was made with. The lookup (None for a baseline) gives the genotype's value in its space's
    benchmark table, if the space offers one (see
    :func:`~nasplug.run.metrics.benchmark_metrics`); it takes where to say why a table is
    unavailable.
    """
    from nasplug.core import registry
    from nasplug.core.options import instantiate
    from nasplug.core.types import Genotype
    from nasplug.engine.baselines import baseline
    from nasplug.engine.memory import check_fits, on_meta
    from nasplug.engine.rng import seed_everything
    from nasplug.engine.trainer import pick_device

    reuse = reuse or {}
    if "data" in reuse:
        data = reuse["data"]
        if cfg.augment is None:
            cfg = cfg.replace(augment=data.augment or "standard")  # checked when searched
    else:
        given = reuse.get("given_data")
        label = "the run" if resume else f"the search {cfg.source or cfg.data}"
        check_data_given(cfg, given, label)
        if not resume:
            cfg = cfg.replace(data=data_name(given) or cfg.data)
        data = load_data(str(cfg.data), cfg.opts("data"), given, task=task, test=test)
        cfg = settle_data(cfg, data, given, test, resume=resume, label=label)
    task_ = data.task
    # The network's initial weights follow the seed too (the trainer seeds again for the rest).
    seed_everything(cfg.seed)
    table: TableLookup | None = None
    if cfg.baseline is not None:
        model = baseline(cfg.baseline, task_, channels=cfg.channels, layers=cfg.layers)
        name = f"{cfg.baseline} baseline"
    else:
        space = reuse.get("space")
        if space is None:
            space = instantiate(
                registry.load("space", str(cfg.space)), cfg.opts("space"), f"space {cfg.space!r}"
            )
        genotype = Genotype.from_dict(dict(cfg.genotype or {}))
        meta = on_meta(lambda: space.build(genotype, task_))
        if meta is not None:  # refused before it is allocated (see nasplug.engine.memory)
            check_fits(
                meta,
                pick_device(cfg.device),
                f"the {cfg.space} network",
                "smaller --channels or --layers, or another --device",
            )
        try:
            model = space.build(genotype, task_)
        except Exception as e:  # noqa: BLE001 - a space rejects a genotype in its own words
            raise ValueError(
                f"the genotype does not fit space {cfg.space!r}: {one_line(e, with_type=True)}"
            ) from e
        name = f"{cfg.space} genotype"
        table = functools.partial(benchmark_metrics, space, genotype)
    if cfg.cutout and len(task_.input_shape) != 3:
        raise ValueError(
            f"--cutout needs image data; {cfg.data} has input shape {tuple(task_.input_shape)}"
        )
    return PreparedTraining(cfg, data, model, name, table)


def train_network(
    prepared: PreparedTraining, run: RunDir | None, *, quiet: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]], nn.Module, Normalisation | None]:
    """Train the prepared network (see :func:`prepare_train`) on the whole training data and
    measure it on the test split; write ``train.json`` and ``inputs.json`` into ``run`` if
    there is one. Returns the result, the history, the trained network and what its inputs
    were normalised with."""
    from nasplug.engine.memory import count_params
    from nasplug.engine.trainer import Trainer
    from nasplug.run.inputs import Normalisation
    from nasplug.run.rundir import INPUTS, TRAIN

    cfg, data, model, name, table = (
        prepared.cfg,
        prepared.data,
        prepared.model,
        prepared.name,
        prepared.table,
    )
    task = data.task
    trainer = Trainer(
        data,
        run=run,
        device=cfg.device,
        seed=cfg.seed,
        quiet=quiet,
        augment=cfg.augment,
        stream=cfg.stream,
        workers=cfg.workers,
    )
    params = count_params(model)
    trainer.say(
        f"nasplug: training a {name} ({params} parameters) on {cfg.data} "
        f"({trainer.size('train')} train / {trainer.size('test')} test) on {trainer.device}"
    )
    if data.note:
        trainer.say(f"nasplug: {data.note}")
    warn_batch_size(cfg.batch_size, trainer.size("train"), "the training data")
    trainer.log("train_start", config=cfg.to_dict(), params=params, device=str(trainer.device))
    t0 = time.time()
    hist = trainer.fit(
        model,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        phase="train",
        train_split="train",
        eval_split="test",
        lr=cfg.lr,
        drop_path=cfg.drop_path,
        cutout=cfg.cutout,  # None: the trainer's default for the data and augmentation
        aux_weight=0.4 if cfg.auxiliary else 0.0,
    )
    m = task.metric
    final = hist[-1]
    result = {
        "metric": m,
        "higher_is_better": task.higher_is_better,
        f"test_{m}": final["test"].get(m, math.nan),
        "test": final["test"],
        "train": final["train"],
        "params": params,
        "seconds": _train_seconds(run) if run is not None else time.time() - t0,
        "epochs": len(hist),
        "method": cfg.baseline or "discrete",
        "data": cfg.data,
        "genotype": None if cfg.genotype is None else dict(cfg.genotype),
        "source": cfg.source,
        "search_seconds": (cfg.search or {}).get("search_seconds"),
        **(table(trainer.say) if table is not None else {}),
    }
    normalisation = Normalisation.of(task.input_shape, *trainer.input_stats)
    if run is not None:
        run.write_json(TRAIN, result)
        if normalisation is not None:
            run.write_json(INPUTS, normalisation.to_dict())
    trainer.log("train_end", **{k: v for k, v in result.items() if k != "genotype"})
    return result, hist, model, normalisation


def _train_seconds(run: RunDir) -> float:
    """Seconds of the kept epochs over all sessions (an epoch redone after a kill counts once)."""
    per_epoch: dict[int, float] = {}
    mark = None
    for ev in run.events():
        if ev["event"] == "train_start":
            mark = ev["time"]
        elif ev["event"] == "train_epoch" and ev.get("phase") == "train" and mark is not None:
            per_epoch[int(ev["epoch"])] = ev["time"] - mark
            mark = ev["time"]
    return float(sum(per_epoch.values()))


def _finished_training(
    run: RunDir, cfg: TrainConfig, given: Any, *, task: Any, test: Any
) -> TrainRun:
    """A finished training run given to resume: its stored result and the trained network
    from its last checkpoint; nothing is trained, locked or written."""
    from nasplug.run import inputs
    from nasplug.run.rundir import TRAIN, RunError

    reuse = {"given_data": given} if given is not None else {}
    prepared = prepare_train(cfg, reuse, task=task, test=test, resume=True)
    ckpt = run.load_checkpoint("train")
    if ckpt is None:
        raise RunError(f"{run.path} has {TRAIN} but no checkpoint of its network")
    try:
        prepared.model.load_state_dict(ckpt["state"]["model"])
        history = list(ckpt["state"]["memo"]["history"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise RunError(
            f"checkpoint {run.checkpoint_path('train')} does not fit this run's network"
        ) from e
    try:
        normalisation: Normalisation | None = inputs.load(run.path)
    except ValueError:  # a run from before inputs.json was kept
        normalisation = None
    print(finished_line(run.path, "train"), file=sys.stderr)
    return TrainRun(
        result=run.train_result() or {},
        history=history,
        model=prepared.model,
        config=prepared.cfg.to_dict(),
        run_dir=run.path,
        normalisation=normalisation,
    )
