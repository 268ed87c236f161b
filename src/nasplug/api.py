"""The Python API: :func:`search`, :func:`train` and :func:`compare`.

The ``nasplug`` command line is a thin layer over these three functions: it turns flags and
TOML tables into their arguments and prints what they return. So a search started from a
notebook and one started from the shell run the same code and, for the same seed, give the
same result. The work is done by the run layer (:mod:`nasplug.run`); this module adds what
sits above it: a search's report and TensorBoard scalars, and the names a user imports.

Example:
    >>> import nasplug
    >>> found = nasplug.search("cell", "sparsemax", epochs=1,
    ...                        space_opts={"channels": 4, "layers": 2})  # doctest: +SKIP
    >>> found.genotype, found.metrics["val_accuracy"]                  # doctest: +SKIP
    >>> trained = found.train(epochs=10)                               # doctest: +SKIP
    >>> from nasplug.api import SearchConfig
    >>> cfg = SearchConfig.from_toml("search.toml", epochs=2)          # doctest: +SKIP
    >>> found = nasplug.search(config=cfg)                             # doctest: +SKIP

Errors are exceptions whose message is the one line the command line prints: ``ValueError``
(an :class:`~nasplug.core.options.OptionError` for bad settings) for bad input,
:class:`~nasplug.core.registry.PluginError` for a plugin that cannot be found or loaded,
:class:`~nasplug.run.rundir.RunError` for a damaged or mismatched run directory, and
:class:`RunFailed` for a run that failed after it had kept a checkpoint (its cause is chained).
Nothing here calls ``sys.exit``.

Nothing in this module imports torch at import time: the command line imports it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from nasplug.run.config import DEFAULTS as DEFAULTS
from nasplug.run.config import PLUGIN_KEYS as PLUGIN_KEYS
from nasplug.run.config import SearchConfig as SearchConfig
from nasplug.run.config import SearchSettings as SearchSettings
from nasplug.run.config import TrainConfig as TrainConfig
from nasplug.run.metrics import benchmark_metrics as benchmark_metrics
from nasplug.run.results import RunFailed as RunFailed
from nasplug.run.results import TrainRun as TrainRun
from nasplug.run.searching import Reporting, resume_search, run_search
from nasplug.run.searching import SearchRun as SearchRun
from nasplug.run.training import train as train

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from nasplug.core.interfaces import Dataset, Relaxation, SearchSpace, Strategy

__all__ = [
    "DEFAULTS",
    "PLUGIN_KEYS",
    "RunFailed",
    "SearchConfig",
    "SearchRun",
    "SearchSettings",
    "TrainConfig",
    "TrainRun",
    "benchmark_metrics",
    "compare",
    "search",
    "train",
]


# ---- search ------------------------------------------------------------------------------------
def search(
    space: str | SearchSpace | None = None,
    relax: str | Relaxation | None = None,
    strategy: str | Strategy | None = None,
    data: str | Dataset | Any = None,
    *,
    config: SearchConfig | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    **settings: Unpack[SearchSettings],
) -> SearchRun:
    """Run a search and return what it found.

    The search is ``config`` (default: :class:`SearchConfig`'s defaults) with the plugins and
    ``settings`` given here in place of its own; see :class:`SearchConfig` for the settings.

    Args:
        space, relax, strategy: a registered name (``nasplug list``) or an instance of
            :class:`~nasplug.SearchSpace`, :class:`~nasplug.Relaxation`,
            :class:`~nasplug.Strategy`. Defaults: ``cell``, ``softmax``, ``darts``.
        data: a registered dataset name (default ``fashion-mnist-small``), a
            :class:`~nasplug.Dataset` plugin instance, a loaded :class:`~nasplug.Data`, an
            ``(x, y)`` pair of arrays or tensors (give ``task``), or a
            ``torch.utils.data.Dataset`` of ``(x, y)`` items (streamed when large).
        config: the settings of the search, e.g. :meth:`SearchConfig.from_toml`.
        resume: a run directory to continue; its stored settings are used (``device``,
            ``storage`` and ``threads`` may be given again, the other settings are not read).
            A run started with plugin instances or in-memory data needs them passed again;
            data whose fingerprint differs from the one stored in ``config.json`` is refused.
            A finished run is left as it is: its stored results are returned (without
            ``supernet`` and ``weights``) and nothing is written.
        quiet: no progress bars or per-epoch lines.
        settings: any field of :class:`SearchConfig` (typed as :class:`SearchSettings`):

            - ``space_opts``, ``relax_opts``, ``strategy_opts``, ``data_opts``: options of a
              plugin given by name, as the CLI's ``--space-opt`` etc. (strings are converted
              by the constructor's annotations).
            - ``task``, ``test``: for arrays and torch datasets: the task kind
              (``classification``, ``regression``, ``multilabel``) or a
              :class:`~nasplug.Task`, and the test split in the same form as ``data``
              (default: a share of ``data`` held out).
            - ``epochs``, ``batch_size``, ``seed``, ``device``, ``deterministic``, ``compile``:
              as the CLI's flags.
            - ``augment``: ``standard`` (random crop and flip on image data), ``no-flip`` or
              ``off``; None: the dataset's own default (``Data.augment``), else ``standard``.
            - ``stream``: ``auto`` (by size), ``on`` (a DataLoader with ``workers``
              processes) or ``off``.
            - ``threads``: torch's CPU threads for the run (default: as many as torch uses
              now). The run records the count and a resume uses it again, since a search
              repeats bit for bit only at the thread count it started with; given with
              ``resume``, it overrides that.
            - ``out``: a run directory to create, for checkpoints, events and a report; None
              keeps the run in memory (no resume).
            - ``storage``, ``study``: Optuna storage URL (or ``env:NAME``, ``file:PATH``) and
              study name of black-box strategies.
            - ``tensorboard``: also log scalars for TensorBoard into ``out/tensorboard``.
            - ``figures``: draw the report's pictures (default True); off, ``report.md`` only,
              a few seconds less a run (``nasplug report`` draws them later).
            - ``budget``: what the derived network may cost: ``"params=50k"``, a list of such
              texts (``["params=50k", "latency=4ms"]``) or a mapping (``{"flops": 3e8}``);
              resources ``params``, ``flops`` and ``latency`` (milliseconds at batch 1 on the
              run's device, from a table measured there once and cached). A supernet search
              with a relaxation that has the :class:`~nasplug.core.interfaces.Constrains`
              capability (``sparsemax``, ``gumbel-hard``) meets it inside its projection, so
              the derived network is the one it trained; other relaxations derive the best
              network within it; black-box strategies propose only networks within it. A
              budget no network meets is refused before anything is written, naming the
              least cost.
            - ``budget_penalty``: instead of meeting the budget by construction, add
              ``budget_penalty`` times the weights' expected cost over what the budget leaves
              the candidates (summed over the budget's resources) to the architecture loss, as
              ProxylessNAS does; the derived network may then break the budget
              (``metrics["feasible"]`` says). Supernet strategies only.

    Raises:
        TypeError: a keyword that is no setting.
    """
    slots = {
        key: value
        for key, value in zip(PLUGIN_KEYS, (space, relax, strategy, data), strict=True)
        if value is not None
    }
    _check_keywords(settings)
    if resume is not None:
        return resume_search(
            resume,
            instances={k: v for k, v in slots.items() if not isinstance(v, str)},
            device=settings.get("device"),
            storage=settings.get("storage"),
            threads=settings.get("threads"),
            task=settings.get("task"),
            test=settings.get("test"),
            quiet=quiet,
            reporting=_REPORTING,
        )
    given: dict[str, Any] = {**slots, **{k: v for k, v in settings.items() if v is not None}}
    cfg = config.replace(**given) if config is not None else SearchConfig(**given)
    return run_search(cfg, quiet=quiet, reporting=_REPORTING)


def _check_keywords(settings: Mapping[str, Any]) -> None:
    accepted = list(SearchSettings.__annotations__)
    for key in settings:
        if key not in accepted:
            raise TypeError(
                f"search() got an unexpected keyword argument {key!r}; accepted: "
                f"{', '.join(accepted)}"
            )


def _check_tensorboard() -> None:
    from nasplug.report import summary

    summary.check_tensorboard()


def _tensorboard_sink(path: Path) -> Callable[[str, Mapping[str, Any]], None]:
    from nasplug.report import summary

    return summary.tensorboard_sink(path)


def _write_report(path: Path, figures: bool) -> None:
    from nasplug.report import summary

    summary.write_report(path, figures=figures)


#: What a search run directory gets from the report layer.
_REPORTING = Reporting(
    check_tensorboard=_check_tensorboard,
    tensorboard_sink=_tensorboard_sink,
    write_report=_write_report,
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
