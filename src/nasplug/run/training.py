"""Training a searched genotype (or a hand-designed baseline) from scratch.

:func:`nasplug.train` and ``nasplug train`` run :func:`run_training`: it trains the discrete
network of a genotype on the whole search data (both halves), and reports its test metric,
parameter count and wall time, in a training run directory of its own (``train.json``) when one
is given.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from nasplug.engine.memory import count_params

if TYPE_CHECKING:
    from nasplug.api import TrainRun
    from nasplug.core.types import Data
    from nasplug.run.inputs import Normalisation

__all__ = ["TRAIN_JSON", "prepare_train", "run_training", "train_config"]

TRAIN_JSON = "train.json"
#: A genotype's benchmark-table metrics, given where to say why the table is unavailable.
TableLookup = Callable[[Callable[[str], None]], dict[str, Any]]


def _check_settings(s: Mapping[str, Any]) -> None:
    from nasplug.api import check_counts, check_data_settings
    from nasplug.core.options import OptionError
    from nasplug.engine.rng import check_threads

    check_counts(s)
    if s["cutout"] is not None and (not isinstance(s["cutout"], int) or s["cutout"] < 0):
        raise OptionError(f"cutout must be an integer >= 0 (0: off), got {s['cutout']!r}")
    if not isinstance(s["drop_path"], (int, float)) or not 0.0 <= s["drop_path"] < 1.0:
        raise OptionError(f"drop_path must be in [0, 1), got {s['drop_path']!r}")
    if not isinstance(s["lr"], (int, float)) or not math.isfinite(s["lr"]) or s["lr"] <= 0:
        raise OptionError(f"lr must be a positive number, got {s['lr']!r}")
    if not isinstance(s["seed"], int) or not 0 <= s["seed"] < 2**63:
        raise OptionError(f"seed must be an integer from 0 to 2**63-1, got {s['seed']!r}")
    check_data_settings(s)
    check_threads(s.get("threads"))


def train_config(source: Any, s: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config of a training run, and the objects it reuses (``space``, ``data``).

    ``source`` is a :class:`~nasplug.api.SearchRun`, a search run directory, a genotype file,
    a :class:`~nasplug.core.types.Genotype` or None (with a baseline); ``s`` holds the settings of
    :func:`nasplug.train`.
    """
    from nasplug.api import DEFAULTS, SearchRun
    from nasplug.core import registry
    from nasplug.core.options import OptionError
    from nasplug.core.types import Genotype
    from nasplug.engine.baselines import BASELINES
    from nasplug.engine.rng import current_threads
    from nasplug.run.rundir import RunDir, RunError

    _check_settings(s)
    cfg: dict[str, Any] = {
        "command": "train",
        "source": None,
        "baseline": s["baseline"],
        "genotype": None,
        "space": None,
        "data": None,
        "opts": {"space": {}, "data": {}},
        "search": None,
        **{
            k: s[k]
            for k in (
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
            )
        },
        "device": s["device"] or "auto",
        "threads": s.get("threads") or current_threads(),
    }
    reuse: dict[str, Any] = {}
    if s["baseline"] is not None and s["baseline"] not in BASELINES:
        raise OptionError(f"unknown baseline {s['baseline']!r}; accepted: {', '.join(BASELINES)}")
    if source is None and s["baseline"] is None:
        raise OptionError("train needs a run directory or genotype file, or --baseline")
    if isinstance(source, SearchRun):
        sc = source.config
        cfg.update(space=sc["space"], data=sc["data"], source=_text(source.run_dir))
        cfg["data_fingerprint"] = sc.get("data_fingerprint")
        cfg["opts"] = {"space": dict(sc["opts"]["space"]), "data": dict(sc["opts"]["data"])}
        reuse.update(space=source.space, data=source.data)
        if s["baseline"] is None:
            cfg["search"] = _search_record(sc, source.metrics, _text(source.run_dir))
            cfg["genotype"] = source.genotype.to_dict()
    elif isinstance(source, Genotype):
        if s["baseline"] is not None:
            raise OptionError("baseline takes a search (for its dataset), not a genotype")
        cfg.update(genotype=source.to_dict(), space=source.space)
    elif source is not None:
        src = Path(source)
        cfg["source"] = str(src)
        if src.is_dir():
            run = RunDir.open(src, writer=False)
            rc = run.config()
            if rc.get("command") == "train":
                raise RunError(f"{src} is a training run; pass the search run it came from")
            cfg.update(space=rc["space"], data=rc["data"])
            cfg["data_fingerprint"] = rc.get("data_fingerprint")
            cfg["opts"] = {
                "space": dict(rc.get("opts", {}).get("space", {})),
                "data": dict(rc.get("opts", {}).get("data", {})),
            }
            if s["baseline"] is None:
                metrics = run.read_json("metrics.json", {})
                cfg["search"] = _search_record(rc, metrics, str(src))
                g = run.read_json("genotype.json")
                if g is None:
                    raise RunError(
                        f"{src} has no genotype.json: its search has not finished; "
                        f"resume it with `nasplug run --resume {src}`"
                    )
                cfg["genotype"] = Genotype.from_dict(g).to_dict()
        elif src.is_file():
            if s["baseline"] is not None:
                raise OptionError(
                    "--baseline takes a search run directory (for its dataset), not a genotype file"
                )
            g = _read_genotype_file(src, s["space"], s["space_opts"] or {})
            cfg["genotype"] = g.to_dict()
            cfg["space"] = g.space
        else:
            raise FileNotFoundError(f"{src} is neither a run directory nor a genotype file")
    if s["space"] is not None:
        if isinstance(s["space"], str):
            cfg["space"] = s["space"]
            reuse.pop("space", None)
        else:
            cfg["space"] = registry.name_of(s["space"])
            reuse["space"] = s["space"]
    if s["data"] is not None:
        reuse.pop("data", None)
        cfg.pop("data_fingerprint", None)  # other data than the search's
        if isinstance(s["data"], str):
            cfg["data"] = s["data"]
        else:
            reuse["given_data"] = s["data"]
    cfg["data"] = cfg["data"] or DEFAULTS["data"]
    for key in ("space", "data"):
        opts = s[f"{key}_opts"] or {}
        if opts and key in reuse:
            raise OptionError(
                f"{key}_opts apply to a {key} given by name; an instance already has its options"
            )
        cfg["opts"][key].update(opts)
    if s["baseline"] is None:
        for key in ("channels", "layers"):
            if s[key] is not None:
                cfg["opts"]["space"][key] = s[key]
                reuse.pop("space", None)  # a changed width or depth is another space instance
        if s["auxiliary"]:
            cfg["opts"]["space"]["auxiliary"] = True
            reuse.pop("space", None)
    elif s["auxiliary"]:
        raise OptionError("--auxiliary needs a searched network; baselines have no auxiliary head")
    return cfg, reuse


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
    cfg: dict[str, Any],
    reuse: Mapping[str, Any] | None = None,
    *,
    task: Any = None,
    test: Any = None,
    resume: bool = False,
) -> tuple[Data, nn.Module, str, TableLookup | None]:
    """The data, the network, its name and its benchmark-table lookup for ``cfg``: every input
    checked, nothing written.

    With ``resume``, ``cfg`` is a stored config and data given in ``reuse`` must be the data
    it was made with. The lookup (None for a baseline) gives the genotype's value in its space's
    benchmark table, if the space offers one (see :func:`nasplug.api.benchmark_metrics`); it
    takes where to say why a table is unavailable.
    """
    from nasplug.api import _data_name, benchmark_metrics, check_data_given, load_data, settle_data
    from nasplug.core import registry
    from nasplug.core.options import OptionError, instantiate
    from nasplug.core.types import Genotype
    from nasplug.engine.baselines import baseline
    from nasplug.engine.memory import check_fits, on_meta
    from nasplug.engine.rng import seed_everything
    from nasplug.engine.trainer import pick_device

    reuse = reuse or {}
    if not isinstance(cfg.get("device"), str):
        raise OptionError(
            f"device must be text (auto, cpu, cuda, cuda:N or mps), got {cfg.get('device')!r}"
        )
    pick_device(cfg["device"])
    if "data" in reuse:
        data = reuse["data"]
        if cfg.get("augment") is None:
            cfg["augment"] = data.augment or "standard"  # checked when the search took it
    else:
        given = reuse.get("given_data")
        label = "the run" if resume else f"the search {cfg.get('source') or cfg['data']}"
        check_data_given(cfg, given, label)
        if not resume:
            cfg["data"] = _data_name(given) or cfg["data"]
        data = load_data(cfg["data"], cfg["opts"]["data"], given, task=task, test=test)
        settle_data(cfg, data, given, test, resume=resume, label=label)
    task_ = data.task
    # The network's initial weights follow the seed too (the trainer seeds again for the rest).
    seed_everything(cfg["seed"])
    if cfg["baseline"] is not None:
        model = baseline(cfg["baseline"], task_, channels=cfg["channels"], layers=cfg["layers"])
        name = f"{cfg['baseline']} baseline"
        table = None
    else:
        space = reuse.get("space")
        if space is None:
            space = instantiate(
                registry.load("space", cfg["space"]),
                cfg["opts"]["space"],
                f"space {cfg['space']!r}",
            )
        genotype = Genotype.from_dict(cfg["genotype"])
        meta = on_meta(lambda: space.build(genotype, task_))
        if meta is not None:  # refused before it is allocated (see nasplug.engine.memory)
            check_fits(
                meta,
                pick_device(cfg["device"]),
                f"the {cfg['space']} network",
                "smaller --channels or --layers, or another --device",
            )
        try:
            model = space.build(genotype, task_)
        except Exception as e:  # noqa: BLE001 - a space rejects a genotype in its own words
            detail = " ".join(str(e).split())[:300]
            raise ValueError(
                f"the genotype does not fit space {cfg['space']!r}: {type(e).__name__}: {detail}"
            ) from e
        name = f"{cfg['space']} genotype"
        table = functools.partial(benchmark_metrics, space, genotype)
    if cfg["cutout"] and len(task_.input_shape) != 3:
        raise ValueError(
            f"--cutout needs image data; {cfg['data']} has input shape {tuple(task_.input_shape)}"
        )
    return data, model, name, table


