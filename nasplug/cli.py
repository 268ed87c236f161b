"""The ``nasplug`` command line: run, list, show, train, compare, report.

Every command runs under one handler: an expected failure (bad input, a file-system error, a
plugin that fails to load) prints one line and exits 2; a run that failed after it had kept a
checkpoint or result, or whose loss became NaN, exits 1; an interrupt exits 130. ``--debug`` or
``NASPLUG_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

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
    "out": None,
    "storage": None,
    "study": None,
    "tensorboard": False,
    "compile": None,
}
#: config key -> (plugin axis, option table in TOML and config.json)
PLUGIN_KEYS = {"space": "space", "relax": "relaxation", "strategy": "strategy", "data": "dataset"}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class RunFailed(Exception):
    """A run failed after it had kept something (a checkpoint, a result); its cause is printed
    as one line, exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get("NASPLUG_DEBUG", "") not in ("", "0")
    try:
        parser = _parser()
        args = parser.parse_args(argv)
        debug = debug or bool(getattr(args, "debug", False))
        if args.command is None:
            parser.print_help()
            return 2
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SystemExit:
        raise
    except BaseException as e:  # the one place that turns any failure into one line
        return _fail(e, debug)


def _fail(e: BaseException, debug: bool) -> int:
    """Print ``e`` as one line (with the traceback first when debugging); return the exit status."""
    from nasplug.credentials import mask

    if debug:
        traceback.print_exception(e, file=sys.stderr)
    code, text = _describe(e)
    if isinstance(e, BrokenPipeError) or isinstance(e.__cause__, BrokenPipeError):
        # Nothing more reaches a closed pipe; keep the interpreter from failing on it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    try:
        print(f"nasplug: {mask(text)}", file=sys.stderr, flush=True)
    except OSError:
        pass
    return code


def _describe(e: BaseException) -> tuple[int, str]:
    """The exit status and the line for ``e``.

    Nothing is imported here: an interrupt may have stopped torch half-way through its import.
    An error class of a module that was never imported cannot be the class of ``e``.
    """
    expected: list[type] = [UsageError, ValueError]  # OptionError is a ValueError
    for module, name in (("nasplug.registry", "PluginError"), ("nasplug.rundir", "RunError")):
        if module in sys.modules:
            expected.append(getattr(sys.modules[module], name))
    code = 2
    if isinstance(e, RunFailed) and e.__cause__ is not None:
        # A damaged or mismatched run directory is bad input even when found mid-run.
        run_error = expected[-1] if "nasplug.rundir" in sys.modules else ()
        code, e = (2 if isinstance(e.__cause__, run_error) else 1), e.__cause__
    notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
    if isinstance(e, KeyboardInterrupt):
        return 130, "interrupted" + (notes or "; nothing was written")
    if isinstance(e, BrokenPipeError):
        return code, "error: output closed before it was all written (broken pipe)"
    if type(e).__name__ == "NonFiniteLoss":
        return 1, f"error: {_one_line(e)}{notes}"
    if isinstance(e, OSError):
        return code, f"error: {_os_text(e)}{notes}"
    if isinstance(e, MemoryError):
        return code, f"error: out of memory{notes}"
    if isinstance(e, tuple(expected)):
        return code, f"error: {_one_line(e)}{notes}"
    return 1, (
        f"error: unexpected {type(e).__name__}: {_one_line(e)}{notes} (rerun with --debug "
        f"for the traceback)"
    )


