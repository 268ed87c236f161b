"""The ``nasplug`` command line: run, list, show, train, compare, curve, report.

Every command runs under one handler: an expected failure (bad input, a file-system error, a
plugin that fails to load) prints one line and exits 2; a run that failed after it had kept a
checkpoint or result, or whose loss became NaN, exits 1; an interrupt exits 130 and SIGTERM 143,
both after keeping the last checkpoint and releasing the run's lock. ``--debug`` or
``NASPLUG_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nasplug.core.errors import one_line
from nasplug.core.options import AUGMENT_MODES, STREAM_MODES
from nasplug.run.config import DEFAULTS, PLUGIN_KEYS, SearchConfig
from nasplug.run.results import RunFailed

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, Kubernetes and ``timeout`` send): handled as Ctrl-C is, so a run
    keeps its last checkpoint and releases its lock, but exits 143 (128 + SIGTERM)."""


def _terminate(signum: int, frame: Any) -> None:
    # A second SIGTERM (Slurm sends it to every process) must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is not threading.main_thread():  # signals reach the main one
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
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
    except BaseException as e:  # noqa: BLE001 - the one place that turns any failure into one line
        return _fail(e, debug)


def _fail(e: BaseException, debug: bool) -> int:
    """Print ``e`` as one line (with the traceback first when debugging); return the exit status."""
    from nasplug.run.credentials import mask

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
    An error class of a module that was never imported cannot be the class of ``e``, so each
    is looked up in the module that defines it.
    """
    expected: list[type] = [UsageError, ValueError]  # OptionError is a ValueError
    for module, name in (
        ("nasplug.core._discovery", "PluginError"),
        ("nasplug.core.errors", "RunError"),
    ):
        if module in sys.modules:
            expected.append(getattr(sys.modules[module], name))
    code = 2
    if isinstance(e, RunFailed) and e.__cause__ is not None:
        # A damaged or mismatched run directory is bad input even when found mid-run.
        run_error = expected[-1] if "nasplug.run.rundir" in sys.modules else ()
        code, e = (2 if isinstance(e.__cause__, run_error) else 1), e.__cause__
    notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
    if isinstance(e, Terminated):
        return 143, "terminated (SIGTERM)" + (notes or "; nothing was written")
    if isinstance(e, KeyboardInterrupt):
        return 130, "interrupted" + (notes or "; nothing was written")
    if isinstance(e, BrokenPipeError):
        return code, "error: output closed before it was all written (broken pipe)"
    if type(e).__name__ == "NonFiniteLoss":
        return 1, f"error: {one_line(e)}{notes}"
    if isinstance(e, OSError):
        return code, f"error: {_os_text(e)}{notes}"
    if isinstance(e, MemoryError):
        return code, f"error: out of memory{notes}"
    if isinstance(e, tuple(expected)):
        return code, f"error: {one_line(e)}{notes}"
    return 1, (
        f"error: unexpected {one_line(e, with_type=True)}{notes} (rerun with --debug "
        f"for the traceback)"
    )


def _os_text(e: OSError) -> str:
    what = e.strerror or one_line(e)
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {what}"
    if e.filename is not None:
        return f"{e.filename}: {what}"
    return what


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
    _add_data_flags(r)
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
        "--no-figures",
        dest="figures",
        action="store_false",
        default=None,
        help="write report.md without its pictures, saving a few seconds a run "
        "(`nasplug report RUN_DIR` draws them later)",
    )
    r.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        metavar="BACKEND",
        help="torch.compile the networks (backend: inductor when not given); the "
        "compile time is printed and logged",
    )
    r.add_argument(
        "--budget",
        action="append",
        metavar="RESOURCE=VALUE",
        help="what the derived network may cost: params=50k, flops=300M or latency=4ms "
        "(batch 1 on the run's device, from a table timed there once and cached); repeatable. "
        "Sparse relaxations meet it inside the search, black-box strategies sample within it",
    )
    r.add_argument(
        "--budget-penalty",
        type=float,
        dest="budget_penalty",
        metavar="LAMBDA",
        help="do not meet --budget by construction: add LAMBDA times the expected cost over the "
        "budget to the architecture loss (a soft penalty; the network may break the budget)",
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
    _add_train_and_compare(sub)
    _add_report(sub)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="(re)write a run's report.md and pictures, or a report of several runs",
        description="One run: write its report.md and pictures into it. With --out: a report "
        "of the runs given (one dataset) into that folder: the compare table and, for each "
        "cost the runs record (params, flops, latency), accuracy against it with the Pareto "
        "front marked.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="the folder of a report of the runs given")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    if args.out is None and len(args.run_dirs) > 1:
        from nasplug.core.options import OptionError

        raise OptionError(
            f"a report of {len(args.run_dirs)} runs needs --out DIR; accepted: one RUN_DIR, "
            f"or several with --out"
        )
    from nasplug.report import summary

    written = (
        summary.write_set_report(args.run_dirs, args.out)
        if args.out is not None
        else summary.write_report(args.run_dirs[0])
    )
    for path in written:
        print(path)
    return 0


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    """How batches are made: augmentation, streaming, loader workers and CPU threads."""
    p.add_argument(
        "--augment",
        choices=AUGMENT_MODES,
        help="image augmentation: random crop and flip, and cutout in training (standard), the "
        "same without flips (no-flip: digits, text, oriented images), or none (default: the "
        "dataset's own, e.g. no-flip for mnist, else standard)",
    )
    p.add_argument(
        "--stream",
        choices=STREAM_MODES,
        help="load batches through a DataLoader (on), hold the data on the device (off), or "
        "choose by size (auto, the default)",
    )
    p.add_argument(
        "--workers", type=int, help="DataLoader worker processes when streaming (default 2)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch's CPU threads (default: torch's own count); recorded in the run, and a "
        "resume uses it again so that the run repeats bit for bit",
    )


def _add_train_and_compare(sub: argparse._SubParsersAction) -> None:
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
        help="a search run directory, or a file holding a genotype as JSON, as a "
        "DARTS 'Genotype(normal=[...], ...)' string, or (with --space) in the space's own "
        "notation, such as nb201's arch strings",
    )
    t.add_argument("--baseline", help="train a hand-designed network instead: resnet")
    t.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    t.add_argument("--channels", type=int, help="space option 'channels' (baseline: width)")
    t.add_argument("--layers", type=int, help="space option 'layers' (baseline: blocks per stage)")
    t.add_argument(
        "--cutout",
        type=int,
        help="cutout square size in pixels (default: half the image side with --augment on; 0: off)",
    )
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
    _add_data_flags(t)
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
        "--data", help=f"dataset of a genotype file or baseline (default {DEFAULTS['data']})"
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
    t.set_defaults(func=cmd_train)

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
    c.add_argument(
        "--pareto",
        metavar="RESOURCE",
        help="params, flops or latency: add its column, mark the runs on the Pareto front of "
        "accuracy against it and write the plot beside --out (OUT-pareto-RESOURCE.png; "
        "without --out: pareto-RESOURCE.png here)",
    )
    c.set_defaults(func=cmd_compare)

    q = sub.add_parser(
        "curve",
        help="black-box strategies on a space's benchmark table: best found against queries",
        description="Run each black-box strategy on the space's benchmark table under many "
        "seeds (no data, no training) and write the query-budget curve: a Markdown table "
        "(mean ± sd of the best value at 25, 50, 100, 200 queries, and wall time), "
        "curve.json and curve.png.",
    )
    q.add_argument(
        "--space", default="nb201", help="a space with a benchmark table (default nb201)"
    )
    q.add_argument(
        "--space-opt", action="append", metavar="KEY=VALUE", default=[], help="space option"
    )
    q.add_argument(
        "--strategies",
        default="random,tpe,evolution",
        help="comma-separated black-box strategies (default random,tpe,evolution)",
    )
    q.add_argument(
        "--strategy-opt",
        action="append",
        metavar="NAME:KEY=VALUE",
        default=[],
        help="option of one strategy, e.g. evolution:population=20 (repeatable)",
    )
    q.add_argument("--seeds", type=int, default=100, help="seeds 0..N-1 (default 100)")
    q.add_argument(
        "--queries", type=int, default=200, help="table queries per search (default 200)"
    )
    q.add_argument("--out", help="folder for curve.md, curve.json and curve.png")
    q.set_defaults(func=cmd_curve)


# ---- run -------------------------------------------------------------------------------------
def resolve_config(args: argparse.Namespace) -> SearchConfig:
    """Defaults, then the TOML file, then the flags."""
    from nasplug.core.options import parse_pairs

    flags: dict[str, Any] = {key: getattr(args, key, None) for key in DEFAULTS}
    for key in PLUGIN_KEYS:
        flags[f"{key}_opts"] = parse_pairs(getattr(args, f"{key}_opt"), f"--{key}-opt")
    if args.config:
        return SearchConfig.from_toml(args.config, **flags)
    return SearchConfig(**{k: v for k, v in flags.items() if v is not None})


def cmd_run(args: argparse.Namespace) -> int:
    from nasplug.engine import ddp

    rank = ddp.setup()
    try:
        code = _run(args, writer=rank == 0)
        # Leave together: a process that tears down while rank 0 still writes can abort.
        ddp.barrier()
        return code
    finally:
        ddp.teardown()


def _run(args: argparse.Namespace, *, writer: bool) -> int:
    """``nasplug run``: the flags and TOML as :func:`nasplug.search`'s arguments; print the result."""
    from nasplug import api
    from nasplug.engine import ddp
    from nasplug.report import summary as report

    if args.resume:
        if writer:
            _warn_ignored_on_resume(args, "run", ("device", "storage", "threads", "quiet"))
        found = api.search(
            resume=args.resume,
            device=args.device,
            storage=args.storage,
            threads=args.threads,
            quiet=args.quiet,
        )
    else:
        cfg = resolve_config(args)
        out = ddp.broadcast_object(cfg.out or _default_out(cfg))
        found = api.search(config=cfg.replace(out=str(out)), quiet=args.quiet)
    if writer:
        m = found.data.task.metric
        shown = {k: v for k, v in found.metrics.items() if isinstance(v, float)}
        print(f"genotype: {found.describe()}")
        print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        if f"val_{m}" in found.metrics:  # a search by table trains nothing: no validation
            print(_validation_line(found.metrics, m))
        table = report.table_text(found.metrics)
        if table:
            print(f"benchmark table, the genotype's {table}")
        print(f"run directory: {found.run_dir}")
    return 0


