"""The ``nasplug`` command line: run, list, show, train, compare, report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]

DEFAULTS: dict[str, Any] = {
    "space": "cell", "relax": "softmax", "strategy": "darts", "data": "fashion-mnist-small",
    "epochs": 8, "batch_size": 64, "seed": 0, "device": "auto", "deterministic": False,
    "out": None, "storage": None, "study": None, "tensorboard": False, "compile": None,
}
#: config key -> (plugin axis, option table in TOML and config.json)
PLUGIN_KEYS = {"space": "space", "relax": "relaxation", "strategy": "strategy", "data": "dataset"}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from nasplug.options import OptionError
    from nasplug.registry import PluginError
    from nasplug.rundir import RunError
    from nasplug.trainer import NonFiniteLoss

    try:
        return int(args.func(args) or 0)
    except (UsageError, OptionError, PluginError, RunError, ValueError, FileNotFoundError) as e:
        print(f"nasplug: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"nasplug: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nasplug: interrupted; resume with `nasplug run --resume RUN_DIR`", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasplug", description="Neural architecture search with plugins.")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a search")
    r.add_argument("--config", help="TOML file: a [run] table of the flags below and [space], "
                                    "[relax], [strategy], [data] tables of plugin options")
    r.add_argument("--space", help=f"search space (default {DEFAULTS['space']})")
    r.add_argument("--relax", help=f"relaxation (default {DEFAULTS['relax']})")
    r.add_argument("--strategy", help=f"strategy (default {DEFAULTS['strategy']})")
    r.add_argument("--data", help=f"dataset (default {DEFAULTS['data']})")
    for axis in PLUGIN_KEYS:
        r.add_argument(f"--{axis}-opt", action="append", metavar="KEY=VALUE", default=[],
                       help=f"option of the {axis} plugin (repeatable)")
    r.add_argument("--epochs", type=int, help=f"search epochs (default {DEFAULTS['epochs']})")
    r.add_argument("--batch-size", type=int, dest="batch_size",
                   help=f"batch size (default {DEFAULTS['batch_size']})")
    r.add_argument("--seed", type=int, help="random seed (default 0)")
    r.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    r.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels (slower on CUDA)")
    r.add_argument("--out", help="run directory (default runs/TIME-SPACE-RELAX-STRATEGY)")
    r.add_argument("--storage", help="Optuna storage URL for black-box strategies "
                                     "(default: SQLite file in the run directory)")
    r.add_argument("--study", help="Optuna study name (default: the run directory's name)")
    r.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log scalars for TensorBoard into RUN_DIR/tensorboard "
                        "(needs the tensorboard package)")
    r.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile the networks (backend: inductor when not given); the "
                        "compile time is printed and logged")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list registered plugins")
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="print a run's config, final metrics and genotype")
    sh.add_argument("run_dir")
    sh.set_defaults(func=cmd_show)

    _add_extra_commands(sub)
    return p


def _add_extra_commands(sub: argparse._SubParsersAction) -> None:
    """Commands implemented in their own modules, imported only when called."""
    from nasplug import evaluate, report

    evaluate.add_commands(sub)
    report.add_commands(sub)


# ---- run -------------------------------------------------------------------------------------
def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the TOML file, then the flags."""
    from nasplug.options import OptionError, parse_pairs, read_toml

    cfg = dict(DEFAULTS)
    opts: dict[str, dict[str, Any]] = {k: {} for k in PLUGIN_KEYS}
    if args.config:
        doc = read_toml(args.config)
        unknown = set(doc) - {"run", *PLUGIN_KEYS}
        if unknown:
            raise OptionError(f"config file {args.config}: unknown table {sorted(unknown)[0]!r}; "
                              f"accepted: run, {', '.join(PLUGIN_KEYS)}")
        for key, value in doc.get("run", {}).items():
            key = key.replace("-", "_")
            if key not in DEFAULTS:
                raise OptionError(f"config file {args.config}: unknown key {key!r} in [run]; "
                                  f"accepted: {', '.join(DEFAULTS)}")
            cfg[key] = value
        for axis in PLUGIN_KEYS:
            table = doc.get(axis, {})
            if not isinstance(table, dict):
                raise OptionError(f"config file {args.config}: [{axis}] must be a table of options")
            opts[axis].update(table)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    for axis in PLUGIN_KEYS:
        opts[axis].update(parse_pairs(getattr(args, f"{axis}_opt"), f"--{axis}-opt"))
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise OptionError(f"{key} must be a positive integer, got {cfg[key]!r}")
    cfg["opts"] = opts
    return cfg


