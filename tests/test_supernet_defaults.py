"""The supernet's optimisers start from one set of defaults, whichever way a search is built."""

from __future__ import annotations

import dataclasses

from torch import nn

from nasplug.core import registry
from nasplug.core.types import Choice
from nasplug.searchlib import supernet_defaults as defaults
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.supernet import SupernetStepper
from nasplug.searchlib.supernet_options import SupernetOptions


def test_darts_and_pdarts_default_to_the_supernet_options():
    for name in ("darts", "pdarts"):
        options = registry.load("strategy", name)().options
        assert dataclasses.replace(options, strategy="darts") == SupernetOptions()


def test_the_stepper_builds_its_optimisers_from_the_defaults():
    logits = ArchLogits((Choice("a", ("x", "y")),))
    stepper = SupernetStepper(None, None, nn.Linear(2, 2), logits)  # type: ignore[arg-type]
    (w,) = stepper.w_opt.param_groups
    assert (w["lr"], w["momentum"], w["weight_decay"]) == (
        defaults.W_LR,
        defaults.W_MOMENTUM,
        defaults.W_WEIGHT_DECAY,
    )
    (a,) = stepper.a_opt.param_groups
    assert (a["lr"], a["betas"], a["weight_decay"]) == (
        defaults.A_LR,
        defaults.A_BETAS,
        defaults.A_WEIGHT_DECAY,
    )