def _os_text(e: OSError) -> str:
    what = e.strerror or _one_line(e)
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {what}"
    if e.filename is not None:
        return f"{e.filename}: {what}"
    return what


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 1000 else text[:1000] + " ..."


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too: the usage text is one ``--help`` away."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(
            2, f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n"
        )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nasplug", description="Neural architecture search with plugins.")
    debug_help = "print the full traceback of a failure (also NASPLUG_DEBUG=1)"
    p.add_argument("--debug", action="store_true", help=debug_help)
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a search")
    r.add_argument(
        "--config",
        help="TOML file: a [run] table of the flags below and [space], "
        "[relax], [strategy], [data] tables of plugin options",
    )
    r.add_argument("--space", help=f"search space (default {DEFAULTS['space']})")
    r.add_argument("--relax", help=f"relaxation (default {DEFAULTS['relax']})")
    r.add_argument("--strategy", help=f"strategy (default {DEFAULTS['strategy']})")
    r.add_argument("--data", help=f"dataset (default {DEFAULTS['data']})")
    for axis in PLUGIN_KEYS:
        r.add_argument(
            f"--{axis}-opt",
            action="append",
            metavar="KEY=VALUE",
            default=[],
            help=f"option of the {axis} plugin (repeatable)",
        )
    r.add_argument("--epochs", type=int, help=f"search epochs (default {DEFAULTS['epochs']})")
    r.add_argument(
        "--batch-size",
        type=int,
        dest="batch_size",
        help=f"batch size (default {DEFAULTS['batch_size']})",
    )
    r.add_argument("--seed", type=int, help="random seed (default 0)")
    r.add_argument(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps (default auto); with "
        "--resume, moves the run to this device",
    )
    r.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic kernels (slower on CUDA)",
    )
    r.add_argument("--out", help="run directory (default runs/TIME-SPACE-RELAX-STRATEGY)")
    r.add_argument(
        "--storage",
        help="Optuna storage for black-box strategies: a URL, env:NAME "
        "(the URL is in environment variable NAME) or file:PATH (the "
        "URL is the file's first line); a password in a URL is never "
        "stored, so prefer env: or file: for runs you resume "
        "(default: SQLite file in the run directory)",
    )
    r.add_argument("--study", help="Optuna study name (default: the run directory's name)")
    r.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also log scalars for TensorBoard into RUN_DIR/tensorboard "
        "(needs the tensorboard package)",
    )
    r.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        metavar="BACKEND",
        help="torch.compile the networks (backend: inductor when not given); the "
        "compile time is printed and logged",
    )
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list registered plugins")
    ls.set_defaults(func=cmd_list)

    sh = sub.add_parser("show", help="print a run's config, final metrics and genotype")
    sh.add_argument("run_dir")
    sh.set_defaults(func=cmd_show)

    _add_extra_commands(sub)
    for command in sub.choices.values():
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help
        )
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
            raise OptionError(
                f"config file {args.config}: unknown table {sorted(unknown)[0]!r}; "
                f"accepted: run, {', '.join(PLUGIN_KEYS)}"
            )
        for axis in ("run", *PLUGIN_KEYS):
            if not isinstance(doc.get(axis, {}), dict):
                raise OptionError(
                    f"config file {args.config}: {axis} must be a table "
                    f"([{axis}]), got {doc[axis]!r}"
                )
        for key, value in doc.get("run", {}).items():
            key = key.replace("-", "_")
            if key not in DEFAULTS:
                raise OptionError(
                    f"config file {args.config}: unknown key {key!r} in [run]; "
                    f"accepted: {', '.join(DEFAULTS)}"
                )
            cfg[key] = value
        for axis in PLUGIN_KEYS:
            opts[axis].update(doc.get(axis, {}))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    for axis in PLUGIN_KEYS:
        opts[axis].update(parse_pairs(getattr(args, f"{axis}_opt"), f"--{axis}-opt"))
    cfg["opts"] = opts
    check_config(cfg)
    return cfg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_config(cfg: dict[str, Any]) -> None:
    """Raise OptionError unless every setting of ``cfg`` has an accepted type and value.

    Also checks that the device exists here, so that nothing is written for a run that
    cannot start.
    """
    from nasplug.options import OptionError
    from nasplug.trainer import pick_device

    for key in PLUGIN_KEYS:
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise OptionError(f"{key} must be a plugin name (text), got {cfg.get(key)!r}")
    for key in ("epochs", "batch_size"):
        if not _is_int(cfg.get(key)) or cfg[key] < 1:
            raise OptionError(f"{key} must be a positive integer, got {cfg.get(key)!r}")
    if not _is_int(cfg.get("seed")) or not 0 <= cfg["seed"] < 2**63:
        raise OptionError(f"seed must be an integer from 0 to 2**63-1, got {cfg.get('seed')!r}")
    for key in ("deterministic", "tensorboard"):
        if not isinstance(cfg.get(key), bool):
            raise OptionError(f"{key} must be true or false, got {cfg.get(key)!r}")
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
        raise OptionError(_one_line(e)) from e
    _compile_backend(cfg.get("compile"))


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

    return {
        f"{axis}:{cfg[key]}": f"{(i := registry.info(axis, cfg[key])).dist} {i.version}"
        for key, axis in PLUGIN_KEYS.items()
    }


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
    from nasplug.rundir import RunDir

    run = None
    try:
        if args.resume:
            run = RunDir.open(args.resume, writer=writer).lock()
            cfg = _resumed_config(run, args)
        else:
            cfg = resolve_config(args)
        storage, plugins, data = _prepare(cfg, args, writer=writer)
        if args.resume:
            run.log("resumed", device=cfg["device"])
        else:
            from nasplug import ddp

            cfg["versions"] = plugin_versions(cfg)
            out = ddp.broadcast_object(cfg["out"] or _default_out(cfg))
            cfg["out"] = str(out)
            run = RunDir.create(out, cfg, writer=writer)
        return noting_outcome(
            lambda: execute(
                cfg, run, plugins, data, quiet=args.quiet or not writer, storage=storage
            ),
            run,
            "run",
            created=not args.resume,
        )
    finally:
        if run is not None:
            run.close()


