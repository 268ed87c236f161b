"""The ``nb201`` space's benchmark table: CIFAR-10 accuracy of all 15,625 cells, offline.

The numbers come from the ``analog-nasbench`` package (AnalogNAS-Bench, IBM), installed with
``pip install "nasplug[bench]"``. Its file ``data.anb`` is a pickle of a dict that maps a 6-tuple
of op codes to an ``analognasbench.data.Architecture`` record (with ``DriftMeasurement`` members);
its ``baseline_accuracy`` is the CIFAR-10 test accuracy (%) of the cell trained with that
package's own recipe (200 epochs of SGD, its own augmentation), not NAS-Bench-201's.

The package's module is never imported (it needs pandas and the deprecated ``pkg_resources``).
The file is located through the distribution's metadata and read with a restricted unpickler
that accepts the two record classes and nothing else, so a pickle naming any other global (a
function, a class of another module) is refused before anything of it runs.

Keys: the op codes of the edges in the order ``(0->1, 0->2, 0->3, 1->2, 1->3, 2->3)``, with
0 ``skip_connect``, 1 ``none``, 2 ``nor_conv_3x3``, 3 ``nor_conv_1x1``, 4 ``avg_pool_3x3``
(NASLib's encoding of NAS-Bench-201, which that package trained with). The tests check it on the
installed table: every cell whose edges cut the input from the output scores 10.0 (chance), and
no other cell does.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import itertools
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from nasplug.core.options import OptionError
from nasplug.core.types import Genotype

from . import CANDIDATES, EDGE_NAMES, cell_ops, edge_name

__all__ = ["DISTRIBUTION", "LABEL", "METRIC", "Nb201Table", "installed_table", "load_table"]

DISTRIBUTION = "analog-nasbench"
INSTALL = 'pip install "nasplug[bench]"'
METRIC = "table_accuracy"
LABEL = (
    "CIFAR-10 accuracy (%) in the analog-nasbench table "
    "(its own training recipe, not NAS-Bench-201's)"
)
#: The table's op codes, by code.
CODE_OPS: tuple[str, ...] = (
    "skip_connect",
    "none",
    "nor_conv_3x3",
    "nor_conv_1x1",
    "avg_pool_3x3",
)
#: The table's edge order, as the space's choice names.
CODE_EDGES: tuple[str, ...] = tuple(
    edge_name(j, i) for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
)
_FILE = "data.anb"
_MODULE = "analognasbench.data"


class _Architecture:
    """Stands in for ``analognasbench.data.Architecture``: the unpickler fills its ``__dict__``."""

    __dict__: dict[str, Any]


class _DriftMeasurement:
    """Stands in for ``analognasbench.data.DriftMeasurement``."""


_RECORDS: dict[tuple[str, str], type] = {
    (_MODULE, "Architecture"): _Architecture,
    (_MODULE, "DriftMeasurement"): _DriftMeasurement,
}


class _RecordUnpickler(pickle.Unpickler):
    """Builds the two record classes as plain local objects; refuses every other global."""

    def find_class(self, module: str, name: str) -> type:
        try:
            return _RECORDS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}; only {_MODULE}.Architecture and "
                f"{_MODULE}.DriftMeasurement records are accepted"
            ) from None


class Nb201Table:
    """The analog-nasbench CIFAR-10 accuracies as an array indexed by the six edges' ops.

    ``accuracy[k0, ..., k5]`` is the accuracy of the cell whose edge ``EDGE_NAMES[e]`` has op
    ``CANDIDATES[k_e]``. A :class:`~nasplug.core.interfaces.BenchmarkTable`.
    """

    label: str = LABEL
    metric: str = METRIC

    def __init__(self, accuracy: np.ndarray, source: str = "") -> None:
        shape = (len(CANDIDATES),) * len(EDGE_NAMES)
        if accuracy.shape != shape:
            raise ValueError(f"an nb201 table has shape {shape}, got {accuracy.shape}")
        self.accuracy = accuracy
        self.accuracy.flags.writeable = False
        self.source = source
        self._index = {op: k for k, op in enumerate(CANDIDATES)}

    def query(self, genotype: Genotype) -> float:
        """The table's accuracy of ``genotype``; a ValueError if it is not an nb201 genotype."""
        ops = cell_ops(genotype)
        return float(self.accuracy[tuple(self._index[ops[name]] for name in EDGE_NAMES)])

    def best(self) -> float:
        return float(self.accuracy.max())


def locate() -> Path:
    """The installed ``data.anb``; OptionError saying how to get it when it is not there."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise OptionError(
            f"the nb201 benchmark table needs the {DISTRIBUTION} package: {INSTALL}"
        ) from None
    files = [f for f in dist.files or () if f.name == _FILE]
    # The package ships the file twice (in its package and as data); either serves.
    for f in sorted(files, key=lambda f: not str(f).startswith("analognasbench/")):
        path = Path(str(f.locate()))
        if path.is_file():
            return path
    raise OptionError(
        f"{DISTRIBUTION} {dist.version} is installed without its table {_FILE}; reinstall it: "
        f"pip install --force-reinstall {DISTRIBUTION}"
    )


def _read(f: BinaryIO, where: str) -> Any:
    # The file holds 140,000 small objects: the cyclic collector, run again and again while
    # they are created, would take three quarters of the time (and they hold no cycles).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _RecordUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise OptionError(f"{where} is not an analog-nasbench table: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise OptionError(
            f"{where} is not a readable analog-nasbench table (truncated or damaged: "
            f"{type(e).__name__}); reinstall it: pip install --force-reinstall {DISTRIBUTION}"
        ) from None
    finally:
        if collecting:
            gc.enable()


def _array(records: Any, where: str) -> np.ndarray:
    """The accuracies of ``records`` (the unpickled dict) in the space's edge and op order."""
    if not isinstance(records, Mapping):
        raise OptionError(
            f"{where} holds a {type(records).__name__}, not a dict of architecture records"
        )
    n_ops, n_edges = len(CODE_OPS), len(CODE_EDGES)
    # Position in the table's key of each of the space's edges, and code of each candidate.
    positions = [CODE_EDGES.index(name) for name in EDGE_NAMES]
    codes = [CODE_OPS.index(op) for op in CANDIDATES]
    accuracy = np.full((n_ops,) * n_edges, np.nan)
    for key in itertools.product(range(n_ops), repeat=n_edges):
        record = records.get(key)
        value = getattr(record, "__dict__", {}).get("baseline_accuracy")
        if not isinstance(record, _Architecture) or not isinstance(value, float):
            raise OptionError(
                f"{where} lacks a baseline_accuracy record for cell {key}; accepted: the "
                f"analog-nasbench table of all {n_ops**n_edges} cells"
            )
        accuracy[tuple(key[positions[e]] for e in range(n_edges))] = value
    # ``accuracy`` is indexed by table codes in the space's edge order; reorder the op axis.
    return np.ascontiguousarray(accuracy[np.ix_(*[codes] * n_edges)])


def load_table(path: str | Path) -> Nb201Table:
    """The table in the analog-nasbench file ``path``; one-line OptionError if it is not one."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            records = _read(f, str(p))
    except FileNotFoundError:
        raise OptionError(f"benchmark table {p} does not exist; install it: {INSTALL}") from None
    except IsADirectoryError:
        raise OptionError(
            f"benchmark table {p} is a directory, not an analog-nasbench file"
        ) from None
    return Nb201Table(_array(records, str(p)), str(p))


@functools.cache
def installed_table() -> Nb201Table:
    """The installed package's table, read once per process (a failure is not remembered)."""
    return load_table(locate())