def fit(
    cfg: Mapping[str, Any],
    run: Any,
    prepared: tuple[Data, nn.Module, str, TableLookup | None],
    *,
    quiet: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], nn.Module, Normalisation | None]:
    """Train the network of ``cfg`` (see :func:`train_config`); write ``train.json`` and
    ``inputs.json`` into ``run`` if there is one. Returns the result, the history, the trained
    network and what its inputs were normalised with."""
    from nasplug.api import warn_batch_size
    from nasplug.engine.trainer import Trainer
    from nasplug.run.inputs import Normalisation
    from nasplug.run.rundir import INPUTS

    data, model, name, table = prepared
    task = data.task
    trainer = Trainer(
        data,
        run=run,
        device=cfg["device"],
        seed=cfg["seed"],
        quiet=quiet,
        augment=cfg.get("augment", "off"),
        stream=cfg.get("stream", "auto"),
        workers=cfg.get("workers", 2),
    )
    params = count_params(model)
    trainer.say(
        f"nasplug: training a {name} ({params} parameters) on {cfg['data']} "
        f"({trainer.size('train')} train / {trainer.size('test')} test) on {trainer.device}"
    )
    if data.note:
        trainer.say(f"nasplug: {data.note}")
    warn_batch_size(cfg["batch_size"], trainer.size("train"), "the training data")
    trainer.log("train_start", config=dict(cfg), params=params, device=str(trainer.device))
    t0 = time.time()
    hist = trainer.fit(
        model,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        phase="train",
        train_split="train",
        eval_split="test",
        lr=cfg["lr"],
        drop_path=cfg["drop_path"],
        cutout=cfg["cutout"],  # None: the trainer's default for the data and augmentation
        aux_weight=0.4 if cfg["auxiliary"] else 0.0,
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
        "method": cfg["baseline"] or "discrete",
        "data": cfg["data"],
        "genotype": cfg["genotype"],
        "source": cfg["source"],
        "search_seconds": (cfg["search"] or {}).get("search_seconds"),
        **(table(trainer.say) if table is not None else {}),
    }
    normalisation = Normalisation.of(task.input_shape, *trainer.input_stats)
    if run is not None:
        run.write_json(TRAIN_JSON, result)
        if normalisation is not None:
            run.write_json(INPUTS, normalisation.to_dict())
    trainer.log("train_end", **{k: v for k, v in result.items() if k != "genotype"})
    return result, hist, model, normalisation


