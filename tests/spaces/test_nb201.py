"""The nb201 space: NAS-Bench-201's layout and arch strings, and its offline benchmark table."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

import nasplug
from nasplug.core.options import OptionError
from nasplug.core.types import Genotype, Task
from nasplug.engine.memory import count_params
from nasplug_builtins.spaces.nb201 import (
    CANDIDATES,
    EDGE_NAMES,
    Nb201Space,
    arch_string,
    parse_arch,
)
from nasplug_builtins.spaces.nb201 import table as nb201_table

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
CIFAR = Task("classification", (3, 32, 32), 10)


def uniform(op: str) -> Genotype:
    """The cell with ``op`` on every edge."""
    return Genotype("nb201", {"choices": dict.fromkeys(EDGE_NAMES, op)})


# ---- the space ---------------------------------------------------------------------------------
def test_arch_strings_round_trip_in_nas_bench_201_edge_order() -> None:
    g = parse_arch(EXAMPLE)
    assert g.space == "nb201"
    assert dict(g.spec["choices"]) == {
        "1<-0": "nor_conv_3x3",
        "2<-0": "nor_conv_3x3",
        "2<-1": "skip_connect",
        "3<-0": "skip_connect",
        "3<-1": "none",
        "3<-2": "nor_conv_3x3",
    }
    assert Nb201Space().describe(g) == arch_string(g) == EXAMPLE
    for ops in itertools.islice(itertools.product(CANDIDATES, repeat=6), 0, 15625, 997):
        g = Genotype("nb201", {"choices": dict(zip(EDGE_NAMES, ops, strict=True))})
        assert parse_arch(arch_string(g)) == g
        assert Genotype.from_json(g.to_json()) == g


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|", "node(s)"),
        (EXAMPLE.replace("skip_connect~1", "skip_connect~2"), "'op~1'"),
        (EXAMPLE.replace("none~1", "conv_9x9~1"), "unknown op 'conv_9x9'"),
        (EXAMPLE.replace("|+|skip_connect~0|", "|+skip_connect~0|"), "node 3"),
        (EXAMPLE.replace("|none~1|", "|"), "lists 2 edge(s)"),
        ("Genotype(normal=[])", "node(s)"),
        ("", "node(s)"),
    ],
)
def test_bad_arch_strings_are_one_line_errors_naming_the_fault(text: str, names: str) -> None:
    with pytest.raises(ValueError, match="nb201|op") as e:
        parse_arch(text)
    assert "\n" not in str(e.value) and names in str(e.value)


def test_bad_genotypes_and_options_are_one_line_errors() -> None:
    space = Nb201Space(cells=1, channels=4)
    bad = [
        Genotype("cell", {"choices": {}}),
        Genotype("nb201", {"choices": {n: "none" for n in EDGE_NAMES[:5]}}),
        Genotype("nb201", {"choices": {**dict.fromkeys(EDGE_NAMES, "none"), "4<-0": "none"}}),
        Genotype("nb201", {"choices": dict.fromkeys(EDGE_NAMES, "sep_conv_3x3")}),
    ]
    for g in bad:
        with pytest.raises(ValueError) as e:
            space.build(g, CIFAR)
        assert "\n" not in str(e.value)
    for opts in ({"cells": 0}, {"channels": 0}, {"cells": True}):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            Nb201Space(**opts)


def test_parameters_equal_nas_bench_201_s_published_range() -> None:
    """NAS-Bench-201 (C=16, N=5, CIFAR-10) reports 0.073306 M to 1.531546 M parameters: the
    cells with every edge none and every edge nor_conv_3x3."""
    space = Nb201Space()
    assert count_params(space.build(uniform("none"), CIFAR)) == 73_306
    assert count_params(space.build(uniform("nor_conv_3x3"), CIFAR)) == 1_531_546
    # Parameter-free ops add nothing; 1x1 convolutions add a ninth of a 3x3's weights.
    assert count_params(space.build(uniform("avg_pool_3x3"), CIFAR)) == 73_306
    assert count_params(space.build(uniform("skip_connect"), CIFAR)) == 73_306
    conv1 = count_params(space.build(uniform("nor_conv_1x1"), CIFAR))
    assert conv1 - 73_306 == 5 * 6 * sum(c * c + 2 * c for c in (16, 32, 64))


@pytest.mark.parametrize(
    "task",
    [
        Task("classification", (3, 9, 9), 4),  # odd sizes through both reductions
        Task("regression", (1, 8, 8), 2),
        Task("multilabel", (2, 8, 8), 3),
    ],
)
def test_supernet_and_network_serve_every_task_kind(task: Task) -> None:
    space = Nb201Space(cells=1, channels=4)
    x = torch.randn(3, *task.input_shape)
    weights = {c.name: torch.full((5,), 0.2) for c in space.choices()}
    assert space.supernet(task)(x, weights).shape == (3, task.outputs)
    assert space.build(parse_arch(EXAMPLE), task)(x).shape == (3, task.outputs)


def test_vector_input_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"needs image input \(C, H, W\); got input_shape \(10,\)"):
        Nb201Space(cells=1, channels=4).supernet(Task("classification", (10,), 2))


def test_a_cell_without_any_edge_computes_zeros_but_the_network_still_runs() -> None:
    net = Nb201Space(cells=1, channels=4).build(uniform("none"), CIFAR)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


# ---- the table file: refusals need no installed package -----------------------------------------
#: A stand-in for the package's record class, with its module and name.
Architecture = type("Architecture", (), {"__module__": "analognasbench.data"})


def record(accuracy: float) -> object:
    record = Architecture()
    record.baseline_accuracy = accuracy  # type: ignore[attr-defined]
    return record


def _pickled_records(monkeypatch: pytest.MonkeyPatch, records: dict) -> bytes:
    """``records`` pickled as the package pickles its table: classes of analognasbench.data."""
    fake = types.ModuleType("analognasbench.data")
    fake.Architecture = Architecture  # type: ignore[attr-defined]
    # Stand-ins for the package and its module, so that nothing of the real one is imported.
    monkeypatch.setitem(sys.modules, "analognasbench", types.ModuleType("analognasbench"))
    monkeypatch.setitem(sys.modules, "analognasbench.data", fake)
    return pickle.dumps(records, protocol=4)


def test_a_pickle_naming_any_other_class_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "data.anb"
    path.write_bytes(pickle.dumps({(0,) * 6: Exploit()}))
    with pytest.raises(OptionError) as e:
        nb201_table.load_table(path)
    assert "\n" not in str(e.value)
    assert "only analognasbench.data.Architecture and" in str(e.value)
    assert ("posix.system" in str(e.value)) or ("nt.system" in str(e.value))
    assert not marker.exists()


def test_missing_truncated_and_foreign_files_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = {k: record(50.0) for k in itertools.product(range(5), repeat=6)}
    good = _pickled_records(monkeypatch, full)
    (tmp_path / "good.anb").write_bytes(good)
    table = nb201_table.load_table(tmp_path / "good.anb")
    assert table.query(parse_arch(EXAMPLE)) == 50.0 and table.best() == 50.0
    cases = {
        "missing.anb": None,
        "truncated.anb": good[: len(good) // 2],
        "empty.anb": b"",
        "text.anb": b"not a pickle at all",
        "list.anb": pickle.dumps([1, 2, 3]),
        "partial.anb": _pickled_records(monkeypatch, {(0,) * 6: record(50.0)}),
        "wrong.anb": _pickled_records(monkeypatch, {**full, (1,) * 6: record(1)}),  # type: ignore[arg-type]
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(OptionError) as e:
            nb201_table.load_table(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value), name


def test_without_the_package_benchmark_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    nb201_table.installed_table.cache_clear()
    try:
        with pytest.raises(OptionError) as e:
            Nb201Space().benchmark()
    finally:
        nb201_table.installed_table.cache_clear()
    assert str(e.value) == (
        'the nb201 benchmark table needs the analog-nasbench package: pip install "nasplug[bench]"'
    )


# ---- the installed table: its encoding, verified -----------------------------------------------
def _installed() -> nb201_table.Nb201Table:
    try:
        return nb201_table.installed_table()
    except OptionError as e:
        pytest.skip(f"the benchmark table is not installed: {e}")


def _connected(ops: dict[str, str]) -> bool:
    """Whether some path of edges other than none leads from the cell's input to its output."""
    reached = {0}
    for j in (1, 2, 3):
        if any(i in reached and ops[f"{j}<-{i}"] != "none" for i in range(j)):
            reached.add(j)
    return 3 in reached


