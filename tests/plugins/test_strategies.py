"""The pdarts, random and tpe strategies on tiny budgets: directly and through the CLI."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from nasplug.cli import main
from nasplug.core.interfaces import SearchContext
from nasplug.core.types import Data, Task
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.supernet import recalibrate_batchnorm, search_supernet, supernet_result
from nasplug_builtins.relaxations import Softmax
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.strategies.pdarts import ProgressiveDarts, cap_candidate
from nasplug_builtins.strategies.random_search import RandomSearch
from nasplug_builtins.strategies.tpe import TPE, open_storage

TASK = Task("classification", (1, 8, 8), 3)
TINY = [
    "--no-figures",  # report.md only: no test here looks at the pictures
    "--space-opt",
    "channels=4",
    "--space-opt",
    "layers=2",
    "--data-opt",
    "train_per_class=20",
    "--data-opt",
    "test_per_class=10",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
]


def _data(n: int = 48) -> Data:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.randn(n, *TASK.input_shape, generator=g) + y.view(-1, 1, 1, 1)  # learnable
    return Data(TASK, (x, y), (x[:12], y[:12]))


def _ctx(tmp_path: Path | None, space=None, epochs: int = 1) -> SearchContext:
    data = _data()
    if tmp_path is None:
        run = None
    elif (tmp_path / "config.json").exists():
        run = RunDir.open(tmp_path)
    else:
        run = RunDir.create(tmp_path, {"test": True})
    trainer = Trainer(data, run=run, device="cpu", seed=0, quiet=True)
    return SearchContext(
        space or CellSpace(channels=4, layers=2, nodes=2),
        Softmax(),
        trainer,
        data,
        epochs=epochs,
        batch_size=16,
        seed=0,
        run_dir=str(tmp_path) if tmp_path else None,
    )


def _events(run_dir: Path, event: str) -> list[dict]:
    return list(RunDir(run_dir).events(event))


# ---- darts: the discretisation gap ---------------------------------------------------------
def test_gap_is_also_scored_with_path_statistics_and_the_supernet_keeps_its_own():
    ctx = _ctx(None)
    run = search_supernet(ctx, ctx.space, epochs=1, phase="search")
    hot = ctx.space.one_hot(ctx.space.derive(run.logits.weights(ctx.relaxation, evaluation=True)))
    expected_net = copy.deepcopy(run.net)
    recalibrate_batchnorm(expected_net, lambda x: expected_net(x, hot), ctx.trainer, 16, 4)
    expected = ctx.trainer.evaluate(lambda x: expected_net(x, hot), "arch", module=expected_net)
    # Re-estimating on the derived path really changes the statistics ...
    assert any(
        not torch.equal(a, b)
        for a, b in zip(run.net.buffers(), expected_net.buffers(), strict=True)
    )
    before = [b.clone() for b in run.net.buffers()]
    metrics = supernet_result(ctx, run).metrics
    assert metrics["val_accuracy_discrete_recalibrated"] == expected["accuracy"]
    # ... but only for that score: the supernet's own statistics are back afterwards.
    assert all(torch.equal(a, b) for a, b in zip(before, run.net.buffers(), strict=True))


# ---- pdarts ----------------------------------------------------------------------------------
class RecordingCellSpace(CellSpace):
    """Keeps every supernet it builds, to look at them after the search."""

    nets: list = []

    def supernet(self, task):
        net = super().supernet(task)
        RecordingCellSpace.nets.append(net)
        return net


def test_pdarts_deepens_restricts_and_drops_out_skips(tmp_path):
    RecordingCellSpace.nets = []
    strategy = ProgressiveDarts(
        stages=2, depths="2,3", keep="3", skip_dropout="0.2,0.5", dropout_decay=0.5
    )
    ctx = _ctx(tmp_path / "run", RecordingCellSpace(channels=4, layers=2, nodes=2), epochs=4)
    result = strategy.search(ctx)

    stages = _events(tmp_path / "run", "stage")
    assert [s["depth"] for s in stages] == [2, 3]
    assert [s["epochs"] for s in stages] == [2, 2]
    assert all(len(c) == 8 for c in stages[0]["candidates"].values())
    assert all(len(c) == 3 for c in stages[1]["candidates"].values())
    assert [len(net.cells) for net in RecordingCellSpace.nets] == [2, 3]
    # The rate decays within each stage: after the last epoch (epoch 1) it is rate * exp(-0.5).
    for net, rate in zip(RecordingCellSpace.nets, (0.2, 0.5), strict=True):
        assert net.candidate_dropout == {"skip_connect": pytest.approx(rate * math.exp(-0.5))}
    # The final genotype uses only the candidates its edges kept, and it builds.
    kept = stages[1]["candidates"]
    for kind in ("normal", "reduce"):
        for i, (op, source) in enumerate(result.genotype.spec[kind]):
            assert op in kept[f"{kind}:{2 + i // 2}<-{source}"]
    assert ctx.space.build(result.genotype, TASK)(torch.randn(2, *TASK.input_shape)).shape == (2, 3)
    assert {h["stage"] for h in result.history} == {1, 2}
    assert (tmp_path / "run/checkpoints/stage1.pt").exists()
    assert (tmp_path / "run/checkpoints/stage2.pt").exists()


def test_pdarts_resumes_in_the_stage_it_was_killed_in(tmp_path, monkeypatch):
    strategy = ProgressiveDarts(stages=2, depths="2,2", keep="4", skip_dropout="0.0,0.3")
    whole = strategy.search(_ctx(tmp_path / "whole", epochs=2))

    import nasplug_builtins.strategies.pdarts as pdarts

    real = pdarts.search_supernet

    def killed_in_stage2(ctx, space, *, phase, **kw):
        if phase == "stage2":
            raise KeyboardInterrupt
        return real(ctx, space, phase=phase, **kw)

    monkeypatch.setattr(pdarts, "search_supernet", killed_in_stage2)
    with pytest.raises(KeyboardInterrupt):
        strategy.search(_ctx(tmp_path / "killed", epochs=2))
    monkeypatch.setattr(pdarts, "search_supernet", real)
    resumed = strategy.search(_ctx(tmp_path / "killed", epochs=2))

    assert resumed.genotype == whole.genotype
    assert resumed.metrics["val_accuracy"] == whole.metrics["val_accuracy"]
    # Stage 1 was not redone: one search epoch of it in the log, as in the uninterrupted run.
    epochs = [e["phase"] for e in _events(tmp_path / "killed", "search_epoch")]
    assert epochs == ["stage1", "stage2"]


def test_skip_cap_replaces_the_weakest_skips():
    space = CellSpace(channels=4, layers=3)
    weights = {}
    for c in space.choices():
        w = torch.full((len(c.candidates),), 0.05)
        w[c.candidates.index("skip_connect")] = 0.5 + 0.01 * len(weights)  # skip wins everywhere
        w[c.candidates.index("sep_conv_3x3")] = 0.3
        weights[c.name] = w
    assert sum(op == "skip_connect" for op, _ in space.derive(weights).spec["normal"]) == 8
    genotype, replaced = cap_candidate(space, weights, "skip_connect", 2, "normal:")
    normal = [op for op, _ in genotype.spec["normal"]]
    assert normal.count("skip_connect") == 2 and replaced >= 6
    # The two strongest skips (on node 5's edges) are kept; the reduction cell is outside the scope.
    kept = {
        f"normal:{2 + i // 2}<-{s}"
        for i, (op, s) in enumerate(genotype.spec["normal"])
        if op == "skip_connect"
    }
    assert kept == {"normal:5<-4", "normal:5<-3"}
    assert all(op == "skip_connect" for op, _ in genotype.spec["reduce"])


def test_pdarts_second_order_with_the_real_lookahead(tmp_path):
    strategy = ProgressiveDarts(
        stages=2, depths="2,2", keep="4", skip_dropout="0.0,0.3", order=2, lookahead="real"
    )
    ctx = _ctx(tmp_path / "run", epochs=2)
    result = strategy.search(ctx)
    assert ctx.space.build(result.genotype, TASK)(torch.randn(2, *TASK.input_shape)).shape == (2, 3)
    assert [h["stage"] for h in result.history] == [1, 2]


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"keep": "5,3,2"}, "keep needs 2"),
        ({"depths": "3,x,8"}, "depths must be comma-separated ints"),
        ({"skip_dropout": "0.1,1.0,0.2"}, "below 1"),
        ({"order": 3}, "order must be 1 or 2"),
        ({"order": 2, "lookahead": "later"}, "unknown lookahead 'later'; accepted: virtual, real"),
    ],
)
def test_pdarts_bad_options(opts, message):
    with pytest.raises(ValueError, match=message):
        ProgressiveDarts(**opts)


# ---- random ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["train", "supernet"])
def test_random_search_by_count(tmp_path, method):
    ctx = _ctx(tmp_path / "run")
    result = RandomSearch(method=method, candidates=3, train_epochs=1).search(ctx)
    rows = result.candidates
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert len({json.dumps(r["genotype"], sort_keys=True) for r in rows}) == 3
    for r in rows:
        assert set(r) >= {"genotype", "metric", "params", "seconds"}
        assert 0.0 <= r["metric"] <= 1.0 and r["params"] > 0 and r["seconds"] > 0
    best = max(rows, key=lambda r: r["metric"])
    assert result.genotype.to_dict() == best["genotype"]
    assert result.metrics["val_accuracy"] == best["metric"]
    ctx.space.build(result.genotype, TASK)
    # Finished candidates leave no checkpoints behind; the search's own is kept.
    assert not list((tmp_path / "run/checkpoints").glob("random/*.pt"))
    assert (tmp_path / "run/checkpoints/random.pt").exists()


def test_random_search_by_time(tmp_path):
    ctx = _ctx(tmp_path / "run")
    t0 = time.time()
    result = RandomSearch(candidates=0, time_budget=0.5, train_epochs=1).search(ctx)
    took = time.time() - t0
    per = max(r["seconds"] for r in result.candidates)
    assert len(result.candidates) >= 1
    assert (
        result.metrics["search_seconds"] < 0.5 + per + 0.5
    )  # stops after the candidate that crossed it
    assert took < 0.5 + 3 * per + 5


@pytest.mark.parametrize("name", ["random", "evolution"])
def test_a_black_box_search_does_not_redo_finished_candidates(tmp_path, monkeypatch, name):
    from nasplug.core import registry
    from nasplug.searchlib import blackbox

    def strategy():
        opts = {"population": 2, "sample": 2} if name == "evolution" else {}
        return registry.load("strategy", name)(candidates=4, train_epochs=1, **opts)

    whole = strategy().search(_ctx(tmp_path / "whole"))
    real = blackbox.train_candidate

    def killed_at_third(ctx, genotype, *, phase, **kw):
        if phase.endswith("00002"):
            raise KeyboardInterrupt
        return real(ctx, genotype, phase=phase, **kw)

    monkeypatch.setattr(blackbox, "train_candidate", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        strategy().search(_ctx(tmp_path / "killed"))
    monkeypatch.setattr(blackbox, "train_candidate", real)
    resumed = strategy().search(_ctx(tmp_path / "killed"))

    assert [r["genotype"] for r in resumed.candidates] == [r["genotype"] for r in whole.candidates]
    assert [r["metric"] for r in resumed.candidates] == [r["metric"] for r in whole.candidates]
    trained = [e["phase"] for e in _events(tmp_path / "killed", "train_epoch")]
    assert sorted(trained) == [f"{name}/candidate{i:05d}" for i in range(4)]  # each once
    assert not list((tmp_path / "killed" / "checkpoints").glob(f"{name}/candidate*"))


def test_random_search_bad_options():
    with pytest.raises(
        ValueError, match="unknown random search method 'grid'; accepted: train, supernet"
    ):
        RandomSearch(method="grid")
    with pytest.raises(ValueError, match="needs a budget"):
        RandomSearch(candidates=0, time_budget=0)


def test_random_search_through_the_cli(tmp_path, capsys):
    out = tmp_path / "rs"
    assert (
        main(
            [
                "run",
                "--strategy",
                "random",
                "--strategy-opt",
                "candidates=2",
                "--strategy-opt",
                "train_epochs=1",
                *TINY,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads((out / "candidates.json").read_text())
    assert len(rows) == 2 and json.loads((out / "genotype.json").read_text())["space"] == "cell"
    assert "validation accuracy" in capsys.readouterr().out


# ---- tpe -------------------------------------------------------------------------------------
def test_tpe_searches_in_memory_without_a_run_directory():
    ctx = _ctx(None)
    result = TPE(trials=3, train_epochs=1, pruner="none").search(ctx)
    assert len(result.candidates) == 3 and result.metrics["trials_complete"] == 3
    ctx.space.build(result.genotype, TASK)


def test_tpe_prunes_with_hyperband_and_keeps_the_study_in_the_run(tmp_path):
    ctx = _ctx(tmp_path / "run")
    result = TPE(trials=4, train_epochs=2, pruner="hyperband", startup_trials=1).search(ctx)
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run/study.db'}")
    assert len(study.trials) == 4
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    for t in study.trials:
        assert json.loads(t.user_attrs["genotype"])["space"] == "cell"
        assert t.user_attrs["params"] > 0
    assert result.metrics["trials"] == 4
    assert not list((tmp_path / "run/checkpoints").glob("tpe/*.pt"))


def test_tpe_keeps_its_study_where_the_context_fields_say(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ctx = dataclasses.replace(_ctx(tmp_path / "run"), study="mine", storage=url)
    TPE(trials=2, train_epochs=1, startup_trials=1).search(ctx)
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 2
    assert not (tmp_path / "run" / "study.db").exists()


def test_tpe_bad_pruner():
    with pytest.raises(
        ValueError, match="unknown pruner 'asha'; accepted: median, hyperband, none"
    ):
        TPE(pruner="asha")
    with pytest.raises(ValueError, match="tpe needs a budget"):
        TPE(trials=0, time_budget=0)


def test_tpe_by_time_stops_starting_trials_once_the_budget_is_spent():
    ctx = _ctx(None)
    t0 = time.time()
    result = TPE(trials=0, time_budget=0.5, train_epochs=1, pruner="none").search(ctx)
    took = time.time() - t0
    per = max(r["seconds"] for r in result.candidates)
    assert len(result.candidates) >= 1
    assert took < 0.5 + 3 * per + 5  # the trial that crossed the budget finishes, no other starts


def _nasplug(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nasplug", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


TPE_RUN = ["run", "--strategy", "tpe", "--strategy-opt", "train_epochs=1", *TINY]


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [
        _nasplug(
            *TPE_RUN,
            "--strategy-opt",
            "trials=4",
            "--storage",
            storage,
            "--study",
            "s",
            "--seed",
            str(i),
            "--out",
            tmp_path / f"w{i}",
        )
        for i in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="s", storage=storage)
    trials = study.trials
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    assert 4 <= len(trials) <= 5  # two workers may both start a trial at the budget's edge
    # Each trial was run by exactly one worker, once.
    ran = [e["number"] for w in ("w0", "w1") for e in _events(tmp_path / w, "trial_start")]
    assert sorted(ran) == sorted(numbers)
    assert {t.user_attrs["run_dir"] for t in trials} <= {str(tmp_path / "w0"), str(tmp_path / "w1")}


@pytest.mark.slow
def test_a_killed_tpe_run_continues_its_study(tmp_path):
    out = tmp_path / "run"
    p = _nasplug(*TPE_RUN, "--strategy-opt", "trials=3", "--out", out)
    db = out / "study.db"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once a trial is under way
        time.sleep(0.5)
        if not db.exists():
            continue
        try:
            # Through open_storage, which retries while the worker is still creating the tables.
            study = optuna.load_study(
                study_name="run", storage=open_storage(f"sqlite:///{db}", None)
            )
        except KeyError:  # the worker has not created the study yet
            continue
        if any(t.state.name == "RUNNING" for t in study.trials):
            break
    p.send_signal(signal.SIGKILL)
    p.communicate()
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{db}")
    assert "RUNNING" in [t.state.name for t in study.trials]

    r = subprocess.run(
        [sys.executable, "-m", "nasplug", "run", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "NASPLUG_QUIET": "1"},
    )
    assert r.returncode == 0, r.stderr
    states = [
        t.state.name for t in optuna.load_study(study_name="run", storage=f"sqlite:///{db}").trials
    ]
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert states.count("COMPLETE") + states.count("PRUNED") == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--strategy", "random", "--strategy-opt", "method=grid"],
            "unknown random search method 'grid'",
        ),
        (["--strategy", "tpe", "--strategy-opt", "pruner=asha"], "unknown pruner 'asha'"),
        (["--strategy", "tpe", "--storage", "not-a-url"], "not an Optuna storage URL"),
        (["--strategy", "tpe", "--storage", "nosuchdb://x/y"], "cannot open Optuna storage"),
    ],
)
def test_bad_strategy_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["run", *args, *TINY, "--epochs", "1", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err


def test_cell_supernet_drops_out_the_named_candidate_in_training_only():
    space = CellSpace(channels=4, layers=2, nodes=2)
    net = space.supernet(TASK)
    skip = {
        c.name: torch.tensor([float(k == "skip_connect") for k in c.candidates])
        for c in space.choices()
    }
    x = torch.randn(4, *TASK.input_shape)
    torch.manual_seed(0)
    plain = net(x, skip)
    net.candidate_dropout = {"skip_connect": 0.5}
    dropped = net(x, skip)
    assert not torch.allclose(plain, dropped)
    net.eval()
    assert torch.equal(net(x, skip), net(x, skip))
    net.candidate_dropout = {}
    assert torch.allclose(net(x, skip), net.eval()(x, skip))
