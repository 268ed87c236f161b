"""Which data a run was made from: fingerprints, names of in-memory data, resume with the
same data only, and new inputs prepared as the run's were."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

import nasplug
from nasplug.core.options import OptionError
from nasplug.engine.userdata import fingerprint, to_data
from nasplug.run import inputs

SEARCH = {"epochs": 1, "batch_size": 16, "device": "cpu", "quiet": True}


def _arrays(seed: int = 0, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 3.0).astype(np.int64)


def _interrupted(out: Path, data, **kw) -> Path:
    """A search run directory left by an interrupt after its first checkpoint."""

    def stop(prepared, run, *a, **k):
        run.save_checkpoint("search", {"epoch": 1})
        raise KeyboardInterrupt

    with (
        mock.patch("nasplug.run.searching._execute", side_effect=stop),
        pytest.raises(KeyboardInterrupt),
    ):
        nasplug.search("dense", "sparsemax", data=data, out=out, **SEARCH, **kw)
    return out


def _resume(out: Path, **kw):
    with mock.patch("nasplug.run.searching._execute", return_value="resumed") as execute:
        result = nasplug.search(resume=out, quiet=True, **kw)
    return result, execute.call_args


def test_the_fingerprint_tells_reordered_replaced_and_recast_data_apart():
    x, y = _arrays()
    a = fingerprint({"train": (x, y)})
    assert a == fingerprint({"train": (torch.from_numpy(x.copy()), torch.from_numpy(y))})
    assert a != fingerprint({"train": (x[::-1], y[::-1])})
    assert a != fingerprint({"train": (x.astype(np.float64), y)})
    assert a != fingerprint({"train": (x + 1, y)})
    assert a["splits"]["train"] == {"rows": 64, "inputs": "float32 (6,)", "targets": "int64 ()"}
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    assert fingerprint({"train": ds})["hash"] != fingerprint({"train": (x[1:], y[1:])})["hash"]


def test_resume_refuses_other_data_and_says_that_in_memory_data_must_be_passed(tmp_path):
    x, y = _arrays()
    out = _interrupted(tmp_path / "run", (x, y))
    with pytest.raises(OptionError) as info:
        _resume(out)
    message = str(info.value)
    assert "\n" not in message and "in-memory data (arrays-" in message
    assert "pass the same data again" in message
    with pytest.raises(OptionError, match="differs from the data the run was made with") as info:
        _resume(out, data=(x[::-1], y[::-1]))
    assert "\n" not in str(info.value)
    with pytest.raises(OptionError, match=r"train rows 63 instead of 64"):
        _resume(out, data=(x[1:], y[1:]))
    result, _ = _resume(out, data=(x, y))
    assert result == "resumed"


def test_in_memory_data_is_named_by_its_fingerprint_unless_named(tmp_path):
    x, y = _arrays(0)
    x2, y2 = _arrays(1)
    a = nasplug.search("dense", "sparsemax", data=(x, y), out=tmp_path / "a", **SEARCH)
    b = nasplug.search("dense", "sparsemax", data=(x2, y2), out=tmp_path / "b", **SEARCH)
    assert a.config["data"].startswith("arrays-") and b.config["data"].startswith("arrays-")
    assert a.config["data"] != b.config["data"]
    with pytest.raises(ValueError, match="different datasets"):
        nasplug.compare([a, b])
    named = nasplug.search("dense", "sparsemax", data=to_data((x, y), name="digits"), **SEARCH)
    assert named.config["data"] == "digits"
    # One name, other data: compare still keeps them apart.
    c = nasplug.search(
        "dense", "sparsemax", data=to_data((x, y), name="mine"), out=tmp_path / "c", **SEARCH
    )
    d = nasplug.search(
        "dense", "sparsemax", data=to_data((x2, y2), name="mine"), out=tmp_path / "d", **SEARCH
    )
    with pytest.raises(ValueError, match="different data named mine"):
        nasplug.compare([c, d])


def test_runs_prepare_raw_inputs_as_their_data_was_prepared(tmp_path):
    x, y = _arrays()
    found = nasplug.search("dense", "sparsemax", data=(x, y), out=tmp_path / "s", **SEARCH)
    data = found.data
    assert data.mean is not None and data.std is not None
    # The train split is the data's first rows that were not held out: find them raw.
    train_x = data.train[0]
    raw = x[[int(np.flatnonzero((found.prepare(x) == row).all(1))[0]) for row in train_x[:3]]]
    assert torch.allclose(found.prepare(raw), train_x[:3])
    assert found.prepare(x[0]).shape == (1, 6)  # one example
    assert found.predict(x[:5]).shape == (5, 2)
    with pytest.raises(ValueError, match=r"inputs of shape \(5, 3\)"):
        found.prepare(x[:5, :3])
    assert inputs.load(found.run_dir) == found.normalisation
    trained = found.train(epochs=1, batch_size=16, out=tmp_path / "t", quiet=True)
    model = trained.model.eval()
    with torch.no_grad():
        expected = model(found.prepare(x[:4]))
    assert torch.allclose(trained.predict(x[:4]), expected)
    assert inputs.load(trained.run_dir) == trained.normalisation == found.normalisation


def test_training_a_search_made_from_arrays_asks_for_them_again(tmp_path):
    x, y = _arrays()
    found = nasplug.search("dense", "sparsemax", data=(x, y), out=tmp_path / "s", **SEARCH)
    with pytest.raises(OptionError, match="in-memory data .*pass the same data again"):
        nasplug.train(found.run_dir, epochs=1, device="cpu", quiet=True)
    trained = nasplug.train(found.run_dir, data=(x, y), epochs=1, device="cpu", quiet=True)
    assert trained.config["data"] == found.config["data"]


def test_a_training_resume_refuses_other_data_and_asks_for_in_memory_data(tmp_path):
    x, y = _arrays()
    found = nasplug.search("dense", "sparsemax", data=(x, y), **SEARCH)

    def stop(prepared, run, *a, **k):
        run.save_checkpoint("train", {"epoch": 1})
        raise KeyboardInterrupt

    out = tmp_path / "t"
    with (
        mock.patch("nasplug.run.training.train_network", side_effect=stop),
        pytest.raises(KeyboardInterrupt),
    ):
        found.train(epochs=2, out=out, quiet=True)
    with pytest.raises(OptionError, match=r"in-memory data \(arrays-.*pass the same data again"):
        nasplug.train(resume=out, quiet=True)
    with pytest.raises(OptionError, match="differs from the data the run was made with"):
        nasplug.train(resume=out, data=(x[::-1], y[::-1]), quiet=True)
    resumed = ({}, [], None, None)
    with mock.patch("nasplug.run.training.train_network", return_value=resumed) as trained:
        nasplug.train(resume=out, data=(x, y), quiet=True)
    assert trained.called
