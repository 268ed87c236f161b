import json
import random

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasplug.core.types import Genotype, Task
from nasplug_builtins.spaces.dense import (
    PROPERTIES,
    DenseNet,
    DenseSpace,
    DenseSupernet,
    band_edges,
    property_correlations,
)

IMAGES = Task("classification", (1, 28, 28), 10)
VECTORS = Task("regression", (10,), 3)


def small(**kw) -> DenseSpace:
    opts = {"blocks": 4, "layers": 3, "width": 8, "max_skip": 2}
    opts.update(kw)
    return DenseSpace(**opts)


def alone(space: DenseSpace, net: DenseSupernet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each block's network output with only that block computed."""
    with torch.no_grad():
        return {n: net(x, space.block_weights(n)) for n in space.choices()[0].candidates}


def check_valid(edges, layers: int, max_skip: int) -> None:
    """The space's DAG rules, checked independently of the space's own validator."""
    out = layers + 1
    g = nx.DiGraph()
    g.add_nodes_from(range(out + 1))
    g.add_edges_from(map(tuple, edges))
    assert g.number_of_nodes() == layers + 2
    assert nx.is_directed_acyclic_graph(g)
    assert all(0 < j - i <= max_skip for i, j in g.edges)
    assert all(nx.has_path(g, 0, v) and nx.has_path(g, v, out) for v in g)


@pytest.mark.parametrize("task", [IMAGES, VECTORS], ids=["images", "vectors"])
def test_supernet_forward_and_backward(task):
    space = small()
    net = space.supernet(task)
    x = torch.randn(5, *task.input_shape)
    logits = torch.zeros(4, requires_grad=True)
    out = net(x, {"block": torch.softmax(logits, 0)})
    assert out.shape == (5, task.outputs)
    out.square().mean().backward()
    assert net.stem.weight.grad is not None and net.head.weight.grad is not None
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert net.stem.in_features == (784 if task is IMAGES else 10)


def test_blocks_share_one_set_of_weights():
    sizes = {
        k: sum(p.numel() for p in small(blocks=k).supernet(VECTORS).parameters()) for k in (1, 16)
    }
    assert sizes[1] == sizes[16]


def test_a_shared_weight_changes_exactly_the_blocks_that_use_its_edge():
    space = small(blocks=6)
    net = space.supernet(VECTORS)
    dags = space.block_dags()
    edge = next(
        e
        for e in band_edges(3, 2)
        if e[1] <= 3 and 0 < sum(list(e) in d for d in dags.values()) < len(dags)
    )
    x = torch.randn(7, 10)
    before = alone(space, net, x)
    with torch.no_grad():
        net.edge_ops[f"{edge[0]}-{edge[1]}"].weight[0, 0] += 1.0
    after = alone(space, net, x)
    for name, dag in dags.items():
        assert torch.equal(before[name], after[name]) != (list(edge) in dag), name


def test_zero_weight_blocks_are_not_computed(monkeypatch):
    space = small()
    net = space.supernet(VECTORS)
    calls = []
    real = net.block_output
    monkeypatch.setattr(net, "block_output", lambda h, row: calls.append(row) or real(h, row))
    x = torch.randn(3, 10)
    w = torch.tensor([0.0, 0.7, 0.0, 0.3])
    out = net(x, {"block": w})
    masks = net.mask.tolist()
    assert calls == [masks[1], masks[3]]
    ref = alone(space, net, x)
    head_bias = net.head.bias.detach()
    mixed = 0.7 * (ref["b1"] - head_bias) + 0.3 * (ref["b3"] - head_bias) + head_bias
    torch.testing.assert_close(out, mixed)
    calls.clear()
    net(x, {"block": torch.zeros(4)})
    assert calls == []


def test_skipping_zeros_gives_the_dense_outputs_and_gradients():
    space = small(blocks=5)
    net = space.supernet(IMAGES)
    x = torch.randn(4, 1, 28, 28)
    raw = torch.tensor([0.8, -0.5, 0.3, -1.0, 0.2])  # relu: exact zeros with a zero Jacobian there

    def grads(skip: bool):
        net.skip_zeros = skip
        net.zero_grad(set_to_none=True)
        logits = raw.clone().requires_grad_(True)
        out = net(x, {"block": torch.relu(logits)})
        out.logsumexp(1).sum().backward()
        params = {
            k: (p.grad if p.grad is not None else torch.zeros_like(p)).clone()
            for k, p in net.named_parameters()
        }
        return out.detach(), params, logits.grad.clone()

    out_s, par_s, log_s = grads(True)
    out_d, par_d, log_d = grads(False)
    torch.testing.assert_close(out_s, out_d, rtol=0, atol=0)
    torch.testing.assert_close(log_s, log_d, rtol=0, atol=0)
    for k in par_d:
        torch.testing.assert_close(par_s[k], par_d[k], rtol=0, atol=0, msg=k)


@settings(max_examples=40, deadline=None, database=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    layers=st.integers(1, 6),
    max_skip=st.integers(1, 4),
    edge_prob=st.floats(0.0, 1.0),
    replace=st.integers(0, 3),
)
def test_every_drawn_dag_keeps_the_constraints(seed, layers, max_skip, edge_prob, replace):
    space = DenseSpace(
        blocks=3,
        layers=layers,
        width=2,
        max_skip=max_skip,
        edge_prob=edge_prob,
        mode="sampling",
        replace=replace,
        seed=seed,
    )
    net = space.supernet(Task("regression", (2,), 1))
    rng = random.Random(seed)
    for _ in range(4):
        space.on_epoch_end(net, {"block": torch.tensor([rng.random() for _ in range(3)])})
        for b, dag in enumerate(space.block_dags().values()):
            check_valid(dag, layers, max_skip)
            assert [list(e) for e in net.block_dag(b)] == dag
    g = space.sample(lambda name, options: rng.choice(options))
    check_valid(g.spec["edges"], layers, max_skip)


def test_sampling_moves_edge_probabilities_toward_strong_blocks():
    space = small(blocks=4, mode="sampling", replace=2, learning_rate=0.5)
    net = space.supernet(VECTORS)
    params = [p.data_ptr() for p in net.parameters()]
    strong = space.block_dags()["b2"]
    before = space.edge_probabilities()
    changed = space.on_epoch_end(net, {"block": torch.tensor([0.1, 0.0, 0.8, 0.1])})
    after = space.edge_probabilities()
    assert changed and space.replaced == ("b0", "b1")
    for key, p in after.items():
        edge = [int(v) for v in key.split("-")]
        assert (p > before[key]) == (edge in strong), key
    assert after[
        next(k for k in after if [int(v) for v in k.split("-")] in strong)
    ] == pytest.approx(0.75)
    assert [p.data_ptr() for p in net.parameters()] == params
    for b, dag in enumerate(space.block_dags().values()):
        assert [list(e) for e in net.block_dag(b)] == dag
    assert space.block_dags()["b2"] == strong


def test_fixed_mode_keeps_its_dags():
    space = small()
    net = space.supernet(VECTORS)
    dags = space.block_dags()
    assert not space.on_epoch_end(net, {"block": torch.tensor([0.4, 0.3, 0.2, 0.1])})
    assert space.block_dags() == dags and space.replaced == ()


def test_state_round_trip_reproduces_the_next_resample(tmp_path):
    opts = {"mode": "sampling", "replace": 2, "seed": 3}
    a = small(**opts)
    net_a = a.supernet(VECTORS)
    for w in ([0.4, 0.3, 0.2, 0.1], [0.1, 0.5, 0.2, 0.2]):
        a.on_epoch_end(net_a, {"block": torch.tensor(w)})
    state = json.loads(json.dumps(a.state_dict()))
    torch.save(state, tmp_path / "s.pt")
    b = small(**opts)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    net_b = b.supernet(VECTORS)
    assert torch.equal(net_a.mask, net_b.mask)
    w = {"block": torch.tensor([0.3, 0.3, 0.1, 0.3])}
    a.on_epoch_end(net_a, w)
    b.on_epoch_end(net_b, w)
    assert a.block_dags() == b.block_dags()
    assert a.edge_probabilities() == b.edge_probabilities()
    assert a.candidate_table() == b.candidate_table()
    assert torch.equal(net_a.mask, net_b.mask)


def test_derive_build_and_one_hot_round_trip():
    space = small(blocks=5)
    net = space.supernet(IMAGES)
    w = {"block": torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1])}
    g = space.derive(w)
    assert Genotype.from_json(g.to_json()) == g
    assert [list(e) for e in g.spec["edges"]] == space.block_dags()["b2"]
    assert g.spec["layers"] == 3 and g.spec["width"] == 8
    hot = space.one_hot(g)
    assert hot["block"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    model = space.build(Genotype.from_json(g.to_json()), IMAGES)
    assert isinstance(model, DenseNet) and not isinstance(model, DenseSupernet)
    # The discrete net follows the DAG: with the supernet's weights it computes the one-hot supernet.
    model.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x, hot))
    assert "in->1" in space.describe(g)


