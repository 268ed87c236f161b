"""Candidate costs: params and FLOPs exact for every genotype of each built-in space, and the
cached latency table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasplug.core.interfaces import ReportsCosts
from nasplug.core.types import Costs, Genotype, Task
from nasplug.engine.memory import count_params
from nasplug.searchlib import costs as costs_module
from nasplug.searchlib.costs import RESOURCES, candidate_costs, genotype_cost, module_cost
from nasplug.testing import TinySpace, random_suggest
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.spaces.dense import DenseSpace
from nasplug_builtins.spaces.nb201 import EDGE_NAMES, Nb201Space

# Odd sides: each reduction rounds up, which the sites must follow.
IMAGES = Task("classification", (3, 9, 7), 10)
VECTORS = Task("regression", (5,), 2)


def measured(space: object, genotype: Genotype, task: Task, resource: str) -> float:
    net = space.build(genotype, task)  # type: ignore[attr-defined]
    if resource == "params":
        return float(count_params(net))
    return module_cost(net, (1, *task.input_shape), "flops")


@pytest.mark.parametrize("resource", ["params", "flops"])
@pytest.mark.parametrize(
    "space",
    [
        CellSpace(channels=4, layers=3, nodes=2),
        # node_inputs=1, the auxiliary head (not counted at inference) and the reference impl
        CellSpace(channels=4, layers=4, nodes=3, node_inputs=1, auxiliary=True, impl="reference"),
        CellSpace(channels=4, layers=3, nodes=2, ops="none,skip_connect,sep_conv_3x3,max_pool_3x3"),
    ],
    ids=["cell", "cell-aux", "cell-ops"],
)
def test_cell_genotype_cost_is_the_built_networks_exactly(space: CellSpace, resource: str) -> None:
    costs = candidate_costs(space, IMAGES, resource)
    values = set()
    for seed in range(6):
        g = space.sample(random_suggest(seed))
        values.add(genotype_cost(space, costs, g))
        assert genotype_cost(space, costs, g) == measured(space, g, IMAGES, resource)
    assert len(values) > 1, "random genotypes of different cost"


def test_cell_costs_sum_every_cell_of_a_type() -> None:
    # Three normal cells at 4, 8 and 16 channels: a 3x3 separable convolution's params there.
    space = CellSpace(channels=4, layers=5, nodes=1, node_inputs=1)
    costs = candidate_costs(space, IMAGES, "params")
    sep = {c: 2 * (c * 9 + c * c + 2 * c) for c in (4, 8, 16)}
    assert costs.entries[("normal:2<-1", "sep_conv_3x3")] == sum(sep.values())
    # A reduction cell's input edges have stride 2: skip_connect is then a factorized reduce.
    assert costs.entries[("reduce:2<-0", "skip_connect")] > 0
    assert ("normal:2<-0", "skip_connect") not in costs.entries or (
        costs.entries[("normal:2<-0", "skip_connect")] == 0
    )
    assert not any(op == "none" for _, op in costs.entries)


@pytest.mark.parametrize("resource", ["params", "flops"])
def test_nb201_genotype_cost_is_the_built_networks_exactly(resource: str) -> None:
    space = Nb201Space(cells=2, channels=4)
    costs = candidate_costs(space, IMAGES, resource)
    for seed in range(8):
        g = space.sample(random_suggest(seed))
        assert genotype_cost(space, costs, g) == measured(space, g, IMAGES, resource)
    # A cell of ``none`` edges builds no op: the network costs just ``fixed``.
    empty = Genotype("nb201", {"choices": dict.fromkeys(EDGE_NAMES, "none")})
    assert costs.fixed == measured(space, empty, IMAGES, resource)


@pytest.mark.parametrize("resource", ["params", "flops"])
def test_dense_genotype_cost_is_the_built_networks_exactly(resource: str) -> None:
    space = DenseSpace(blocks=4, layers=3, width=8, max_skip=3)
    costs = candidate_costs(space, VECTORS, resource)
    for b in range(4):
        g = space.derive({"block": torch.eye(4)[b]})
        assert genotype_cost(space, costs, g) == measured(space, g, VECTORS, resource)
    # The input projection (5 -> 8) and the head (8 -> 2) are what no block changes.
    if resource == "params":
        assert costs.fixed == 5 * 8 + 8 + 8 * 2 + 2


def test_costs_round_trip_through_json_data() -> None:
    costs = candidate_costs(Nb201Space(cells=1, channels=2), IMAGES, "params")
    assert Costs.from_dict(costs.to_dict()) == costs
    assert costs.unit == "" and costs.resource == "params"


def test_unknown_resource_and_a_space_without_costs_are_one_line_errors() -> None:
    space = Nb201Space(cells=1, channels=2)
    with pytest.raises(
        ValueError, match="unknown resource 'energy'; accepted: params, flops, latency"
    ):
        candidate_costs(space, IMAGES, "energy")
    assert RESOURCES == ("params", "flops", "latency")
    tiny = TinySpace()
    assert not isinstance(tiny, ReportsCosts)
    with pytest.raises(ValueError, match="does not report costs") as e:
        candidate_costs(tiny, IMAGES, "params")
    assert "\n" not in str(e.value)


# ---- latency ------------------------------------------------------------------------------------


@pytest.fixture
def timer(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """No real timing: every module "takes" 1 ms; the list counts the measurements."""
    calls: list[int] = []

    def fake(run: object, device: torch.device) -> float:
        calls.append(1)
        return 1.0

    def fake_rotation(sites: dict, device: torch.device) -> dict:
        calls.extend(1 for _ in sites)
        return dict.fromkeys(sites, 1.0)

    monkeypatch.setattr(costs_module, "_fastest_ms", fake)
    monkeypatch.setattr(costs_module, "_rotated_latencies", fake_rotation)
    return calls


def test_latency_table_is_built_once_then_reused(timer: list[int], tmp_path: Path) -> None:
    space = Nb201Space(cells=1, channels=2)
    first = candidate_costs(space, IMAGES, "latency", cache_dir=str(tmp_path))
    assert timer and first.source["built"] and not first.source["reused"]
    assert first.unit == "ms" and first.source["batch"] == 1 and first.source["device"]
    assert Path(first.source["cache"]).parent == tmp_path
    measured_once = len(timer)
    again = candidate_costs(space, IMAGES, "latency", cache_dir=str(tmp_path))
    assert len(timer) == measured_once, "a reused table measures nothing"
    assert again.source["reused"] and not again.source["built"]
    assert again.entries == first.entries and again.fixed == first.fixed
    assert again.source["cache"] == first.source["cache"]


def test_a_damaged_table_is_measured_again_with_a_one_line_warning(
    timer: list[int], tmp_path: Path
) -> None:
    space = Nb201Space(cells=1, channels=2)
    path = Path(candidate_costs(space, IMAGES, "latency", cache_dir=tmp_path).source["cache"])
    path.write_text('{"key": ')
    with pytest.warns(UserWarning, match="damaged or for another setting") as record:
        rebuilt = candidate_costs(space, IMAGES, "latency", cache_dir=tmp_path)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert (
        rebuilt.source["built"] and json.loads(path.read_text())["costs"]["resource"] == "latency"
    )
    assert candidate_costs(space, IMAGES, "latency", cache_dir=tmp_path).source["reused"]


def test_another_batch_is_another_table_and_a_foreign_file_is_rebuilt(
    timer: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NASPLUG_CACHE_DIR", str(tmp_path))
    space = Nb201Space(cells=1, channels=2)
    one = candidate_costs(space, IMAGES, "latency")
    two = candidate_costs(space, IMAGES, "latency", batch=2)
    assert two.source["built"] and two.source["batch"] == 2
    assert one.source["cache"] != two.source["cache"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(c.source["cache"]).name for c in (one, two)
    )
    # The batch-2 table under the batch-1 name: read, found foreign, measured again.
    Path(one.source["cache"]).write_text(Path(two.source["cache"]).read_text())
    with pytest.warns(UserWarning, match="another setting"):
        assert candidate_costs(space, IMAGES, "latency").source["batch"] == 1


def test_latency_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    space = Nb201Space(cells=1, channels=2)
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        candidate_costs(space, IMAGES, "latency", batch=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="cpu or cuda"):
        candidate_costs(space, IMAGES, "latency", device="meta", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="does not report costs"):
        candidate_costs(TinySpace(), IMAGES, "latency", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir()), "nothing written"


def test_costing_leaves_the_global_random_state_alone(timer: list[int], tmp_path: Path) -> None:
    # Building the ops draws initial weights; a seeded search must not see that.
    space = CellSpace(channels=4, layers=3, nodes=2)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for resource in ("params", "flops", "latency"):
        candidate_costs(space, IMAGES, resource, cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), before)


def test_latency_tables_go_to_the_users_cache_directory_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import platformdirs

    monkeypatch.delenv("NASPLUG_CACHE_DIR", raising=False)
    assert costs_module.cache_directory() == Path(platformdirs.user_cache_dir("nasplug"))
    monkeypatch.setenv("NASPLUG_CACHE_DIR", str(tmp_path / "env"))
    assert costs_module.cache_directory() == tmp_path / "env"
    assert costs_module.cache_directory(tmp_path / "arg") == tmp_path / "arg"


def test_the_latency_calibration_fits_a_fixed_part_and_a_scale() -> None:
    from nasplug.searchlib.costs import _calibration_line

    assert _calibration_line([1.0, 2.0, 4.0, 5.0], [3.5, 5.0, 8.0, 9.5]) == pytest.approx(
        (2.0, 1.5)
    )
    # a line no better than an offset on left-out networks: the offset
    assert _calibration_line([1.0, 2.0, 3.0, 4.0], [3.0, 4.5, 5.0, 6.0])[1] == 1.0
    # one genotype (no spread): scale 1, fixed the median difference
    assert _calibration_line([2.0, 2.0], [3.0, 3.5]) == (pytest.approx(1.25), 1.0)