def _resumed_config(run: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The stored config of ``run``, checked, with the settings a resume may change."""
    from nasplug.credentials import mask
    from nasplug.options import OptionError

    cfg = run.config()
    if not isinstance(cfg, dict) or cfg.get("command") == "train":
        raise OptionError(
            f"{run.path} is not a search run; continue training runs with "
            f"`nasplug train --resume {run.path}`"
        )
    for key in (
        "space",
        "relax",
        "strategy",
        "data",
        "epochs",
        "batch_size",
        "seed",
        "device",
        "opts",
    ):
        if key not in cfg:
            raise OptionError(
                f"{run.path}/config.json lacks {key!r}; it was not written by `nasplug run`"
            )
    cfg = {**DEFAULTS, **cfg}
    if args.device is not None:
        cfg["device"] = args.device
    if args.storage is not None:
        if cfg.get("storage") is None or mask(args.storage) != mask(cfg["storage"]):
            raise OptionError(
                f"--storage with --resume must give the run's own storage again "
                f"({mask(str(cfg.get('storage')))}), got {mask(args.storage)}"
            )
        cfg["storage"] = args.storage
    check_config(cfg)
    return cfg


def _prepare(
    cfg: dict[str, Any], args: argparse.Namespace, *, writer: bool
) -> tuple[str | None, dict[str, Any], Any]:
    """Every check that can fail before anything is written: the output path, the storage,
    the device and compiler, the plugins, the data, and whether the space takes the data."""
    from nasplug import ddp
    from nasplug.credentials import has_secret, resolve_storage
    from nasplug.rundir import check_new_run_path

    ddp.check_batch_size(cfg["batch_size"])
    if writer and not args.resume and cfg["out"]:
        check_new_run_path(cfg["out"])
    storage = resolve_storage(cfg.get("storage"))
    backend = _compile_backend(cfg.get("compile"))
    if backend is not None:
        from nasplug.compiling import check_compile
        from nasplug.trainer import pick_device

        check_compile(backend, pick_device(cfg["device"]))
    if cfg.get("tensorboard"):
        from nasplug import report

        report.check_tensorboard()
    plugins = build_plugins(cfg)
    data = plugins["data"].load()
    _check_space_takes(plugins["space"], data, cfg)
    if writer and not args.resume and cfg.get("storage") and has_secret(cfg["storage"]):
        print(
            "nasplug: warning: the storage password is not stored (config.json shows ***); "
            "to resume, give --storage again, or pass the URL as env:NAME or file:PATH",
            file=sys.stderr,
        )
    return storage, plugins, data


def _check_space_takes(space: Any, data: Any, cfg: dict[str, Any]) -> None:
    """Build the supernet once on the data's task: a space that cannot take this data fails
    here, before a run directory exists."""
    try:
        space.choices()
        space.supernet(data.task)
    except Exception as e:  # a plugin's own error, whatever its type
        raise UsageError(
            f"space {cfg['space']!r} cannot take the data of {cfg['data']!r} "
            f"({data.task.kind}, input shape {tuple(data.task.input_shape)}): "
            f"{type(e).__name__}: {_one_line(e)}"
        ) from e


def noting_outcome(work: Callable[[], Any], run: Any, command: str, *, created: bool) -> Any:
    """``work()``; a failure says what became of ``run`` (see :func:`note_outcome`) and, where
    the run had kept something, becomes a :class:`RunFailed` (exit status 1)."""
    try:
        return work()
    except Exception as e:
        if note_outcome(e, run, command, created=created):
            raise  # nothing ran that could be kept: an input error stays exit status 2
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


def _default_out(cfg: dict[str, Any]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{cfg['space']}-{cfg['relax']}-{cfg['strategy']}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return str(path)


def execute(
    cfg: dict[str, Any],
    run: Any,
    plugins: dict[str, Any],
    data: Any,
    *,
    quiet: bool = False,
    storage: str | None = None,
) -> int:
    """Build the trainer, run the strategy and write the results into ``run``.

    ``storage`` is the storage URL itself (``cfg`` holds it masked or as ``env:``/``file:``).
    """
    from nasplug.credentials import resolve_storage
    from nasplug.interfaces import SearchContext
    from nasplug.trainer import Trainer

    sink = None
    if cfg.get("tensorboard") and run.writer:
        from nasplug import report

        sink = report.tensorboard_sink(run.path)
    trainer = Trainer(
        data,
        run=run,
        device=cfg["device"],
        seed=cfg["seed"],
        deterministic=bool(cfg["deterministic"]),
        quiet=quiet,
        sink=sink,
        compile=_compile_backend(cfg.get("compile")),
    )
    options = {
        "storage": storage or resolve_storage(cfg.get("storage")),
        "study": cfg.get("study"),
        "run_dir": str(run.path),
        "tensorboard": cfg.get("tensorboard"),
    }
    ctx = SearchContext(
        space=plugins["space"],
        relaxation=plugins["relax"],
        trainer=trainer,
        data=data,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        seed=cfg["seed"],
        options=options,
    )
    trainer.say(
        f"nasplug: {cfg['strategy']} search of {cfg['space']} with {cfg['relax']} on "
        f"{cfg['data']} ({data.task.kind}, {trainer.size('train')} train / "
        f"{trainer.size('test')} test) on {trainer.device}; run directory {run.path}"
    )
    run.log("start", config=cfg, device=str(trainer.device))
    t0 = time.time()
    result = plugins["strategy"].search(ctx)
    metrics = {
        **result.metrics,
        "wall_seconds": time.time() - t0,
        "metric": data.task.metric,
        "higher_is_better": data.task.higher_is_better,
    }
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
    return (
        f"{line} continuous supernet, {metrics[f'val_{m}_discrete']:.4f} derived network "
        f"in the supernet{vertex}"
    )


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
        print(
            f"nasplug: error: the {len(everyone)} processes derived different genotypes "
            f"({', '.join(g for g, _ in everyone)}); results not written",
            file=sys.stderr,
        )
        return False
    if len({h for _, h in everyone}) > 1 and ddp.rank() == 0:
        print(
            "nasplug: warning: the processes agree on the genotype but their search histories "
            "differ (non-deterministic kernels?)",
            file=sys.stderr,
        )
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

    headings = {
        "space": "spaces",
        "relaxation": "relaxations",
        "strategy": "strategies",
        "dataset": "datasets",
    }
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
                        cause = e.__cause__
                        why = (
                            f"{type(cause).__name__}: {_one_line(cause)}" if cause else _one_line(e)
                        )
                        note = f"  [BROKEN: {why}]"
                print(f"  {name:<26} {p.dist} {p.version} ({origin}){note}")
    if os.environ.get("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        print("(NASPLUG_DISABLE_PLUGIN_AUTOLOAD set: third-party plugins not loaded)")
    return 0


# ---- show ------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from nasplug import report
    from nasplug.rundir import RunDir

    run = RunDir.open(args.run_dir, writer=False)
    print(report.summary_text(run))
    return 0