def test_one_hot_of_an_unknown_dag_is_a_clear_error():
    space = small(blocks=2, edge_prob=0.0)  # every block is the plain chain
    full = space.sample(lambda name, options: 1)
    with pytest.raises(ValueError, match="none of the current blocks"):
        space.one_hot(full)
    with pytest.raises(ValueError, match="none of the current blocks"):
        small(layers=4).one_hot(space.derive({"block": torch.ones(2)}))


def test_sample_takes_every_edge_decision_from_suggest():
    space = small(layers=4, max_skip=2)
    asked = []
    g = space.sample(lambda name, options: asked.append((name, list(options))) or 0)
    assert asked == [(f"edge:{i}-{j}", [0, 1]) for i, j in band_edges(4, 2)]
    assert [list(e) for e in g.spec["edges"]] == [
        [k, k + 1] for k in range(5)
    ]  # repaired to a chain
    everything = space.sample(lambda name, options: 1)
    assert len(everything.spec["edges"]) == len(band_edges(4, 2))


def test_sample_works_with_optuna():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = small()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))
    seen = []

    def objective(trial):
        g = space.sample(trial.suggest_categorical)
        seen.append(g)
        return float(len(g.spec["edges"]))

    study.optimize(objective, n_trials=4)
    for g in seen:
        check_valid(g.spec["edges"], 3, 2)
        assert space.build(g, VECTORS)(torch.randn(2, 10)).shape == (2, 3)


