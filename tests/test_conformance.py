"""Every registered plugin against the conformance suites of ``nasplug.testing``.

Plugins are found through the registry, so an installed plugin is tested by adding nothing.
Plugins run with the options named in ``TINY``, else with the ``test_options`` they declare
(see :func:`nasplug.testing.plugin_test_options`), else with their defaults.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nasplug.core import registry
from nasplug.core.options import instantiate
from nasplug.core.types import Genotype
from nasplug.engine.streaming import resident
from nasplug.testing import (
    DatasetConformance,
    RelaxationConformance,
    SpaceConformance,
    StrategyConformance,
    plugin_test_options,
)


def _npz(tmp: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    np.savez(tmp / "tiny.npz", X=rng.normal(size=(30, 5)), y=np.arange(30) % 3)
    return {"path": str(tmp / "tiny.npz")}


def _image_folder(tmp: Path) -> dict[str, Any]:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp / "imgs" / cls).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 255, size=(6, 6, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp / "imgs" / cls / f"{i}.png")
    return {"path": str(tmp / "imgs"), "size": 8}


_OFFLINE_SUBSET = {"download": False, "train_per_class": 3, "test_per_class": 2}

#: Options that keep a built-in tiny, by axis then name (a callable gets a temporary folder for
#: files it writes). Plugins not named here run with their declared ``test_options``.
TINY: dict[str, dict[str, dict[str, Any] | Callable[[Path], dict[str, Any]]]] = {
    "space": {
        "cell": {"channels": 4, "layers": 3, "nodes": 2},  # 3 layers: a normal cell too
        "dense": {"blocks": 3, "layers": 2, "width": 8},
        "nb201": {"cells": 1, "channels": 4},
    },
    "relaxation": {},
    "strategy": {
        "pdarts": {"stages": 2, "depths": "", "keep": "2", "skip_dropout": "0.0,0.4"},
        "random": {"candidates": 2, "train_epochs": 1},
        "evolution": {"population": 2, "sample": 2, "candidates": 3, "train_epochs": 1},
        "tpe": {"trials": 2, "train_epochs": 1, "startup_trials": 1},
    },
    "dataset": {
        "fashion-mnist-small": {"train_per_class": 3, "test_per_class": 2},
        "fashion-mnist-multilabel": {"train_size": 20, "test_size": 10},
        "mnist": _OFFLINE_SUBSET,
        "fashion-mnist": _OFFLINE_SUBSET,
        "cifar10": _OFFLINE_SUBSET,
        "npz": _npz,
        "imagefolder": _image_folder,
    },
}

DARTS_V2 = (
    "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def make(axis: str, name: str, tmp: Path) -> Any:
    """The registered plugin ``name`` of ``axis`` with its ``TINY`` or declared test options."""
    cls = registry.load(axis, name)
    opts = TINY[axis].get(name, plugin_test_options(cls))
    if callable(opts):
        opts = opts(tmp)
    return instantiate(cls, opts, f"{axis} {name!r}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "plugin_name" in metafunc.fixturenames:
        metafunc.parametrize("plugin_name", registry.names(metafunc.cls.axis))


class TestSpaces(SpaceConformance):
    axis = "space"

    @pytest.fixture
    def space(self, plugin_name, tmp_path):
        return make(self.axis, plugin_name, tmp_path)


class TestRelaxations(RelaxationConformance):
    axis = "relaxation"

    @pytest.fixture
    def relaxation(self, plugin_name, tmp_path):
        return make(self.axis, plugin_name, tmp_path)


class TestStrategies(StrategyConformance):
    axis = "strategy"

    @pytest.fixture
    def strategy(self, plugin_name, tmp_path):
        return make(self.axis, plugin_name, tmp_path)


class TestDatasets(DatasetConformance):
    axis = "dataset"

    @pytest.fixture
    def dataset(self, plugin_name, tmp_path):
        return make(self.axis, plugin_name, tmp_path)

    @pytest.fixture
    def data(self, dataset, plugin_name):
        try:
            return resident(dataset.load())  # streaming datasets read into tensors
        except ValueError as e:
            # Full-size sets may not be on this machine; the error must still be one line.
            assert "\n" not in str(e)
            if plugin_name in TINY["dataset"] and TINY["dataset"][plugin_name] is _OFFLINE_SUBSET:
                pytest.skip(f"{plugin_name} is not available offline: {e}")
            raise


def test_every_axis_has_a_registered_plugin():
    for axis in registry.AXES:
        assert registry.names(axis), f"no {axis} registered"


def test_darts_v2_string_parses_to_its_cell_without_eval_and_builds(monkeypatch, tmp_path):
    def no_eval(*args, **kwargs):
        raise AssertionError("genotype text must be parsed, never evaluated")

    monkeypatch.setattr(builtins, "eval", no_eval)
    genotype = Genotype.parse(DARTS_V2)
    monkeypatch.undo()
    assert genotype.space == "cell"
    assert genotype.spec["normal"] == (
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    )
    assert genotype.spec["reduce"] == (
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    )
    assert (
        list(genotype.spec["normal_concat"]) == list(genotype.spec["reduce_concat"]) == [2, 3, 4, 5]
    )
    from nasplug.core.types import Task

    space = make("space", "cell", tmp_path)
    task = Task("classification", (3, 16, 16), 10)
    net = space.build(genotype, task).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert "sep_conv_3x3(0)" in space.describe(genotype)
