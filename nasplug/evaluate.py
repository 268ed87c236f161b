"""Training a searched genotype from scratch, baselines, and comparing runs.

``nasplug train RUN_DIR|GENOTYPE_FILE`` trains the discrete network of a genotype on the whole
search data (both halves) and reports its test metric, parameter count and wall time in a run
directory of its own (``train.json``). ``nasplug train --baseline resnet`` does the same for a
hand-designed network. ``nasplug compare RUN_DIR...`` puts search and training runs on one
dataset side by side in a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["add_commands", "compare_table", "count_params", "resolve_train", "train"]

TRAIN_JSON = "train.json"
_DEFAULT_DATA = "fashion-mnist-small"


def count_params(model: nn.Module) -> int:
    """Parameters used at inference: an ``auxiliary_head`` serves training only (as in DARTS)."""
    aux = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in aux.parameters()} if isinstance(aux, nn.Module) else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``compare``."""
    t = sub.add_parser(
        "train",
        help="train a searched genotype (or a baseline) from scratch",
        description="Train the discrete network of a search's genotype on the whole "
        "search data and report its test metric, parameters and time.",
    )
    t.add_argument(
        "source",
        nargs="?",
        metavar="RUN_DIR|GENOTYPE_FILE",
        help="a search run directory, or a file holding a genotype as JSON or as a "
        "DARTS 'Genotype(normal=[...], ...)' string",
    )
    t.add_argument("--baseline", help="train a hand-designed network instead: resnet")
    t.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    t.add_argument("--channels", type=int, help="space option 'channels' (baseline: width)")
    t.add_argument("--layers", type=int, help="space option 'layers' (baseline: blocks per stage)")
    t.add_argument("--cutout", type=int, default=0, help="cutout square size in pixels (0: off)")
    t.add_argument(
        "--drop-path",
        type=float,
        default=0.0,
        dest="drop_path",
        help="final drop-path probability, ramped from 0 (default 0)",
    )
    t.add_argument("--auxiliary", action="store_true", help="auxiliary head, loss weight 0.4")
    t.add_argument("--batch-size", type=int, default=64, dest="batch_size")
    t.add_argument("--lr", type=float, default=0.025, help="SGD learning rate, cosine schedule")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps (default auto); with "
        "--resume, moves the run to this device",
    )
    t.add_argument("--out", help="training run directory (default runs/TIME-train-NAME)")
    t.add_argument("--space", help="space of a genotype file (default: the genotype's own)")
    t.add_argument(
        "--space-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="space_opt",
        help="space option (repeatable)",
    )
    t.add_argument(
        "--data", help=f"dataset of a genotype file or baseline (default {_DEFAULT_DATA})"
    )
    t.add_argument(
        "--data-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="data_opt",
        help="dataset option (repeatable)",
    )
    t.add_argument("--resume", metavar="TRAIN_DIR", help="continue an interrupted training run")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser(
        "compare",
        help="a Markdown table of runs on one dataset",
        description="Compare search and training runs on the same dataset: metric, "
        "parameters and search/training cost.",
    )
    c.add_argument("runs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--out", help="also write the table to this file")
    c.add_argument(
        "--mean",
        action="store_true",
        help="one row per method: the mean and sample sd over its runs (e.g. seeds)",
    )
    c.set_defaults(func=_cmd_compare)


