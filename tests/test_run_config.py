"""A run's settings as one typed, frozen config: checked once, read from TOML, written to and
read back from config.json; and the run layer standing on its own below the API."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nasplug
from nasplug.api import SearchConfig, TrainConfig
from nasplug.core.options import OptionError
from nasplug.testing import TinySoftmax

RUN = Path(__file__).resolve().parents[1] / "src" / "nasplug" / "run"
TINY = {
    "space_opts": {"channels": 4, "layers": 2},
    "data_opts": {"train_per_class": 16, "test_per_class": 8},
    "batch_size": 32,
    "device": "cpu",
    "epochs": 1,
    "figures": False,  # report.md only: no test here looks at the pictures
}


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"batch_size": 2**40}, "batch_size 1099511627776 is too large; accepted: 1 to"),
        ({"seed": -1}, "seed must be an integer from 0 to 2**63-1, got -1"),
        ({"augment": "sideways"}, "augment must be one of standard, no-flip, off, got 'sideways'"),
        ({"stream": "maybe"}, "stream must be one of auto, on, off, got 'maybe'"),
        ({"workers": -1}, "workers must be an integer >= 0"),
        ({"deterministic": "yes"}, "deterministic must be true or false, got 'yes'"),
        ({"figures": "no"}, "figures must be true or false, got 'no'"),
        ({"space": 5}, "space must be a plugin name (text) or a SearchSpace, got 5"),
        ({"relax": ""}, "relax must be a plugin name (text) or a Relaxation, got ''"),
        ({"device": 3}, "device must be text (auto, cpu, cuda, cuda:N or mps), got 3"),
        ({"budget_penalty": 1.0}, "budget_penalty needs a budget"),
        ({"budget": "bytes=5"}, "unknown resource 'bytes'; accepted: params, flops, latency"),
        ({"compile": 3}, "compile must be true, false or a backend name, got 3"),
        ({"space_opts": [1]}, "space_opts must be a table of options (KEY = VALUE), got [1]"),
        ({"relax": TinySoftmax(), "relax_opts": {"tau": 1}}, "relax_opts apply to a relax given"),
        ({"tensorboard": True}, "tensorboard logs go into the run directory: give out=DIR"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line_naming_it_and_what_is_accepted(settings, message):
    with pytest.raises(OptionError) as info:
        SearchConfig(**settings)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_training_config_checks_its_settings_once():
    for settings, message in [
        ({"lr": 0}, "lr must be a positive number, got 0"),
        ({"drop_path": 1.0}, "drop_path must be in [0, 1), got 1.0"),
        ({"cutout": -2}, "cutout must be an integer >= 0 (0: off), got -2"),
        ({"baseline": "vgg"}, "unknown baseline 'vgg'; accepted: resnet"),
        ({"epochs": True}, "epochs must be a positive integer, got True"),
    ]:
        with pytest.raises(OptionError) as info:
            TrainConfig(**settings)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_a_config_is_frozen_and_a_changed_copy_is_checked_again():
    cfg = SearchConfig(epochs=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    assert cfg.replace(epochs=3).epochs == 3 and cfg.epochs == 2
    with pytest.raises(OptionError, match="epochs must be a positive integer"):
        cfg.replace(epochs=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


def test_a_budget_and_a_path_are_kept_in_one_form():
    cfg = SearchConfig(budget="params=50k", out=Path("runs") / "a")
    assert cfg.budget == {"params": 50_000.0} and cfg.out == str(Path("runs") / "a")
    assert cfg.to_dict()["budget"] == {"params": 50_000.0}


def test_from_toml_reads_the_file_then_the_overrides(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text(
        '[run]\nepochs = 3\nbatch-size = 16\nrelax = "sparsemax"\n'
        "[space]\nchannels = 4\nlayers = 2\n[data]\ntrain_per_class = 8\n"
    )
    cfg = SearchConfig.from_toml(
        path, epochs=5, seed=None, space_opts={"layers": 3}, strategy_opts={"w_lr": 0.1}
    )
    assert (cfg.epochs, cfg.batch_size, cfg.relax, cfg.seed) == (5, 16, "sparsemax", 0)
    assert cfg.space_opts == {"channels": 4, "layers": 3}  # added to the file's table
    assert cfg.strategy_opts == {"w_lr": 0.1} and cfg.data_opts == {"train_per_class": 8}
    stored = cfg.to_dict()
    assert stored["opts"]["space"] == {"channels": 4, "layers": 3} and stored["batch_size"] == 16
    with pytest.raises(OptionError, match="unknown setting 'epoch'; accepted:"):
        SearchConfig.from_toml(path, epoch=1)
    path.write_text("[run]\nepoch = 1\n")
    with pytest.raises(OptionError, match=r"unknown key 'epoch' in \[run\]; accepted: space,"):
        SearchConfig.from_toml(path)


def test_an_older_config_json_reads_back_with_the_settings_it_ran_with(tmp_path):
    stored = {
        "space": "cell",
        "relax": "softmax",
        "strategy": "darts",
        "data": "fashion-mnist-small",
        "epochs": 2,
        "batch_size": 8,
        "seed": 1,
        "device": "cpu",
        "opts": {"space": {"channels": 4}, "relax": {}, "strategy": {}, "data": {}},
    }
    cfg = SearchConfig.from_stored(stored, tmp_path)
    assert cfg.augment == "off"  # from before augmentation existed: it searched without
    assert cfg.workers == 2 and cfg.space_opts == {"channels": 4}
    assert SearchConfig.from_stored(cfg.to_dict(), tmp_path) == cfg
    with pytest.raises(OptionError, match="config.json lacks 'seed'"):
        SearchConfig.from_stored({k: v for k, v in stored.items() if k != "seed"}, tmp_path)
    train = TrainConfig(space="cell", data="digits", epochs=3, threads=1)
    assert TrainConfig.from_stored(train.to_dict(), tmp_path) == train
    assert list(train.to_dict())[:3] == ["command", "source", "baseline"]


def test_search_with_a_config_equals_search_with_keywords():
    cfg = SearchConfig(relax="sparsemax", threads=1, **TINY)
    a = nasplug.search(config=cfg, quiet=True)
    b = nasplug.search(relax="sparsemax", threads=1, quiet=True, **TINY)
    c = nasplug.search(
        config=SearchConfig(relax="softmax", threads=1, **TINY), relax="sparsemax", quiet=True
    )
    assert a.genotype == b.genotype == c.genotype and a.config == b.config == c.config
    drop = ("wall_seconds", "search_seconds")
    assert {k: v for k, v in a.metrics.items() if k not in drop} == {
        k: v for k, v in b.metrics.items() if k not in drop
    }
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        nasplug.search(epoch=1)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("module", sorted(p.stem for p in RUN.glob("*.py")))
def test_the_run_layer_imports_nothing_above_it(module):
    above = ("nasplug.api", "nasplug.report", "nasplug.cli", "nasplug.testing")
    bad = [m for m in _imports(RUN / f"{module}.py") if m.startswith(above) or m == "nasplug"]
    assert not bad, f"nasplug.run.{module} imports {bad}"
    code = (
        f"import sys, nasplug.run.{module}; "
        "sys.exit(any(m in sys.modules for m in ('nasplug.api', 'nasplug.report', 'nasplug.cli')))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_config_json_of_a_search_is_what_its_config_says(tmp_path):
    found = nasplug.search(out=tmp_path / "run", quiet=True, threads=1, **TINY)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored == found.config
    assert SearchConfig.from_stored(stored, tmp_path / "run").to_dict() == stored


def test_the_typed_keywords_of_search_are_the_config_s_settings():
    import dataclasses

    from nasplug.run.config import PLUGIN_KEYS, SearchSettings

    recorded = {"data_fingerprint", "versions"}
    fields = {f.name for f in dataclasses.fields(SearchConfig)} - set(PLUGIN_KEYS) - recorded
    assert set(SearchSettings.__annotations__) == fields
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'; accepted: epochs"):
        nasplug.search(epoch=1)  # type: ignore[call-arg]
