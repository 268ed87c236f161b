"""Searches over grouped choices: the cell's nodes keep 2 edges, and the search ends there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasplug.cli import main
from nasplug.core.interfaces import SearchContext
from nasplug.core.types import Data, Group, Task
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.diagnostics import at_vertex
from nasplug.searchlib.logits import ArchLogits
from nasplug_builtins.relaxations import GumbelHard, Softmax, Sparsemax
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.spaces.dense import DenseSpace
from nasplug_builtins.strategies.darts import Darts
from nasplug_builtins.strategies.pdarts import ProgressiveDarts
from nasplug_builtins.strategies.random_search import RandomSearch

TASK = Task("classification", (1, 8, 8), 3)


def _data(n: int = 48) -> Data:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.randn(n, *TASK.input_shape, generator=g) + y.view(-1, 1, 1, 1)
    return Data(TASK, (x, y), (x[:12], y[:12]))


def _ctx(
    run_dir: Path | None, relaxation, space=None, epochs: int = 4, data: Data | None = None
) -> SearchContext:
    data = data or _data()
    run = None
    if run_dir is not None:
        run = (
            RunDir.open(run_dir)
            if (run_dir / "config.json").exists()
            else RunDir.create(run_dir, {"test": True})
        )
    trainer = Trainer(data, run=run, device="cpu", seed=0, quiet=True)
    return SearchContext(
        space or CellSpace(channels=4, layers=3, nodes=3),
        relaxation,
        trainer,
        data,
        epochs=epochs,
        batch_size=16,
        seed=0,
        options={"storage": None, "study": None, "run_dir": str(run_dir) if run_dir else None},
    )


def test_cell_space_declares_one_group_per_node():
    space = CellSpace(channels=4, layers=2, nodes=3, node_inputs=2)
    groups = space.groups()
    assert [g.name for g in groups] == [
        "normal:2",
        "normal:3",
        "normal:4",
        "reduce:2",
        "reduce:3",
        "reduce:4",
    ]
    assert groups[1] == Group("normal:3", ("normal:3<-0", "normal:3<-1", "normal:3<-2"), 2, "none")
    with pytest.raises(ValueError, match="node_inputs must be 1 or 2"):
        CellSpace(node_inputs=3)


def test_group_unaware_relaxations_weigh_each_choice_as_before():
    space = CellSpace(channels=4, layers=2, nodes=3)
    torch.manual_seed(0)
    grouped = ArchLogits(space.choices(), groups=space.groups())
    torch.manual_seed(0)
    plain = ArchLogits(space.choices())
    for relax in (Softmax(), Sparsemax(grouped=False)):
        a, b = grouped.weights(relax), plain.weights(relax)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_grouped_sparsemax_gives_each_node_exactly_its_derived_mass():
    space = CellSpace(channels=4, layers=2, nodes=3)
    torch.manual_seed(0)
    logits = ArchLogits(space.choices(), init_scale=0.03, groups=space.groups())
    relax = Sparsemax()
    relax.on_epoch(0, 4)
    w = logits.weights(relax)
    for g in space.groups():
        assert float(sum(w[n].detach().sum() for n in g.choices)) == pytest.approx(2.0, abs=1e-5)
        if len(g.choices) > 2:  # a node with spare edges spreads its two units over them
            assert all(0 < float(w[n].detach().sum()) < 1 for n in g.choices)
        assert all(float(w[n].detach()[0]) == 0.0 for n in g.choices), "none carries no mass"
        assert all(float(w[n].detach().sum()) <= 1 + 1e-5 for n in g.choices)


def test_grouped_gumbel_hard_samples_one_vertex_per_step_with_gradients():
    space = CellSpace(channels=4, layers=2, nodes=3)
    logits = ArchLogits(space.choices(), init_scale=1.0, groups=space.groups())
    relax = GumbelHard()
    torch.manual_seed(0)
    w = logits.weights(relax)
    assert at_vertex(space.choices(), space.groups(), {k: v.detach() for k, v in w.items()})
    for g in space.groups():
        used = [n for n in g.choices if float(w[n].detach().sum()) > 0]
        assert len(used) == 2 and all(float(w[n].detach().max()) == 1.0 for n in used)
    sum((w[k] * torch.randn(w[k].shape)).sum() for k in w).backward()
    assert all(p.grad is not None and (p.grad[1:] != 0).all() for p in logits.parameters())
    # Evaluation is the DARTS rule on the logits themselves: the derived path.
    ev = {k: v.detach() for k, v in logits.weights(relax, evaluation=True).items()}
    derived = space.one_hot(space.derive(ev))
    assert all(torch.equal(derived[k], ev[k]) for k in ev)


def test_default_sparsemax_search_ends_at_a_vertex_that_is_the_derived_genotype(tmp_path):
    result = Darts().search(_ctx(tmp_path / "run", Sparsemax()))
    m = result.metrics
    assert m["final_vertex"] == 1.0 and m["final_max_vertex_distance"] == 0.0
    assert m["val_accuracy_continuous"] == m["val_accuracy_discrete"]
    assert m["discretisation_gap"] == 0.0
    history = result.history
    assert history[0]["warmup"] and not any(h["warmup"] for h in history[1:])
    assert history[0]["summary"]["mean_active"] == 3.0, "dense at first: every incoming edge"
    assert history[-1]["summary"]["mean_active"] == 2.0
    # Per node, per epoch: every edge's mass, the active edges and the distance to a vertex.
    node = history[-1]["groups"][0]
    assert set(node) >= {"group", "mass", "active", "distance", "total"}
    assert node["total"] == pytest.approx(2.0)
    # The hard phase skips the architecture step: its steps are much faster.
    assert history[-1]["step_seconds"] < history[1]["step_seconds"]


def test_warmup_keeps_the_architecture_frozen(tmp_path):
    ctx = _ctx(tmp_path / "run", Softmax(), epochs=3)
    torch.manual_seed(0)
    Darts(warmup=2).search(ctx)
    first = [e for e in RunDir(tmp_path / "run").events("search_epoch")]
    assert [e["warmup"] for e in first] == [True, True, False]
    weights = [e["edges"][0]["weights"] for e in first]
    assert weights[0] == weights[1] != weights[2]
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        Darts(warmup=-1)


def test_kill_and_resume_is_bit_exact_through_the_hard_phase(tmp_path, monkeypatch):
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole = Darts().search(_ctx(whole_dir, Sparsemax(), epochs=5))

    real_log = Trainer.log

    def killed_in_the_last_epoch(self, event, **fields):
        if event == "search_epoch" and fields["epoch"] == 5:
            raise KeyboardInterrupt
        return real_log(self, event, **fields)

    monkeypatch.setattr(Trainer, "log", killed_in_the_last_epoch)
    with pytest.raises(KeyboardInterrupt):
        Darts().search(_ctx(killed_dir, Sparsemax(), epochs=5))
    monkeypatch.setattr(Trainer, "log", real_log)
    relax = Sparsemax()
    resumed = Darts().search(_ctx(killed_dir, relax, epochs=5))
    assert relax.frozen(), "the killed epoch was in the hard phase"
    assert resumed.genotype == whole.genotype and resumed.metrics == pytest.approx(
        {**whole.metrics, "search_seconds": resumed.metrics["search_seconds"]}
    )
    a = torch.load(whole_dir / "checkpoints/search.pt", weights_only=True)["state"]
    b = torch.load(killed_dir / "checkpoints/search.pt", weights_only=True)["state"]
    for part in ("net", "logits"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


@pytest.mark.parametrize(
    "strategy",
    [
        lambda: ProgressiveDarts(stages=2, depths="2,2", keep="4", skip_dropout="0.0,0.3"),
        lambda: RandomSearch(method="supernet", candidates=3, supernet_epochs=1),
    ],
)
def test_other_strategies_run_on_grouped_spaces_with_grouped_relaxations(tmp_path, strategy):
    for relax in (Sparsemax(), GumbelHard()):
        result = strategy().search(_ctx(tmp_path / type(relax).__name__, relax, epochs=2))
        space = CellSpace(channels=4, layers=2, nodes=3)
        space.one_hot(result.genotype)  # a valid genotype of the space


def test_dense_supernet_search_scores_every_block_alone(tmp_path):
    data = Data(
        Task("classification", (6,), 2),
        (torch.randn(64, 6), torch.arange(64) % 2),
        (torch.randn(8, 6), torch.arange(8) % 2),
    )
    space = DenseSpace(blocks=3, layers=2, width=8)
    result = Darts().search(_ctx(tmp_path / "run", Softmax(), space=space, epochs=2, data=data))
    rows = [r for r in result.candidates if r["status"] == "current"]
    assert len(rows) == 3 and all(0.0 <= r["metric"] <= 1.0 for r in rows)
    # Blocks of this seed differ in edge count, so the metric has a rank correlation with it.
    assert len({r["edges"] for r in rows}) > 1
    assert space.candidate_correlations()["edges"]["metric"] is not None


def test_cli_sparsemax_summary_shows_continuous_and_discrete_side_by_side(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "--no-figures",
            "--space-opt",
            "channels=4",
            "--space-opt",
            "layers=2",
            "--data-opt",
            "train_per_class=16",
            "--data-opt",
            "test_per_class=8",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--quiet",
            "--relax",
            "sparsemax",
            "--epochs",
            "3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "continuous" in text and "derived" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_vertex"] == 1.0