# ---- train -----------------------------------------------------------------------------------
def resolve_train(args: argparse.Namespace) -> dict[str, Any]:
    """The full config of a training run, from a search run directory or a genotype file."""
    from nasplug.baselines import BASELINES
    from nasplug.options import OptionError, parse_pairs
    from nasplug.rundir import RunDir, RunError
    from nasplug.types import Genotype

    for key in ("epochs", "batch_size"):
        if getattr(args, key) < 1:
            raise OptionError(f"--{key.replace('_', '-')} must be a positive integer")
    if args.cutout < 0 or not 0.0 <= args.drop_path < 1.0:
        raise OptionError("--cutout must be >= 0 and --drop-path in [0, 1)")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise OptionError(f"--lr must be a positive number, got {args.lr}")
    if not 0 <= args.seed < 2**63:
        raise OptionError(f"--seed must be an integer from 0 to 2**63-1, got {args.seed}")
    cfg: dict[str, Any] = {
        "command": "train",
        "source": None,
        "baseline": args.baseline,
        "genotype": None,
        "space": None,
        "data": None,
        "opts": {"space": {}, "data": {}},
        "search": None,
        **{
            k: getattr(args, k)
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
            )
        },
        "device": args.device or "auto",
    }
    if args.baseline is not None and args.baseline not in BASELINES:
        raise OptionError(f"unknown baseline {args.baseline!r}; accepted: {', '.join(BASELINES)}")
    if args.source is None and args.baseline is None:
        raise OptionError("train needs a run directory or genotype file, or --baseline")
    if args.source is not None:
        src = Path(args.source)
        cfg["source"] = str(src)
        if src.is_dir():
            run = RunDir.open(src, writer=False)
            rc = run.config()
            if rc.get("command") == "train":
                raise RunError(f"{src} is a training run; pass the search run it came from")
            cfg.update(space=rc["space"], data=rc["data"])
            cfg["opts"] = {
                "space": dict(rc.get("opts", {}).get("space", {})),
                "data": dict(rc.get("opts", {}).get("data", {})),
            }
            if args.baseline is None:
                metrics = run.read_json("metrics.json", {})
                cfg["search"] = {
                    "run": str(src),
                    "strategy": rc.get("strategy"),
                    "relax": rc.get("relax"),
                    "supernet": any(k.endswith("_continuous") for k in metrics),
                    "search_seconds": metrics.get("search_seconds", metrics.get("wall_seconds")),
                }
                g = run.read_json("genotype.json")
                if g is None:
                    raise RunError(
                        f"{src} has no genotype.json: its search has not finished; "
                        f"resume it with `nasplug run --resume {src}`"
                    )
                cfg["genotype"] = Genotype.from_dict(g).to_dict()
        elif src.is_file():
            if args.baseline is not None:
                raise OptionError(
                    "--baseline takes a search run directory (for its dataset), not a genotype file"
                )
            g = Genotype.parse(src.read_text())
            cfg["genotype"] = g.to_dict()
            cfg["space"] = g.space
        else:
            raise FileNotFoundError(f"{src} is neither a run directory nor a genotype file")
    cfg["space"] = args.space or cfg["space"]
    cfg["data"] = args.data or cfg["data"] or _DEFAULT_DATA
    cfg["opts"]["space"].update(parse_pairs(args.space_opt, "--space-opt"))
    cfg["opts"]["data"].update(parse_pairs(args.data_opt, "--data-opt"))
    if args.baseline is None:
        for key in ("channels", "layers"):
            if getattr(args, key) is not None:
                cfg["opts"]["space"][key] = getattr(args, key)
        if args.auxiliary:
            cfg["opts"]["space"]["auxiliary"] = True
    elif args.auxiliary:
        raise OptionError("--auxiliary needs a searched network; baselines have no auxiliary head")
    return cfg