def build_plugins(cfg: dict[str, Any]) -> dict[str, Any]:
    """Instantiate the four plugins of a config (only the ones named are imported)."""
    from nasplug import registry
    from nasplug.options import instantiate

    out = {}
    for key, axis in PLUGIN_KEYS.items():
        name = cfg[key]
        cls = registry.load(axis, name)
        out[key] = instantiate(cls, cfg["opts"][key], f"{axis} {name!r}")
    return out


def plugin_versions(cfg: dict[str, Any]) -> dict[str, str]:
    from nasplug import registry

    return {f"{axis}:{cfg[key]}": f"{(i := registry.info(axis, cfg[key])).dist} {i.version}"
            for key, axis in PLUGIN_KEYS.items()}


def cmd_run(args: argparse.Namespace) -> int:
    from nasplug import ddp

    rank = ddp.setup()
    try:
        code = _run(args, writer=rank == 0)
        # Leave together: a process that tears down while rank 0 still writes can abort.
        ddp.barrier()
        return code
    finally:
        ddp.teardown()


def _run(args: argparse.Namespace, *, writer: bool) -> int:
    from nasplug import ddp
    from nasplug.rundir import RunDir

    if args.resume:
        run = RunDir.open(args.resume, writer=writer)
        cfg = run.config()
    else:
        cfg = resolve_config(args)
    ddp.check_batch_size(cfg["batch_size"])
    # Bad options or bad data fail here, before anything is written.
    backend = _compile_backend(cfg.get("compile"))
    if backend is not None:
        from nasplug.trainer import check_compile, pick_device

        check_compile(backend, pick_device(cfg["device"]))
    if cfg.get("tensorboard"):
        from nasplug import report

        report.check_tensorboard()
    plugins = build_plugins(cfg)
    data = plugins["data"].load()
    if args.resume:
        run.log("resumed")
    else:
        cfg["versions"] = plugin_versions(cfg)
        out = ddp.broadcast_object(cfg["out"] or _default_out(cfg))
        cfg["out"] = str(out)
        run = RunDir.create(out, cfg, writer=writer)
    return execute(cfg, run, plugins, data, quiet=args.quiet or not writer)