def test_installed_table_encoding_cut_cells_score_chance_and_only_they() -> None:
    table = _installed()
    assert table.label.startswith("CIFAR-10 accuracy") and table.metric == "table_accuracy"
    cut = kept = 0
    for ops in itertools.product(CANDIDATES, repeat=6):
        cell = dict(zip(EDGE_NAMES, ops, strict=True))
        value = table.query(Genotype("nb201", {"choices": cell}))
        if _connected(cell):
            kept += 1
            assert value > 30.0, arch_string(Genotype("nb201", {"choices": cell}))
        else:
            cut += 1
            assert value == 10.0, arch_string(Genotype("nb201", {"choices": cell}))
    assert (cut, kept) == (341, 15_284)


def test_installed_table_known_cells_and_the_best_keep_skip_on_0_to_3() -> None:
    table = _installed()
    assert table.query(uniform("nor_conv_3x3")) == pytest.approx(93.2424)
    assert table.query(uniform("none")) == 10.0
    conv_skip = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert table.query(parse_arch(conv_skip)) == pytest.approx(93.988)
    assert table.best() == pytest.approx(94.0664)
    order = table.accuracy.reshape(-1).argsort()[::-1][:10]
    for flat in order:
        ops = [CANDIDATES[k] for k in divmod_all(int(flat))]
        assert dict(zip(EDGE_NAMES, ops, strict=True))["3<-0"] == "skip_connect"
    with pytest.raises(ValueError, match="expected 'nb201'"):
        table.query(Genotype("cell", {"choices": {}}))