def _train_seconds(run: Any) -> float:
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


def _finished_training(run: Any, cfg: dict[str, Any], settings: Mapping[str, Any]) -> TrainRun:
    """A finished training run given to resume: its stored result and the trained network
    from its last checkpoint; nothing is trained, locked or written."""
    from nasplug.api import TrainRun, finished_line
    from nasplug.run import inputs
    from nasplug.run.rundir import RunError

    cfg = {"augment": "off", "stream": "auto", "workers": 2, **cfg}
    if settings.get("device") is not None:
        cfg["device"] = settings["device"]
    reuse: dict[str, Any] = {}
    if settings.get("data") is not None and not isinstance(settings["data"], str):
        reuse["given_data"] = settings["data"]
    _, model, _, _ = prepare_train(
        cfg, reuse, task=settings.get("task"), test=settings.get("test"), resume=True
    )
    ckpt = run.load_checkpoint("train")
    if ckpt is None:
        raise RunError(f"{run.path} has {TRAIN_JSON} but no checkpoint of its network")
    try:
        model.load_state_dict(ckpt["state"]["model"])
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
        result=run.read_json(TRAIN_JSON),
        history=history,
        model=model,
        config=cfg,
        run_dir=run.path,
        normalisation=normalisation,
    )


def run_training(
    source: Any,
    *,
    resume: str | Path | None,
    out: str | Path | None,
    quiet: bool,
    settings: Mapping[str, Any],
) -> TrainRun:
    """:func:`nasplug.train`: check everything, create the run directory, train, report."""
    from nasplug.api import TrainRun, noting_outcome
    from nasplug.engine.rng import fixed_threads, resumed_threads
    from nasplug.run.rundir import RunDir, RunError, check_new_run_path

    run = None
    try:
        if resume is not None:
            run = RunDir.open(resume)
            cfg = run.config()
            if not isinstance(cfg, dict) or cfg.get("command") != "train":
                raise RunError(
                    f"{resume} is not a training run; resume searches with "
                    f"`nasplug run --resume {resume}`"
                )
            if run.read_json(TRAIN_JSON) is not None:
                return _finished_training(run, cfg, settings)
            run.lock()
            cfg = {"augment": "off", "stream": "auto", "workers": 2, "threads": None, **cfg}
            cfg["threads"] = resumed_threads(cfg["threads"], settings.get("threads"))
            if settings.get("device") is not None:
                cfg["device"] = settings["device"]
            reuse: dict[str, Any] = {}
            if settings.get("data") is not None and not isinstance(settings["data"], str):
                reuse["given_data"] = settings["data"]
            prepared = prepare_train(
                cfg, reuse, task=settings.get("task"), test=settings.get("test"), resume=True
            )
            run.log("resumed", device=cfg["device"])
        else:
            cfg, reuse = train_config(source, settings)
            if out is not None:
                check_new_run_path(out, resume="nasplug train --resume")
            # Bad input stops here, before a run directory exists.
            prepared = prepare_train(
                cfg, reuse, task=settings.get("task"), test=settings.get("test")
            )
            if out is not None:
                run = RunDir.create(out, cfg)

        def work() -> tuple[dict[str, Any], list[dict[str, Any]], nn.Module, Any]:
            return fit(cfg, run, prepared, quiet=quiet)

        with fixed_threads(cfg["threads"]):
            if run is None:
                result, hist, model, normalisation = work()
            else:
                result, hist, model, normalisation = noting_outcome(
                    work, run, "train", created=resume is None
                )
    finally:
        if run is not None:
            run.close()
    return TrainRun(
        result=result,
        history=hist,
        model=model,
        config=cfg,
        run_dir=run.path if run is not None else None,
        normalisation=normalisation,
    )
