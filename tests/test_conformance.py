"""Every registered plugin against the conformance suites of ``nasplug.testing``.

Plugins are found through the registry, so an installed plugin is tested by adding nothing.
Each runs with the ``test_options`` it declares (see :func:`nasplug.testing.tiny_instance`),
else with its defaults.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import torch

from nasplug.core import registry
from nasplug.core.types import Genotype
from nasplug.engine.streaming import resident
from nasplug.testing import (
    DatasetConformance,
    RelaxationConformance,
    SpaceConformance,
    StrategyConformance,
    tiny_instance,
)

DARTS_V2 = (
    "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def make(axis: str, name: str, tmp: Path) -> Any:
    """The registered plugin ``name`` of ``axis``, built with the test options it declares."""
    return tiny_instance(registry.load(axis, name), tmp)


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
            if type(dataset).test_options.get("download") is False:
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
