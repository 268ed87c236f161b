"""The loop of the black-box strategies, as a third-party strategy gets it from the core: it
brings a proposer, ``candidate_search`` evaluates, records, checkpoints and ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasplug.core.interfaces import SearchContext
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.blackbox import Evaluation, SamplePool, candidate_search
from nasplug.testing import TinySoftmax, TinySpace, tiny_data


def _ctx(run_dir: Path) -> SearchContext:
    data = tiny_data()
    trainer = Trainer(data, run=RunDir.create(run_dir, {"test": True}), device="cpu", seed=0)
    return SearchContext(
        TinySpace(), TinySoftmax(), trainer, data, epochs=1, batch_size=16, seed=0, options={}
    )


def test_a_proposer_gets_its_candidates_trained_recorded_and_ranked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NASPLUG_QUIET", raising=False)  # the lines a user sees are checked
    ctx = _ctx(tmp_path / "run")
    pool = SamplePool(ctx.space, seed=0)

    def propose(rows, i):
        assert [r["index"] for r in rows] == list(range(i))  # the records before it
        genotype = pool.get(i)
        return None if genotype is None else (genotype, {"origin": "pool"})

    evaluation = Evaluation("train", train_epochs=1, who="pool search")
    result = candidate_search(ctx, "pool", evaluation, propose, candidates=10)

    rows = result.candidates
    assert len(rows) == 6  # the tiny space has six genotypes; the search stops there
    assert all(r["origin"] == "pool" and r["seconds"] > 0 for r in rows)
    best = max(rows, key=lambda r: r["metric"])
    assert result.genotype.to_dict() == best["genotype"]
    assert result.metrics["val_accuracy"] == best["metric"]
    assert result.metrics["candidates"] == 6.0
    out = capsys.readouterr().err
    assert "pool candidate 1 (pool): accuracy " in out
    assert "pool: the space has no more distinct genotypes after 6" in out
    assert len(list(RunDir(tmp_path / "run").events("candidate"))) == 6
    assert not list((tmp_path / "run" / "checkpoints").glob("pool/*.pt"))


def test_a_search_that_gets_no_candidate_says_so(tmp_path):
    evaluation = Evaluation("train", train_epochs=1, who="pool search")
    with pytest.raises(ValueError, match="pool search found no valid genotype"):
        candidate_search(
            _ctx(tmp_path / "run"), "pool", evaluation, lambda rows, i: None, candidates=3
        )


def test_the_old_module_name_still_imports_with_a_deprecation_warning():
    import importlib
    import sys

    from nasplug.searchlib import blackbox

    sys.modules.pop("nasplug.searchlib.candidates", None)
    with pytest.warns(DeprecationWarning, match="nasplug.searchlib.blackbox"):
        old = importlib.import_module("nasplug.searchlib.candidates")
    assert old is blackbox and old.SamplePool is blackbox.SamplePool