def test_restrict_keeps_named_blocks_and_with_depth_changes_layers():
    space = small(blocks=4)
    dags = space.block_dags()
    kept = space.restrict({"block": ["b3", "b1"]})
    assert kept.choices()[0].candidates == ("b1", "b3")
    assert kept.block_dags() == {"b1": dags["b1"], "b3": dags["b3"]}
    assert space.blocks == 4
    table = kept.candidate_table()
    assert {r["block"]: r["status"] for r in table} == {
        "b0": "dropped",
        "b1": "current",
        "b2": "dropped",
        "b3": "current",
    }
    net = kept.supernet(VECTORS)
    assert net(torch.randn(2, 10), {"block": torch.tensor([0.5, 0.5])}).shape == (2, 3)
    deeper = kept.with_depth(6)
    assert deeper.layers == 6 and deeper.choices() == kept.choices()
    for dag in deeper.block_dags().values():
        check_valid(dag, 6, 2)
    with pytest.raises(ValueError, match="b7"):
        space.restrict({"block": ["b7"]})


def test_candidate_table_lists_current_and_replaced_blocks():
    space = small(blocks=4, mode="sampling", replace=1)
    net = space.supernet(VECTORS)
    space.record_metrics({"b0": 0.5, "b1": 0.6, "b2": 0.7, "b3": 0.8})
    space.on_epoch_end(net, {"block": torch.tensor([0.3, 0.05, 0.4, 0.25])})
    space.on_epoch_end(net, {"block": torch.tensor([0.3, 0.2, 0.4, 0.1])})
    table = space.candidate_table({"block": torch.tensor([0.25, 0.25, 0.25, 0.25])}, {"b2": 0.9})
    assert len(table) == 6
    replaced = [r for r in table if r["status"] == "replaced"]
    assert [(r["block"], r["weight"], r["metric"]) for r in replaced] == [
        ("b1", pytest.approx(0.05), 0.6),
        ("b3", pytest.approx(0.1), 0.8),
    ]
    current = {r["block"]: r for r in table if r["status"] == "current"}
    assert current["b2"]["metric"] == 0.9 and current["b0"]["metric"] == 0.5
    assert current["b1"]["metric"] is None and all(r["weight"] == 0.25 for r in current.values())
    for r in table:
        assert set(PROPERTIES) <= set(r)
        assert r["depth"] <= r["edges"] and 1 <= r["longest_skip"] <= 2
    json.dumps(table)
    corr = space.candidate_correlations()
    assert set(corr) == set(PROPERTIES) and all(
        set(v) == {"weight", "metric"} for v in corr.values()
    )
    rows = [{"depth": d, "weight": w, "metric": None} for d, w in [(1, 0.1), (2, 0.2), (3, 0.5)]]
    assert property_correlations(rows, ["depth"]) == {"depth": {"weight": 1.0, "metric": None}}


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"blocks": 0}, "blocks"),
        ({"layers": 0}, "layers"),
        ({"width": 2.5}, "width"),
        ({"max_skip": 0}, "max_skip"),
        ({"edge_prob": 1.5}, "edge_prob"),
        ({"mode": "evolve"}, "mode"),
        ({"replace": -1}, "replace"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"activation": "swish"}, "activation"),
        ({"layers": True}, "layers"),
    ],
)
def test_bad_options_give_one_line_errors(kw, word):
    with pytest.raises(ValueError, match=word) as e:
        small(**kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "spec, word",
    [
        ({"edges": [[0, 1], [1, 4]], "layers": 3, "width": 8, "max_skip": 2}, "skips 3"),
        ({"edges": [[0, 1], [1, 2], [2, 4]], "layers": 3, "width": 8}, r"\[3\]"),
        ({"edges": [[0, 5]], "layers": 3, "width": 8}, "out of range"),
        ({"edges": [[0, 1, 2]], "layers": 3, "width": 8}, "pair"),
        ({"layers": 3, "width": 8}, "lacks edges"),
        ({"edges": [[0, 1], [1, 2]], "layers": 1, "width": 8, "activation": "swish"}, "activation"),
    ],
)
def test_bad_genotypes_give_one_line_errors(spec, word):
    with pytest.raises(ValueError, match=word) as e:
        small().build(Genotype("dense", spec), VECTORS)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="space 'dense'"):
        small().build(Genotype("cell", {"normal": []}), VECTORS)


def test_bad_weights_are_clear_errors():
    space = small()
    net = space.supernet(VECTORS)
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 10), {"block": torch.ones(3)})
    with pytest.raises(ValueError, match="4 blocks"):
        space.derive({"block": torch.ones(5)})
    with pytest.raises(ValueError, match="'block'"):
        space.on_epoch_end(net, {"edge": torch.ones(4)})
    with pytest.raises(ValueError, match="layers=3"):
        small(layers=5).load_state_dict(space.state_dict())
