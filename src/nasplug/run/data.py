"""The data of a run: loading it, naming and fingerprinting it, and checking a resume gets the
same data again."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from nasplug.core.options import AUGMENT_MODES, OptionError
from nasplug.run.config import SearchConfig, TrainConfig

if TYPE_CHECKING:
    from nasplug.core.types import Data

__all__ = ["check_data_given", "data_name", "load_data", "settle_data", "warn_batch_size"]

Config = TypeVar("Config", SearchConfig, TrainConfig)


def load_data(
    name: str,
    opts: Mapping[str, Any],
    given: Any = None,
    *,
    task: Any = None,
    test: Any = None,
) -> Data:
    """The data of a run: ``given`` (see :func:`nasplug.search`'s ``data``) or the dataset
    plugin registered as ``name`` with options ``opts``."""
    from nasplug.core import registry
    from nasplug.core.interfaces import Dataset
    from nasplug.core.options import instantiate
    from nasplug.core.types import Data

    if (task is not None or test is not None) and (
        given is None or isinstance(given, (Data, Dataset))
    ):
        raise OptionError("task= and test= go with arrays or a torch Dataset given as data")
    if given is None:
        cls = registry.load("dataset", name)
        return instantiate(cls, opts, f"dataset {name!r}").load()
    if isinstance(given, Data):
        return given
    if isinstance(given, Dataset):
        return given.load()
    from nasplug.engine.userdata import to_data

    return to_data(given, task=task, test=test, name=name)


def check_data_given(cfg: SearchConfig | TrainConfig, given: Any, label: str) -> None:
    """Refuse to go on without the in-memory data a run was made from (which no name loads)."""
    stored = cfg.data_fingerprint or {}
    name = str(cfg.data)
    legacy = name == "arrays" or name.startswith("torch-dataset:")
    if given is None and (stored.get("in_memory") or (legacy and not stored)):
        raise OptionError(
            f"{label} was made from in-memory data ({name}), which is not stored with it; "
            "pass the same data again (data=... from Python)"
        )


def settle_data(
    cfg: Config, data: Data, given: Any, test: Any, *, resume: bool, label: str
) -> Config:
    """``cfg`` with the loaded ``data``'s fingerprint (checked against the stored one on
    resume), in-memory data named by it, and the data's augmentation when none was given."""
    from nasplug.core.interfaces import Dataset
    from nasplug.engine.userdata import check_same_data, run_fingerprint

    handed = None if isinstance(given, Dataset) else given
    found = run_fingerprint(data, handed, test, in_memory=given is not None)
    name = str(cfg.data)
    if resume:
        if cfg.data_fingerprint:
            try:
                check_same_data(label, dict(cfg.data_fingerprint), found)
            except ValueError as e:
                raise OptionError(str(e)) from None
    else:
        if name in ("arrays", "data") or name.startswith("torch-dataset:"):
            name = f"{name}-{found['hash'][:8]}"
        cfg = cfg.replace(data=name, data_fingerprint=found)
    if data.augment is not None and data.augment not in AUGMENT_MODES:
        raise OptionError(
            f"dataset {name!r} declares augment={data.augment!r}; accepted: "
            f"{', '.join(AUGMENT_MODES)} or None"
        )
    if cfg.augment is None:
        cfg = cfg.replace(augment=data.augment or "standard")
    return cfg


def data_name(given: Any) -> str | None:
    """The config's name for data given in memory: a loaded ``Data``'s own name; ``arrays``,
    ``torch-dataset:<class>`` or ``data`` (a nameless ``Data``), to which :func:`settle_data`
    adds the fingerprint. None for a dataset plugin or a name."""
    import torch.utils.data

    from nasplug.core.interfaces import Dataset
    from nasplug.core.types import Data

    if given is None or isinstance(given, (str, Dataset)):
        return None
    if isinstance(given, Data):
        return given.name or "data"
    if isinstance(given, torch.utils.data.Dataset):
        return f"torch-dataset:{type(given).__name__}"
    return "arrays"


def warn_batch_size(batch_size: int, rows: int, what: str) -> None:
    """Say that a batch larger than the data it draws from is all of the data."""
    if batch_size > rows:
        print(
            f"nasplug: warning: batch size {batch_size} is larger than the {rows} rows of {what}; "
            f"each step uses all {rows} rows (as batch size {rows} would)",
            file=sys.stderr,
        )
