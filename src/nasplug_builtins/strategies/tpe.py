"""TPE: Optuna's tree-structured Parzen estimator over the space's discrete choices.

Each trial draws a genotype with ``space.sample(trial.suggest_categorical)`` and trains it
briefly (the validation metric is reported after every epoch so that a pruner can stop
hopeless trials early), or looks it up in the space's benchmark table (``method=table``). The study lives in an Optuna storage, so several ``nasplug run``
processes, on one machine or many, can work on one study and Optuna's own tools can read it.

Under a resource budget (``ctx.feasible``) no genotype outside it is trained or looked up:
such a trial is marked infeasible with Optuna's ``Trial.set_constraint`` (the way Optuna 5
takes constraints, replacing the sampler's ``constraints_func``) and told PRUNED, so that the
TPE sampler files it among its worst trials and samples away from it; then a fresh trial is
asked. These trials cost no training, count against no budget and never become the result.
(FAIL would hide them from the sampler, which would keep proposing the same region.)
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from nasplug.core.errors import one_line
from nasplug.core.interfaces import SearchContext, SearchSpace, Strategy
from nasplug.core.types import Genotype, SearchResult
from nasplug.engine.memory import count_params
from nasplug.searchlib.blackbox import (
    benchmark_of,
    best_candidate,
    forget_checkpoint,
    infeasible_error,
    log_queries,
    table_result,
    train_candidate,
)

__all__ = ["METHODS", "PRUNERS", "REFUSED_TRIALS", "TPE", "open_storage"]

METHODS = ("train", "table")
PRUNERS = ("median", "hyperband", "none")
_STORAGE_HELP = (
    "accepted: sqlite:///PATH, postgresql://USER@HOST/DB, mysql://USER@HOST/DB, "
    "journal:PATH or a PATH ending in .log"
)
# Trial states that count against the budget: finished ones and those being worked on.
_COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
# The constraint and user attribute of a trial whose genotype is outside the budget.
_BUDGET = "budget"
_INFEASIBLE = "infeasible"
#: Trials outside the budget in a row after which a search gives up. Fewer than a random
#: search's draws (:data:`nasplug.searchlib.blackbox.FEASIBLE_DRAWS`): each costs the sampler a model
#: fit over every trial before it.
REFUSED_TRIALS = 500


class TPE(Strategy):
    """Black-box search with Optuna's TPESampler, one short training per trial.

    The study is ``ctx.study`` (default: the run directory's name) in the storage
    ``ctx.storage`` (default: ``sqlite:///RUN_DIR/study.db``), created or loaded.
    Trials carry user attributes ``genotype`` (JSON), ``params``, ``seconds`` and the worker
    that ran them (``run_dir``, ``host``, ``pid``).

    Budget and several workers: before creating a trial, a worker counts the study's COMPLETE,
    PRUNED, RUNNING and WAITING trials and stops once they reach ``trials``. Workers that check
    at the same moment may each start one more, so a study can end with up to (workers - 1)
    trials beyond the budget, never fewer. On start, trials left RUNNING by a killed process of
    the same run directory (or by a dead process on this host) are marked FAIL, and so is every
    RUNNING trial of the run's own study file (no storage given: the run directory's lock keeps
    other processes out, and a trial killed before it was labelled with its worker is found
    too); failed trials do not count, so a rerun completes the budget.

    Under a budget (``ctx.feasible``), a trial whose genotype is outside it is told PRUNED with
    a violated constraint and user attribute ``infeasible`` (see the module's docstring); it
    neither counts against ``trials`` nor is trained. After :data:`REFUSED_TRIALS` such trials
    in a row without a feasible one before, the search fails in one
    line saying the budget may be too tight; after a feasible one, it stops there.

    With ``method=table`` each trial looks its genotype up in the space's benchmark table: no
    data, no training, no pruning; the study is private and in memory (a table search takes
    seconds, there is nothing to share or resume), and the run records the table's best value
    under the table's own metric name.

    Args:
        method: ``train`` (a short training per trial) or ``table`` (a lookup in the space's
            benchmark table; ``trials`` is then the number of queries).
        trials: the study's budget of trials (over all workers and sessions; 0: no limit,
            then ``time_budget`` is needed).
        time_budget: this worker's wall-clock seconds in this session: no trial starts after
            them, the first excepted (0: no limit). Gives TPE the same compute as a DARTS run.
        train_epochs: training epochs per trial (on the weight half; scored on the arch half).
        lr: SGD learning rate of each trial's training.
        pruner: ``median`` (Optuna's MedianPruner), ``hyperband`` or ``none``.
        startup_trials: random trials before TPE models the results (also the median
            pruner's warm-up in trials).
        multivariate: model the decisions jointly (Optuna's multivariate TPE, with ``group``
            for spaces whose decisions depend on earlier ones) instead of one by one. On the
            nb201 table it finds better cells in fewer queries, and samples faster (see
            docs/benchmarks.md).
    """

    #: Options of a tiny instance, for tests (``nasplug.testing.tiny_instance``).
    test_options: ClassVar[Mapping[str, Any]] = {
        "trials": 2,
        "train_epochs": 1,
        "startup_trials": 1,
    }

    def __init__(
        self,
        trials: int = 10,
        train_epochs: int = 2,
        lr: float = 0.025,
        pruner: str = "median",
        startup_trials: int = 5,
        time_budget: float = 0.0,
        method: str = "train",
        multivariate: bool = True,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown tpe method {method!r}; accepted: {', '.join(METHODS)}")
        if method == "table" and trials == 0:
            raise ValueError("method=table counts table queries: give trials > 0")
        if pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {pruner!r}; accepted: {', '.join(PRUNERS)}")
        if trials < 0 or time_budget < 0 or train_epochs < 1 or startup_trials < 0:
            raise ValueError(
                "train_epochs must be >= 1; trials, time_budget and startup_trials >= 0"
            )
        if trials == 0 and time_budget == 0:
            raise ValueError("tpe needs a budget: trials > 0 or time_budget > 0 seconds")
        self.trials = trials or 2**62
        self.time_budget = time_budget
        self.train_epochs = train_epochs
        self.lr = lr
        self.pruner = pruner
        self.startup_trials = startup_trials
        self.method = method
        self.multivariate = multivariate

    def search(self, ctx: SearchContext) -> SearchResult:
        import optuna

        if self.method == "table":
            result = self.search_table(
                ctx.space, seed=ctx.seed, queries=self.trials, feasible=ctx.feasible
            )
            log_queries(ctx, "tpe", result)
            return result

        trainer, task = ctx.trainer, ctx.task
        run_dir, url = ctx.run_dir, ctx.storage
        storage = open_storage(url, run_dir)
        name = ctx.study or (Path(run_dir).name if run_dir else "nasplug")
        if trainer.quiet:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        direction: Literal["maximize", "minimize"] = (
            "maximize" if task.higher_is_better else "minimize"
        )
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction=direction,
            load_if_exists=True,
            pruner=self._pruner(),
        )
        if study.direction.name.lower() != direction:
            raise ValueError(
                f"study {name!r} {study.direction.name.lower()}s its objective but "
                f"this task's {task.metric} needs {direction}; use another --study"
            )
        study.set_user_attr("metric", task.metric)
        self._fail_stale(study, storage, run_dir, private=url is None)
        # A private study gets a reproducible sampler; workers sharing one must not all
        # propose the same first trials.
        seed = ctx.seed + len(study.trials) if url is None else None
        study.sampler = self._sampler(seed)
        counted = tuple(optuna.trial.TrialState[s] for s in _COUNTED)
        worker = {"run_dir": str(run_dir or ""), "host": socket.gethostname(), "pid": os.getpid()}
        start, ran = time.time(), 0
        refused = [0]  # trials outside the budget since the last one within it
        while _count(study.get_trials(deepcopy=False, states=counted)) < self.trials:
            if self.time_budget and ran and time.time() - start >= self.time_budget:
                break
            ran += 1
            study.optimize(
                lambda trial: self._objective(ctx, trial, worker, refused),
                n_trials=1,
                catch=(),
                gc_after_trial=False,
            )
            if refused[0] >= REFUSED_TRIALS:
                if not _count(study.get_trials(deepcopy=False, states=counted)):
                    raise infeasible_error(REFUSED_TRIALS)
                break
        return self._result(ctx, study)

    def search_table(
        self,
        space: SearchSpace,
        *,
        seed: int,
        queries: int,
        feasible: Callable[[Genotype], bool] | None = None,
    ) -> SearchResult:
        """``queries`` trials of a private in-memory study, each a lookup in the table; with
        ``feasible``, trials it refuses are told to the sampler unqueried (see the class)."""
        import optuna

        t0 = time.perf_counter()
        table = benchmark_of(space, "tpe", METHODS)
        rows: list[dict[str, Any]] = []
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(direction="maximize", sampler=self._sampler(seed))
            refused = 0
            while len(rows) < queries:
                trial = study.ask()
                genotype = space.sample(trial.suggest_categorical)
                if feasible is not None and not feasible(genotype):
                    _refuse(study, trial)
                    refused += 1
                    if refused < REFUSED_TRIALS:
                        continue
                    if not rows:
                        raise infeasible_error(REFUSED_TRIALS)
                    break
                refused = 0
                value = table.query(genotype)
                rows.append(
                    {"index": trial.number, "genotype": genotype.to_dict(), "metric": value}
                )
                study.tell(trial, value)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return table_result(table, rows, time.perf_counter() - t0)

    def _sampler(self, seed: int | None) -> Any:
        import optuna

        with warnings.catch_warnings():
            # multivariate and group are marked experimental; the choice is the user's.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=self.startup_trials,
                multivariate=self.multivariate,
                group=self.multivariate,
            )

    def _objective(
        self, ctx: SearchContext, trial: Any, worker: dict[str, Any], refused: list[int]
    ) -> float:
        import optuna

        trainer, m = ctx.trainer, ctx.task.metric
        for k, v in worker.items():
            trial.set_user_attr(k, v)
        genotype = ctx.space.sample(trial.suggest_categorical)
        trial.set_user_attr("genotype", genotype.to_json())
        if ctx.feasible is not None and not ctx.feasible(genotype):
            refused[0] += 1
            trial.set_user_attr(_INFEASIBLE, True)
            trial.set_constraint(_BUDGET, 1.0)
            raise optuna.TrialPruned("outside the budget: not trained")
        refused[0] = 0
        trainer.log("trial_start", number=trial.number, genotype=genotype.to_dict())
        # Every trial's training depends only on the run's seed and the trial's number.
        torch.manual_seed(ctx.seed * 100003 + trial.number)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            value = metrics.get(m, math.nan)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{m} {value:.4f} after epoch {epoch + 1}")

        phase = f"tpe/trial{trial.number:05d}"
        model = ctx.space.build(genotype, ctx.task)
        trial.set_user_attr("params", count_params(model))
        t0 = time.time()
        try:
            rec = train_candidate(
                ctx,
                genotype,
                phase=phase,
                epochs=self.train_epochs,
                lr=self.lr,
                report=report,
                model=model,
            )
        finally:
            trial.set_user_attr("seconds", time.time() - t0)
            forget_checkpoint(trainer, phase)
        trainer.log(
            "trial_end",
            number=trial.number,
            metric=rec["metric"],
            params=rec["params"],
            status=rec["status"],
        )
        if not math.isfinite(rec["metric"]):
            # A diverged training is a bad candidate, not a broken study: TPE learns from it.
            raise optuna.TrialPruned(f"training {rec['status']}")
        return rec["metric"]

    def _pruner(self) -> Any:
        import optuna

        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=self.train_epochs)
        return optuna.pruners.NopPruner()

    @staticmethod
    def _fail_stale(study: Any, storage: Any, run_dir: str | None, *, private: bool) -> None:
        """Mark FAIL the RUNNING trials whose process is gone (see the class docstring)."""
        import optuna

        host = socket.gethostname()
        study_id = storage.get_study_id_from_name(study.study_name)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            attrs = t.user_attrs
            mine = private or (run_dir is not None and attrs.get("run_dir") == str(run_dir))
            dead = attrs.get("host") == host and not _alive(attrs.get("pid"))
            if mine or dead:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
                storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)

    def _result(self, ctx: SearchContext, study: Any) -> SearchResult:
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        rows = []
        for t in study.get_trials(deepcopy=False, states=states):
            if t.user_attrs.get(_INFEASIBLE):
                continue
            value = t.value if t.value is not None else _last(t.intermediate_values)
            rows.append(
                {
                    "trial": t.number,
                    "genotype": Genotype.from_json(t.user_attrs["genotype"]).to_dict(),
                    "metric": value,
                    "params": t.user_attrs.get("params", 0),
                    "seconds": t.user_attrs.get("seconds", 0.0),
                    "status": t.state.name,
                    "run_dir": t.user_attrs.get("run_dir", ""),
                }
            )
        if not rows:
            raise ValueError(f"study {study.study_name!r} holds no finished trial")
        complete = [r for r in rows if r["status"] == "COMPLETE"]
        best = best_candidate(complete or rows, ctx.task.better)
        m = ctx.task.metric
        metrics = {
            f"val_{m}": best["metric"],
            "params": float(best["params"]),
            "trials": float(len(rows)),
            "trials_complete": float(len(complete)),
            "trials_pruned": float(len(rows) - len(complete)),
            "search_seconds": float(sum(r["seconds"] for r in rows)),
        }
        ctx.trainer.log("study", name=study.study_name, best_trial=best["trial"], **metrics)
        return SearchResult(Genotype.from_dict(best["genotype"]), metrics, rows, rows)


def open_storage(url: str | None, run_dir: str | None) -> Any:
    """An Optuna storage for ``url``; None: SQLite in ``run_dir`` (in memory without one)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    if url is None:
        if run_dir is None:
            return optuna.storages.InMemoryStorage()
        url = f"sqlite:///{(Path(run_dir) / 'study.db').resolve()}"
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:") :] if url.startswith("journal:") else url
        if not path:
            raise ValueError(f"storage {url!r} names no file; {_STORAGE_HELP}")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        except OSError as e:
            raise ValueError(f"cannot open journal storage {path!r}: {e.strerror or e}") from e
    if "://" not in url:
        raise ValueError(f"storage {url!r} is not an Optuna storage URL; {_STORAGE_HELP}")
    # Several processes share an SQLite file: wait for a lock instead of failing at once.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    last: Exception | None = None
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        # SQLAlchemy wraps the URL's and the driver's errors; a driver not installed is an
        # ImportError, a database of another Optuna version a RuntimeError.
        except (SQLAlchemyError, ImportError, RuntimeError) as e:
            last = e
            # Two workers creating the tables at once: one of them loses the race; try again.
            if type(e).__name__ not in ("IntegrityError", "OperationalError"):
                break
            time.sleep(0.5 * (attempt + 1))
    detail = one_line(last, with_type=True) if last is not None else "no error"
    raise ValueError(f"cannot open Optuna storage {url!r} ({detail}); {_STORAGE_HELP}") from last


def _refuse(study: Any, trial: Any) -> None:
    """Tell ``trial`` to the study as outside the budget: PRUNED, its constraint violated."""
    import optuna

    trial.set_user_attr(_INFEASIBLE, True)
    trial.set_constraint(_BUDGET, 1.0)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def _count(trials: Any) -> int:
    """How many of ``trials`` count against the budget: those within it."""
    return sum(not t.user_attrs.get(_INFEASIBLE) for t in trials)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown: assume it still runs
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last(values: dict[int, float]) -> float:
    return values[max(values)] if values else math.nan