def _default_out(cfg: dict[str, Any]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{cfg['space']}-{cfg['relax']}-{cfg['strategy']}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return str(path)


def execute(cfg: dict[str, Any], run: Any, plugins: dict[str, Any], data: Any, *,
            quiet: bool = False) -> int:
    """Build the trainer, run the strategy and write the results into ``run``."""
    from nasplug.trainer import SearchContext, Trainer

    sink = None
    if cfg.get("tensorboard") and run.writer:
        from nasplug import report

        sink = report.tensorboard_sink(run.path)
    trainer = Trainer(data, run=run, device=cfg["device"], seed=cfg["seed"],
                      deterministic=bool(cfg["deterministic"]), quiet=quiet, sink=sink,
                      compile=_compile_backend(cfg.get("compile")))
    ctx = SearchContext(space=plugins["space"], relaxation=plugins["relax"], trainer=trainer,
                        data=data, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                        seed=cfg["seed"], options={"storage": cfg.get("storage"),
                                                   "study": cfg.get("study"), "run_dir": str(run.path),
                                                   "tensorboard": cfg.get("tensorboard")})
    trainer.say(f"nasplug: {cfg['strategy']} search of {cfg['space']} with {cfg['relax']} on "
                f"{cfg['data']} ({data.task.kind}, {trainer.size('train')} train / "
                f"{trainer.size('test')} test) on {trainer.device}; run directory {run.path}")
    run.log("start", config=cfg, device=str(trainer.device))
    t0 = time.time()
    result = plugins["strategy"].search(ctx)
    metrics = {**result.metrics, "wall_seconds": time.time() - t0, "metric": data.task.metric,
               "higher_is_better": data.task.higher_is_better}
    if not _ranks_agree(result, metrics):
        return 1
    run.write_json("genotype.json", result.genotype.to_dict())
    run.write_json("metrics.json", metrics)
    if result.candidates:
        run.write_json("candidates.json", list(result.candidates))
    run.log("end", metrics=metrics, genotype=result.genotype.to_dict())
    if run.writer:
        _write_report(run)
        print(f"genotype: {plugins['space'].describe(result.genotype)}")
        m = data.task.metric
        shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
        print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        print(_validation_line(metrics, m))
        print(f"run directory: {run.path}")
    return 0


def _validation_line(metrics: dict[str, Any], m: str) -> str:
    """The search's validation metric; for a supernet, continuous and derived side by side."""
    line = f"validation {m}: {metrics.get(f'val_{m}', float('nan')):.4f}"
    if f"val_{m}_discrete" not in metrics:
        return line
    vertex = " (the supernet ended at the derived network)" if metrics.get("final_vertex") else ""
    return (f"{line} continuous supernet, {metrics[f'val_{m}_discrete']:.4f} derived network "
            f"in the supernet{vertex}")


def _compile_backend(value: Any) -> str | None:
    """The ``compile`` setting as a backend name: true means inductor, false or none eager."""
    if value is None or value is False or value == "":
        return None
    if value is True:
        return "inductor"
    if isinstance(value, str):
        return value
    raise UsageError(f"compile must be true, false or a backend name, got {value!r}")


def _ranks_agree(result: Any, metrics: dict[str, Any]) -> bool:
    """Under ``torchrun``: print one line per rank and check that all ranks found the same.

    The genotype must agree; the search history (mixing weights and metrics of every epoch,
    timings left out) should, and a difference is reported.
    """
    from nasplug import ddp

    if not ddp.is_distributed():
        return True
    timeless = [{k: v for k, v in rec.items() if "seconds" not in k} for rec in result.history]
    mine = (ddp.fingerprint(result.genotype.to_dict()),
            ddp.fingerprint([timeless, {k: v for k, v in metrics.items() if "seconds" not in k}]))
    # One write per line: the ranks share the terminal.
    sys.stderr.write(f"nasplug: rank {ddp.rank()}/{ddp.world_size()}: genotype {mine[0]}, "
                     f"search {mine[1]}\n")
    sys.stderr.flush()
    everyone = ddp.gather_object(mine)
    if len({g for g, _ in everyone}) > 1:
        print(f"nasplug: error: the {len(everyone)} processes derived different genotypes "
              f"({', '.join(g for g, _ in everyone)}); results not written", file=sys.stderr)
        return False
    if len({h for _, h in everyone}) > 1 and ddp.rank() == 0:
        print("nasplug: warning: the processes agree on the genotype but their search histories "
              "differ (non-deterministic kernels?)", file=sys.stderr)
    return True


def _write_report(run: Any) -> None:
    """Pictures and report.md; a failure here never loses the search results."""
    from nasplug import report

    try:
        report.write_report(run.path)
    except Exception as e:  # reports are a convenience on top of the saved results
        print(f"nasplug: warning: report not written: {_one_line(e)}", file=sys.stderr)


# ---- list ------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from nasplug import registry

    headings = {"space": "spaces", "relaxation": "relaxations", "strategy": "strategies",
                "dataset": "datasets"}
    for axis in registry.AXES:
        print(f"{headings.get(axis, axis)}:")
        for name, regs in registry.available(axis).items():
            for p in regs:
                origin = "built-in" if p.builtin else "third-party"
                note = ""
                if len(regs) > 1:
                    note = "  [CONFLICT: registered by more than one distribution]"
                else:
                    try:
                        registry.load(axis, name)
                    except registry.PluginError as e:
                        note = f"  [BROKEN: {_one_line(e.__cause__ or e)}]"
                print(f"  {name:<26} {p.dist} {p.version} ({origin}){note}")
    if os.environ.get("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        print("(NASPLUG_DISABLE_PLUGIN_AUTOLOAD set: third-party plugins not loaded)")
    return 0


# ---- show ------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from nasplug.rundir import RunDir
    from nasplug import report

    run = RunDir.open(args.run_dir, writer=False)
    print(report.summary_text(run))
    return 0
