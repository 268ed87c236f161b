import os
import sys

import pytest
import torch

# Tests run on 2 shared cores: keep each process to one intra-op thread for stable, quick runs.
torch.set_num_threads(1)
os.environ.setdefault("NASPLUG_QUIET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fresh folder on sys.path; modules imported from it are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if name.startswith("nasplug_fake"):
            del sys.modules[name]
