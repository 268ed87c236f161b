"""Genotypes name their space by its registered name, and plugins declare their test options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasplug.cli import main
from nasplug.core import registry
from nasplug.core.options import OptionError
from nasplug.core.types import Genotype
from nasplug.testing import (
    TINY_TASK,
    TinySpace,
    plugin_test_options,
    random_suggest,
    tiny_instance,
)

SPACE = '''
from typing import Any, ClassVar

from nasplug.testing import TinySpace


class NamedTiny(TinySpace):
    """TinySpace under a registered name of its own, with declared test options."""

    test_options: ClassVar[dict[str, Any]] = {"widths": "2,3", "activations": "relu,tanh"}
'''


@pytest.fixture
def registered(site: Path) -> type:
    """``NamedTiny`` registered as space ``named-tiny`` by a distribution on sys.path."""
    info = site / "nasplug_fake_names-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nasplug-fake-names\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[nasplug.spaces]\nnamed-tiny = nasplug_fake_names:NamedTiny\n"
    )
    (site / "nasplug_fake_names.py").write_text(SPACE)
    return registry.load("space", "named-tiny")


def _weights(space: TinySpace) -> dict[str, torch.Tensor]:
    return {c.name: torch.rand(len(c.candidates)) for c in space.choices()}


def test_derive_and_sample_name_the_registered_space(registered):
    assert registry.registered_name(registered) == "named-tiny"
    space = registered()
    assert space.derive(_weights(space)).space == "named-tiny"
    assert space.sample(random_suggest(0)).space == "named-tiny"


def test_a_class_not_loaded_through_the_registry_names_itself(registered):
    class Subclass(registered):  # inherits the class, not its registered name
        pass

    assert registry.registered_name(Subclass) is None
    assert Subclass().sample(random_suggest(0)).space == "Subclass"
    assert TinySpace().derive(_weights(TinySpace())).space == "TinySpace"


def test_a_genotype_file_names_a_space_the_registry_loads(registered, tmp_path):
    genotype = registered().sample(random_suggest(1))
    path = tmp_path / "genotype.json"
    path.write_text(genotype.to_json())
    again = Genotype.parse(path.read_text())
    space = registry.load("space", again.space)()
    assert space.build(again, TINY_TASK) is not None


def test_old_genotypes_that_name_a_class_still_read_and_build():
    old = {"space": "TinySpace", "spec": {"choices": {"width": "8", "activation": "tanh"}}}
    genotype = Genotype.from_dict(old)
    assert genotype.space == "TinySpace"
    assert TinySpace().build(genotype, TINY_TASK) is not None


def test_plugins_declare_their_tiny_test_options(registered):
    assert plugin_test_options(registered) == {"widths": "2,3", "activations": "relu,tanh"}
    assert plugin_test_options(TinySpace) == {}
    space = tiny_instance(registered, widths="5")
    assert space.widths == ("5",) and space.activations == ("relu", "tanh")


def test_bad_test_options_are_one_line_errors(registered):
    with pytest.raises(OptionError, match="unknown option 'depth' for plugin 'named-tiny'"):
        tiny_instance(registered, depth=3)

    class Bad(TinySpace):
        test_options = ["widths=2"]

    with pytest.raises(TypeError, match="Bad.test_options must be a dict"):
        plugin_test_options(Bad)


def test_a_search_writes_the_registered_name_and_old_run_directories_still_read(
    registered, tmp_path, capsys
):
    run, trained = tmp_path / "run", tmp_path / "trained"
    common = ["--data", "diabetes", "--device", "cpu", "--quiet", "--batch-size", "64"]
    search = ["--strategy", "random", "--strategy-opt", "candidates=1"]
    argv = ["run", "--space", "named-tiny", *search, *common, "--epochs", "1", "--out", run]
    assert main([str(a) for a in argv]) == 0
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["space"] == "named-tiny"
    # A genotype file alone names the space to build.
    argv = ["train", run / "genotype.json", *common, "--epochs", "1", "--out", trained]
    assert main([str(a) for a in argv]) == 0
    # Before, the genotype carried the class name: such a run directory still shows and trains.
    genotype["space"] = "NamedTiny"
    (run / "genotype.json").write_text(json.dumps(genotype))
    assert main(["show", str(run)]) == 0
    assert '"width": "8"' in capsys.readouterr().out
    argv = ["train", run, *common, "--epochs", "1", "--out", tmp_path / "again"]
    assert main([str(a) for a in argv]) == 0
