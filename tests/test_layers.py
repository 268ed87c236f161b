"""The import layers (pyproject.toml's ``[tool.importlinter]``) hold, and the check catches a break.

``lint-imports`` builds the import graph with grimp, which counts every import: at module level,
inside a function and under ``TYPE_CHECKING`` alike.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath) if pythonpath else ""}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_contract_is_kept():
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    for contract in ("layers", "built-in", "cycle"):
        assert contract in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # an upward import hidden in a function
        (
            "core/types.py",
            "def _late():\n    from nasplug import api  # noqa\n",
            "nasplug.core is not allowed to import nasplug.api",
        ),
        # an upward import only for type checking
        (
            "engine/rng.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nasplug.run import rundir\n",
            "nasplug.engine is not allowed to import nasplug.run",
        ),
        # a cycle inside one layer
        (
            "core/types.py",
            "def _late():\n    from nasplug.core import registry  # noqa\n",
            "No cycles are allowed in nasplug.core",
        ),
        # the library naming a built-in plugin
        (
            "searchlib/costs.py",
            "def _late():\n    import nasplug_builtins.spaces.cell  # noqa\n",
            "nasplug never imports a built-in plugin by name BROKEN",
        ),
    ],
)
def test_a_broken_layer_is_caught(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "src" / "nasplug" / module
    target.write_text(target.read_text() + "\n\n" + line)
    result = _lint(tmp_path / "src")
    assert result.returncode == 1, result.stdout
    assert broken in result.stdout


def test_a_clone_in_the_working_directory_does_not_shadow_the_installed_package(tmp_path):
    # a notebook started in the folder that holds a clone named nasplug: the clone's root is a
    # folder without __init__.py, which must not win over the installed package
    (tmp_path / "nasplug" / "src").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-c", "import nasplug; print(nasplug.search.__module__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "nasplug.api", result.stderr