def _warn_ignored_on_resume(args: argparse.Namespace, command: str, kept: Sequence[str]) -> None:
    """One line naming the flags that a resume ignores: the run keeps its stored settings."""
    from nasplug.run.rundir import CONFIG

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    defaults = vars(sub.choices[command].parse_args([]))
    ignored = [
        "RUN_DIR|GENOTYPE_FILE" if key == "source" else "--" + key.replace("_", "-")
        for key, default in defaults.items()
        if key not in ("resume", "func", *kept) and getattr(args, key, default) != default
    ]
    if ignored:
        flags = [f"--{k}" for k in kept if k != "quiet"]
        allowed = " and ".join([", ".join(flags[:-1]), flags[-1]] if len(flags) > 1 else flags)
        print(
            f"nasplug: warning: {', '.join(ignored)} ignored with --resume: a resumed run keeps "
            f"the settings of its {CONFIG} (only {allowed} may be given again)",
            file=sys.stderr,
        )


def _default_out(cfg: SearchConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{cfg.space}-{cfg.relax}-{cfg.strategy}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return str(path)


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


# ---- train and compare -----------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    """``nasplug train``: the flags as :func:`nasplug.train`'s arguments; print the result."""
    from nasplug import api
    from nasplug.core.options import parse_pairs
    from nasplug.report import summary as report

    if args.resume:
        _warn_ignored_on_resume(args, "train", ("device", "threads", "quiet"))
        trained = api.train(
            resume=args.resume, device=args.device, threads=args.threads, quiet=args.quiet
        )
    else:
        label = args.baseline or (Path(args.source).stem if args.source else "genotype")
        out = args.out or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-train-{label}"
        trained = api.train(
            args.source,
            baseline=args.baseline,
            data=args.data,
            data_opts=parse_pairs(args.data_opt, "--data-opt"),
            space=args.space,
            space_opts=parse_pairs(args.space_opt, "--space-opt"),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            cutout=args.cutout,
            drop_path=args.drop_path,
            auxiliary=args.auxiliary,
            channels=args.channels,
            layers=args.layers,
            seed=args.seed,
            device=args.device,
            augment=args.augment or DEFAULTS["augment"],
            stream=args.stream or DEFAULTS["stream"],
            workers=DEFAULTS["workers"] if args.workers is None else args.workers,
            threads=args.threads,
            out=out,
            quiet=args.quiet,
        )
    res = trained.result
    m = res["metric"]
    print(
        f"test {m}: {res[f'test_{m}']:.4f}, {res['params']} parameters, "
        f"{res['seconds']:.1f}s training"
    )
    table = report.table_text(res)
    if table:
        print(f"benchmark table, the genotype's {table}")
    print(f"run directory: {trained.run_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from nasplug import api
    from nasplug.run.rundir import atomic_write

    if args.pareto is None:
        table = api.compare(args.runs, mean=args.mean)
        sys.stdout.write(table)
        if args.out:
            atomic_write(Path(args.out), table.encode())
        return 0
    from nasplug.report import plotting
    from nasplug.report.comparison import compare_table, pareto_of

    table = compare_table(args.runs, mean=args.mean, pareto=args.pareto)
    front = pareto_of(args.runs, args.pareto, mean=args.mean)
    sys.stdout.write(table)
    if args.out:
        atomic_write(Path(args.out), table.encode())
    fig = front.figure()
    if fig is None:
        print(f"nasplug: no run records {args.pareto} and accuracy: no plot", file=sys.stderr)
        return 0
    name = f"pareto-{args.pareto}"
    stem = Path(args.out).with_name(f"{Path(args.out).stem}-{name}") if args.out else Path(name)
    for path in plotting.save(fig, stem):
        print(f"wrote {path}", file=sys.stderr)
    return 0


# ---- curve -----------------------------------------------------------------------------------
def cmd_curve(args: argparse.Namespace) -> int:
    from nasplug.core.options import OptionError, parse_pairs
    from nasplug.report.curve import curve

    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    per: dict[str, list[str]] = {}
    for text in args.strategy_opt:
        name, sep, pair = text.partition(":")
        if not sep or not name or "=" not in pair:
            raise OptionError(
                f"--strategy-opt {text!r}; accepted: NAME:KEY=VALUE, e.g. evolution:population=20"
            )
        per.setdefault(name, []).append(pair)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise OptionError(f"--out {args.out} is an existing file; accepted: a folder")
    found = curve(
        args.space,
        names,
        seeds=args.seeds,
        queries=args.queries,
        space_opts=parse_pairs(args.space_opt, "--space-opt"),
        strategy_opts={k: parse_pairs(v, f"--strategy-opt {k}:") for k, v in per.items()},
    )
    sys.stdout.write(found.table())
    if args.out:
        for path in found.save(args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


# ---- list ------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from nasplug.core import registry

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
                        why = one_line(cause, with_type=True) if cause else one_line(e)
                        note = f"  [BROKEN: {why}]"
                print(f"  {name:<26} {p.dist} {p.version} ({origin}){note}")
    if os.environ.get("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        print("(NASPLUG_DISABLE_PLUGIN_AUTOLOAD set: third-party plugins not loaded)")
    return 0


# ---- show ------------------------------------------------------------------------------------
def cmd_show(args: argparse.Namespace) -> int:
    from nasplug.report import summary as report
    from nasplug.run.rundir import RunDir

    run = RunDir.open(args.run_dir, writer=False)
    print(report.summary_text(run))
    return 0
