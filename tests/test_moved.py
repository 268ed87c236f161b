"""Modules of 0.1.0 that moved into the layers still import, warning where they went."""

import json
import subprocess
import sys
import textwrap

from nasplug._moved import MOVED


def test_every_moved_name_imports_as_its_new_module_with_a_warning():
    script = textwrap.dedent(
        """
        import importlib, json, sys, warnings
        from nasplug._moved import MOVED
        out = {}
        for old, new in MOVED.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = importlib.import_module(old)
            out[old] = {
                "same": module is importlib.import_module(new),
                "warned": [str(w.message) for w in caught if w.category is DeprecationWarning],
            }
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert set(seen) == set(MOVED)
    for old, new in MOVED.items():
        assert seen[old]["same"], old
        assert seen[old]["warned"] == [
            f"{old} moved to {new}; import it from there ({old} goes in 0.2)"
        ]


def test_a_plugin_written_against_the_old_names_still_works():
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        from nasplug.interfaces import SearchSpace
        from nasplug.types import Genotype
        from nasplug.trainer import Trainer
        import nasplug.core.interfaces as core
        import nasplug.core.types as types
        import nasplug.engine.trainer as engine
        assert SearchSpace is core.SearchSpace
        assert Genotype is types.Genotype
        assert Trainer is engine.Trainer
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_an_unknown_name_is_still_an_import_error():
    result = subprocess.run(
        [sys.executable, "-c", "import nasplug.no_such_module"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "No module named 'nasplug.no_such_module'" in result.stderr