def divmod_all(flat: int) -> list[int]:
    """The six candidate indices of a flat index into the table's array."""
    digits = []
    for _ in range(6):
        flat, k = divmod(flat, 5)
        digits.append(k)
    return digits[::-1]


# ---- training an arch string -------------------------------------------------------------------
def test_nasplug_train_reads_an_arch_string_file_given_the_space(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasplug.cli import main

    arch = tmp_path / "arch.txt"
    arch.write_text(EXAMPLE + "\n")
    common = ["--epochs", "1", "--quiet", "--device", "cpu"]
    common += ["--data-opt", "train_per_class=3", "--data-opt", "test_per_class=2"]
    assert main(["train", str(arch), *common, "--out", str(tmp_path / "none")]) == 2
    assert "with --space NAME" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    out = tmp_path / "trained"
    tiny = ["--space-opt", "cells=1", "--space-opt", "channels=4"]
    assert main(["train", str(arch), "--space", "nb201", *tiny, *common, "--out", str(out)]) == 0
    trained = json.loads((out / "train.json").read_text())
    assert Genotype.from_dict(trained["genotype"]) == parse_arch(EXAMPLE)
    try:
        assert trained["table_accuracy"] == nb201_table.installed_table().query(parse_arch(EXAMPLE))
    except OptionError:  # the table is not installed: the training ran without it
        assert "table_accuracy" not in trained
    arch.write_text(EXAMPLE.replace("none~1", "conv_9x9~1"))
    bad = tmp_path / "bad"
    assert main(["train", str(arch), "--space", "nb201", *common, "--out", str(bad)]) == 2
    assert "unknown op 'conv_9x9' in nb201 arch string" in capsys.readouterr().err
    assert not bad.exists()


def test_an_nb201_search_records_its_cell_s_table_accuracy(tmp_path: Path) -> None:
    import nasplug

    table = _installed()
    found = nasplug.search(
        "nb201",
        "sparsemax",
        "darts",
        space_opts={"cells": 1, "channels": 4},
        data_opts={"train_per_class": 4, "test_per_class": 2},
        epochs=1,
        batch_size=20,
        device="cpu",
        quiet=True,
    )
    assert found.metrics["table_accuracy"] == table.query(found.genotype)
    assert found.metrics["table_label"] == table.label


def test_restrict_and_depth_serve_progressive_search_and_survive_a_checkpoint() -> None:
    space = Nb201Space(cells=1, channels=4)
    kept = space.restrict({"3<-0": ["skip_connect", "nor_conv_3x3"], "1<-0": "none"})
    assert dict((c.name, c.candidates) for c in kept.choices())["3<-0"] == (
        "skip_connect",
        "nor_conv_3x3",
    )
    assert [c.candidates for c in space.choices()] == [CANDIDATES] * 6  # the original is kept
    weights = {c.name: torch.full((len(c.candidates),), 0.5) for c in kept.choices()}
    task = Task("classification", (1, 8, 8), 3)
    assert kept.supernet(task)(torch.randn(2, 1, 8, 8), weights).shape == (2, 3)
    with pytest.raises(
        ValueError, match="'avg_pool_3x3' is not a candidate of edge '1<-0'; candidates: none"
    ):
        kept.one_hot(uniform("avg_pool_3x3"))
    with pytest.raises(ValueError, match="unknown choice 'normal:2<-0'"):
        space.restrict({"normal:2<-0": ["none"]})
    deeper = kept.with_depth(3)
    assert deeper.cells == 3 and kept.cells == 1
    fresh = Nb201Space(cells=1, channels=4)
    fresh.load_state_dict(deeper.state_dict())
    assert fresh.choices() == kept.choices() and fresh.cells == 3


def test_a_cap_keeps_at_most_m_edges_without_a_convolution() -> None:
    space = Nb201Space(cells=1, channels=4)
    free = space.parameter_free()["cell"]
    assert {op for _, op in free} == {"none", "skip_connect", "avg_pool_3x3"}
    assert len(free) == 3 * len(EDGE_NAMES)
    tiny = {"train_per_class": 8, "test_per_class": 4}
    found = nasplug.search(
        "nb201",
        "sparsemax",
        space_opts={"cells": 1, "channels": 4},
        relax_opts={"cap": 1},
        data_opts=tiny,
        batch_size=32,
        device="cpu",
        epochs=2,
        quiet=True,
    )
    ops = found.genotype.spec["choices"].values()
    assert sum(op in ("none", "skip_connect", "avg_pool_3x3") for op in ops) <= 1
    assert found.metrics["discretisation_gap"] == 0.0


def test_a_path_of_only_none_edges_still_depends_on_the_weights() -> None:
    # A hard sample (gumbel-hard) may pick ``none`` on every edge; the architecture step then
    # differentiates a loss whose only dependence on the logits is through ``none``'s weights.
    space = Nb201Space(cells=1, channels=4)
    net = space.supernet(Task("classification", (3, 8, 8), 10))
    for p in net.parameters():
        p.requires_grad_(False)
    logits = {c.name: torch.zeros(len(c.candidates), requires_grad=True) for c in space.choices()}
    weights = {
        name: torch.nn.functional.one_hot(torch.tensor(0), len(z)).float() + z - z.detach()
        for name, z in logits.items()
    }  # straight-through: value one-hot on ``none`` (the first candidate), gradient to z
    assert space.choices()[0].candidates[0] == "none"
    out = net(torch.randn(2, 3, 8, 8), weights)
    assert out.requires_grad
    out.sum().backward()  # raised "does not require grad" when such a cell held no weight
    into_output = [logits[name].grad for name in ("3<-0", "3<-1", "3<-2")]
    assert all(g is not None and torch.all(g == 0) for g in into_output)
