import os

import pytest
import torch

# Tests run on 2 shared cores: keep each process to one intra-op thread for stable, quick runs.
torch.set_num_threads(1)
os.environ.setdefault("NASPLUG_QUIET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