def prepare_train(cfg: Mapping[str, Any]) -> tuple[Any, nn.Module, str]:
    """The data, the network and its name for ``cfg``: every input checked, nothing written."""
    from nasplug import registry
    from nasplug.baselines import baseline
    from nasplug.options import OptionError, instantiate
    from nasplug.trainer import pick_device
    from nasplug.types import Genotype

    if not isinstance(cfg.get("device"), str):
        raise OptionError(
            f"device must be text (auto, cpu, cuda, cuda:N or mps), got {cfg.get('device')!r}"
        )
    pick_device(cfg["device"])
    data = instantiate(
        registry.load("dataset", cfg["data"]), cfg["opts"]["data"], f"dataset {cfg['data']!r}"
    ).load()
    task = data.task
    if cfg["baseline"] is not None:
        model = baseline(cfg["baseline"], task, channels=cfg["channels"], layers=cfg["layers"])
        name = f"{cfg['baseline']} baseline"
    else:
        space = instantiate(
            registry.load("space", cfg["space"]), cfg["opts"]["space"], f"space {cfg['space']!r}"
        )
        genotype = Genotype.from_dict(cfg["genotype"])
        try:
            model = space.build(genotype, task)
        except Exception as e:  # a space rejects a genotype in its own words and types
            detail = " ".join(str(e).split())[:300]
            raise ValueError(
                f"the genotype does not fit space {cfg['space']!r}: {type(e).__name__}: {detail}"
            ) from e
        name = f"{cfg['space']} genotype"
    if cfg["cutout"] and len(task.input_shape) != 3:
        raise ValueError(
            f"--cutout needs image data; {cfg['data']} has input shape {tuple(task.input_shape)}"
        )
    return data, model, name


def train(
    cfg: Mapping[str, Any],
    run: Any,
    *,
    quiet: bool = False,
    prepared: tuple[Any, nn.Module, str] | None = None,
) -> dict[str, Any]:
    """Train the network of ``cfg`` (see :func:`resolve_train`) and write ``train.json``."""
    from nasplug.trainer import Trainer

    data, model, name = prepared or prepare_train(cfg)
    task = data.task
    trainer = Trainer(data, run=run, device=cfg["device"], seed=cfg["seed"], quiet=quiet)
    params = count_params(model)
    trainer.say(
        f"nasplug: training a {name} ({params} parameters) on {cfg['data']} "
        f"({trainer.size('train')} train / {trainer.size('test')} test) on {trainer.device}"
    )
    run.log("train_start", config=dict(cfg), params=params, device=str(trainer.device))
    hist = trainer.fit(
        model,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        phase="train",
        train_split="train",
        eval_split="test",
        lr=cfg["lr"],
        drop_path=cfg["drop_path"],
        cutout=cfg["cutout"],
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
        "seconds": _train_seconds(run),
        "epochs": len(hist),
        "method": cfg["baseline"] or "discrete",
        "data": cfg["data"],
        "genotype": cfg["genotype"],
        "source": cfg["source"],
        "search_seconds": (cfg["search"] or {}).get("search_seconds"),
    }
    run.write_json(TRAIN_JSON, result)
    run.log("train_end", **{k: v for k, v in result.items() if k != "genotype"})
    return result


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


