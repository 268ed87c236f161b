"""The cap on parameter-free ops: declared by the cell space, met by sparsemax and gumbel-hard."""

from __future__ import annotations

import pytest
import torch

from nasplug.core.interfaces import Constrains, DeclaresParameterFree, SearchContext
from nasplug.core.types import Data, Genotype, LinearConstraint, Task
from nasplug.engine.trainer import Trainer
from nasplug.run.rundir import RunDir
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.polytope import cap_constraints
from nasplug.searchlib.supernet import search_supernet, supernet_result
from nasplug_builtins.relaxations import GumbelHard, Sparsemax
from nasplug_builtins.spaces.cell import CellSpace, edge_name
from nasplug_builtins.strategies.darts import Darts

TASK = Task("classification", (1, 8, 8), 3)


def _ctx(run_dir, relaxation, space) -> SearchContext:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.randn(48, *TASK.input_shape, generator=g) + y.view(-1, 1, 1, 1)
    data = Data(TASK, (x, y), (x[:12], y[:12]))
    run = RunDir.create(run_dir, {"test": True})
    trainer = Trainer(data, run=run, device="cpu", seed=0, quiet=True)
    return SearchContext(space, relaxation, trainer, data, epochs=4, batch_size=16, seed=0)


def _parameter_free_ops(space: CellSpace, genotype: Genotype) -> dict[str, int]:
    """Per cell type, how many of the genotype's ops the space declares parameter-free."""
    free = {kind: set(entries) for kind, entries in space.parameter_free().items()}
    k = space.node_inputs
    return {
        kind: sum(
            (edge_name(kind, 2 + i // k, source), op) in free[kind]
            for i, (op, source) in enumerate(genotype.spec[kind])
        )
        for kind in free
    }


def test_the_cell_space_declares_what_holds_no_parameters_in_its_networks():
    space = CellSpace(channels=4, layers=3, nodes=2)
    assert isinstance(space, DeclaresParameterFree)
    free = space.parameter_free()
    assert set(free) == {"normal", "reduce"}
    pools = {"max_pool_3x3", "avg_pool_3x3"}
    assert {op for _, op in free["normal"]} == pools | {"skip_connect"}
    # A reduction cell's skip from its inputs halves the map with convolutions: it counts as an op
    # with parameters there, and as parameter-free from an intermediate node.
    assert ("reduce:2<-0", "skip_connect") not in free["reduce"]
    assert ("reduce:3<-2", "skip_connect") in free["reduce"]
    genotype = Genotype(
        "cell",
        {
            "normal": [
                ["max_pool_3x3", 0],
                ["skip_connect", 1],
                ["avg_pool_3x3", 2],
                ["skip_connect", 0],
            ],
            "normal_concat": [2, 3],
            "reduce": [
                ["skip_connect", 0],
                ["max_pool_3x3", 1],
                ["skip_connect", 2],
                ["avg_pool_3x3", 0],
            ],
            "reduce_concat": [2, 3],
        },
    )
    assert _parameter_free_ops(space, genotype) == {"normal": 4, "reduce": 3}
    restricted = space.restrict({"normal:2<-0": ["sep_conv_3x3"]})
    assert not any(c == "normal:2<-0" for c, _ in restricted.parameter_free()["normal"])


@pytest.mark.parametrize("relax_class", [Sparsemax, GumbelHard])
def test_cap_none_or_large_is_the_search_without_a_cap_bit_for_bit(relax_class):
    space = CellSpace(channels=4, layers=3, nodes=3)
    plain = relax_class(cap=None)
    large = relax_class(cap=6)  # a cell of 3 nodes has 6 ops
    assert plain.constraints(space) == () and len(large.constraints(space)) == 2
    torch.manual_seed(0)
    a = ArchLogits(space.choices(), init_scale=0.05, groups=space.groups())
    b = ArchLogits(space.choices(), groups=space.groups(), constraints=large.constraints(space))
    b.load_state_dict(a.state_dict())
    for epoch in range(0, 10, 3):  # through the anneal and, for sparsemax, the hard phase
        for relax in (plain, large):
            relax.on_epoch(epoch, 10)
        for evaluation in (False, True):
            torch.manual_seed(epoch)
            wa = a.weights(plain, evaluation=evaluation)
            torch.manual_seed(epoch)
            wb = b.weights(large, evaluation=evaluation)
            assert all(torch.equal(wa[k], wb[k]) for k in wa), (epoch, evaluation)
            wa = {k: v.detach() for k, v in wa.items()}
            assert b.derivable(wa) == wa


@pytest.mark.parametrize("cap", [0, 1])
def test_gumbel_hard_samples_paths_within_the_cap(cap):
    space = CellSpace(channels=4, layers=3, nodes=3)
    relax = GumbelHard(cap=cap)
    assert isinstance(relax, Constrains)
    logits = ArchLogits(
        space.choices(), init_scale=1.0, groups=space.groups(), constraints=relax.constraints(space)
    )
    with torch.no_grad():  # parameter-free ops lead everywhere
        for p in logits.parameters():
            p[1:4] += 3.0
    for step in range(20):
        torch.manual_seed(step)
        w = logits.weights(relax)
        hot = space.one_hot(space.derive({k: v.detach() for k, v in w.items()}))
        assert all(torch.equal(hot[k], w[k].detach()) for k in w), "a path: one op per used edge"
        assert max(_parameter_free_ops(space, space.derive(hot)).values()) <= cap
    sum((v * torch.randn(v.shape)).sum() for v in w.values()).backward()
    assert all(p.grad is not None for p in logits.parameters())
    ev = logits.eval_weights(relax)
    assert max(_parameter_free_ops(space, space.derive(ev)).values()) <= cap


def test_a_capped_sparsemax_search_ends_with_gap_zero_within_the_cap(tmp_path):
    space = CellSpace(channels=4, layers=3, nodes=3)
    result = Darts().search(_ctx(tmp_path / "run", Sparsemax(cap=1), space))
    m = result.metrics
    assert m["final_vertex"] == 1.0 and m["discretisation_gap"] == 0.0
    assert max(_parameter_free_ops(space, result.genotype).values()) <= 1
    # Every epoch's derived genotype meets the cap, not only the last.
    for record in result.history:
        assert max(_parameter_free_ops(space, Genotype.from_dict(record["genotype"])).values()) <= 1


def test_bad_caps_are_one_line_errors():
    with pytest.raises(ValueError, match="cap must be >= 0"):
        Sparsemax(cap=-1)
    with pytest.raises(ValueError, match="cap must be >= 0"):
        GumbelHard(cap=-2)
    space = CellSpace(ops="none,max_pool_3x3,skip_connect", channels=4, layers=3, nodes=2)
    relax = Sparsemax(cap=1)
    with pytest.raises(ValueError, match="the least any genotype costs is 4"):
        ArchLogits(space.choices(), groups=space.groups(), constraints=relax.constraints(space))
    assert Sparsemax(grouped=False).constraints(space) == ()


def test_a_search_under_a_cap_and_a_budget_over_both_cells_ends_at_a_vertex_meeting_both(
    tmp_path,
):
    space = CellSpace(channels=4, layers=3, nodes=3)
    # A made-up cost per op, the same in both cells: the search may keep at most 9 units of it.
    price = {"sep_conv_3x3": 1.0, "sep_conv_5x5": 2.5, "dil_conv_3x3": 0.5, "dil_conv_5x5": 1.5}
    terms = tuple(
        (c.name, op, price[op]) for c in space.choices() for op in c.candidates if op in price
    )
    budget = LinearConstraint("cost", terms, 9.0)
    constraints = cap_constraints(space.parameter_free(), 1) + (budget,)
    logits = ArchLogits(space.choices(), groups=space.groups(), constraints=constraints)
    ctx = _ctx(tmp_path / "run", Sparsemax(cap=1), space)
    result = supernet_result(
        ctx, search_supernet(ctx, space, epochs=4, phase="search", logits=logits)
    )
    m = result.metrics
    assert m["final_vertex"] == 1.0 and m["discretisation_gap"] == 0.0
    assert max(_parameter_free_ops(space, result.genotype).values()) <= 1
    hot = space.one_hot(result.genotype)
    candidates = {c.name: c.candidates for c in space.choices()}
    spent = sum(float(hot[c][candidates[c].index(op)]) * v for c, op, v in terms)
    assert 5.0 <= spent <= 9.0  # five convolutions per cell at least, by the cap