def _cmd_train(args: argparse.Namespace) -> int:
    from nasplug.cli import noting_outcome
    from nasplug.rundir import RunDir, RunError, check_new_run_path

    run = None
    try:
        if args.resume:
            run = RunDir.open(args.resume).lock()
            cfg = run.config()
            if not isinstance(cfg, dict) or cfg.get("command") != "train":
                raise RunError(
                    f"{args.resume} is not a training run; resume searches with "
                    f"`nasplug run --resume {args.resume}`"
                )
            if args.device is not None:
                cfg["device"] = args.device
            prepared = prepare_train(cfg)
            run.log("resumed", device=cfg["device"])
        else:
            cfg = resolve_train(args)
            label = cfg["baseline"] or (Path(cfg["source"]).stem if cfg["source"] else "genotype")
            out = Path(args.out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-train-{label}")
            check_new_run_path(out, resume="nasplug train --resume")
            prepared = prepare_train(cfg)  # bad input stops here, before a run directory exists
            run = RunDir.create(out, cfg)
        result = noting_outcome(
            lambda: train(cfg, run, quiet=args.quiet, prepared=prepared),
            run,
            "train",
            created=not args.resume,
        )
    finally:
        if run is not None:
            run.close()
    m = result["metric"]
    print(
        f"test {m}: {result[f'test_{m}']:.4f}, {result['params']} parameters, "
        f"{result['seconds']:.1f}s training"
    )
    print(f"run directory: {run.path}")
    return 0


# ---- compare ---------------------------------------------------------------------------------
def compare_table(paths: Sequence[str | Path], mean: bool = False) -> str:
    """A Markdown table with a row per method; all runs must share one dataset.

    With ``mean``, runs of the same method (the same strategy, relaxation and relaxation options
    that differ from the defaults; e.g. several seeds) share one row: the mean and the sample
    standard deviation of every metric, the mean of parameters and seconds.
    """
    from nasplug.rundir import RunDir, RunError

    rows: list[dict[str, Any]] = []
    dataset: tuple[str, str] | None = None
    metric: tuple[str, bool] | None = None
    for path in paths:
        run = RunDir.open(path, writer=False)
        cfg = run.config()
        this = (cfg.get("data"), _opts_text(cfg.get("opts", {}).get("data", {})))
        if dataset is None:
            dataset, first = this, path
        elif this != dataset:
            raise ValueError(
                f"runs are on different datasets: {first} on {_data_text(dataset)}, "
                f"{path} on {_data_text(this)}; compare runs of one dataset"
            )
        name = TRAIN_JSON if cfg.get("command") == "train" else "metrics.json"
        res = run.read_json(name)
        if res is None:
            raise RunError(f"{path} has no {name}: the run has not finished")
        this_metric = (res["metric"], bool(res["higher_is_better"]))
        if metric is not None and this_metric != metric:
            raise ValueError(f"runs report different metrics: {metric[0]} and {this_metric[0]}")
        metric = this_metric
        rows.extend(_rows(str(path), cfg, res))
    assert dataset is not None and metric is not None
    m, higher = metric
    if mean:
        rows = _mean_rows(rows)
    lines = [
        f"Dataset: {_data_text(dataset)}. Metric: {m} ({'higher' if higher else 'lower'} is "
        f"better); val: the architecture half of the search data, test: the held-out test "
        f"split.",
        "",
        f"| method | val {m} | test {m} | parameters | search s | training s | run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    best = {}
    for col in ("val", "test"):
        vals = [r[col] for r in rows if _finite(r[col])]
        if vals:
            best[col] = max(vals) if higher else min(vals)
    for r in rows:
        cells = [_metric_cell(r[col], best.get(col), r.get(f"{col}_sd")) for col in ("val", "test")]
        lines.append(
            f"| {r['method']} | {cells[0]} | {cells[1]} | {_int_cell(r['params'])} | "
            f"{_secs_cell(r['search_s'])} | {_secs_cell(r['train_s'])} | {r['run']} |"
        )
    return "\n".join(lines) + "\n"


def _rows(path: str, cfg: Mapping[str, Any], res: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A supernet search gives a row for its continuous supernet and rows for its derived
    genotype one-hot in it, with the supernet's BatchNorm statistics and with re-estimated ones."""
    m = res["metric"]
    if cfg.get("command") == "train":
        search = cfg.get("search") or {}
        if cfg.get("baseline"):
            method = f"{cfg['baseline']} baseline"
        elif search.get("supernet"):
            relax = _relax_label(search.get("relax"), _search_relax_opts(search.get("run")))
            method = f"{search['strategy']} ({relax}): derived network, trained"
        elif search.get("strategy"):
            method = f"{search['strategy']} search: best candidate, trained"
        else:
            method = (
                f"{cfg.get('space')} genotype from {Path(str(cfg.get('source'))).name}, trained"
            )
        return [
            {
                "method": method,
                "val": None,
                "test": res.get(f"test_{m}"),
                "params": res.get("params"),
                "search_s": res.get("search_seconds"),
                "train_s": res.get("seconds"),
                "run": path,
            }
        ]
    strategy = cfg.get("strategy")
    relax = _relax_label(cfg.get("relax"), cfg.get("opts", {}).get("relax", {}))
    search_s = res.get("search_seconds", res.get("wall_seconds"))

    def search_row(method: str, val: Any, params: Any) -> dict[str, Any]:
        return {
            "method": method,
            "val": val,
            "test": None,
            "params": params,
            "run": path,
            "train_s": None,
            "search_s": search_s,
        }

    cont = res.get(f"val_{m}_continuous")
    if cont is not None:
        rows = [
            search_row(
                f"{strategy} ({relax}): continuous supernet", cont, res.get("supernet_params")
            ),
            search_row(
                f"{strategy} ({relax}): derived, one-hot in the supernet",
                res.get(f"val_{m}_discrete"),
                res.get("params"),
            ),
        ]
        if f"val_{m}_discrete_recalibrated" in res:
            rows.append(
                search_row(
                    f"{strategy} ({relax}): derived, one-hot, BatchNorm re-estimated",
                    res[f"val_{m}_discrete_recalibrated"],
                    res.get("params"),
                )
            )
        return rows
    n = res.get("candidates", res.get("trials"))
    what = f"best of {int(n)}" if _finite(n) else "best"
    return [search_row(f"{strategy} search ({what})", res.get(f"val_{m}"), res.get("params"))]


def _relax_label(relax: Any, opts: Mapping[str, Any]) -> str:
    """The relaxation's name with the options that differ from its current defaults."""
    from nasplug import registry
    from nasplug.options import OptionError, accepted, typed
    from nasplug.registry import PluginError

    try:
        cls = registry.load("relaxation", str(relax))
        defaults = accepted(cls)
        changed = {
            k: opts[k]
            for k, v in typed(cls, opts, f"relaxation {relax!r}").items()
            if v != defaults[k]
        }
    except (PluginError, OptionError):  # gone or changed since: name every option
        changed = dict(opts)
    return f"{relax} {_opts_text(changed)}" if changed else str(relax)


def _search_relax_opts(path: Any) -> Mapping[str, Any]:
    """The relaxation options of the search run a training run came from, if it is still there."""
    from nasplug.rundir import RunDir, RunError

    try:
        return RunDir.open(str(path), writer=False).config().get("opts", {}).get("relax", {})
    except (RunError, OSError, TypeError):
        return {}


def _mean_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: mean and sample sd of the metrics, mean of the rest."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    out = []
    for method, rs in groups.items():
        row: dict[str, Any] = {
            "method": f"{method} (n={len(rs)})" if len(rs) > 1 else method,
            "run": ", ".join(r["run"] for r in rs),
        }
        for col in ("val", "test", "params", "search_s", "train_s"):
            vals = [r[col] for r in rs if _finite(r[col])]
            row[col] = statistics.fmean(vals) if vals else None
            if col in ("val", "test") and len(vals) > 1:
                row[f"{col}_sd"] = statistics.stdev(vals)
        out.append(row)
    return out


def _opts_text(opts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={opts[k]}" for k in sorted(opts))


def _data_text(dataset: tuple[str, str]) -> str:
    name, opts = dataset
    return f"{name} ({opts})" if opts else str(name)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _metric_cell(v: Any, best: float | None, sd: float | None = None) -> str:
    if not _finite(v):
        return ""
    text = f"{v:.4f}"
    text = f"**{text}**" if best is not None and v == best else text
    return f"{text} ± {sd:.4f}" if sd is not None else text


def _int_cell(v: Any) -> str:
    return f"{int(v):,}" if _finite(v) else ""


def _secs_cell(v: Any) -> str:
    return f"{v:.1f}" if _finite(v) else ""


def _cmd_compare(args: argparse.Namespace) -> int:
    table = compare_table(args.runs, mean=args.mean)
    sys.stdout.write(table)
    if args.out:
        from nasplug.rundir import atomic_write

        atomic_write(Path(args.out), table.encode())
    return 0
