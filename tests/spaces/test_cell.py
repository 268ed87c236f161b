"""The DARTS cell space: supernet, sparsity, derivation, discrete networks, variants, errors."""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from collections import Counter

import optuna
import pytest
import torch
import torch.nn.functional as F

from nasplug.core.types import Genotype, Task
from nasplug.testing import count_module_calls
from nasplug_builtins.spaces.cell import CellSpace, MixedOp, fast
from nasplug_builtins.spaces.cell import ops as cell_ops
from nasplug_builtins.spaces.cell.ops import FactorizedReduce

DARTS_V2 = (
    "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
MNIST = Task("classification", (1, 28, 28), 10)
CIFAR = Task("classification", (3, 32, 32), 10)


def tiny(**kwargs) -> CellSpace:
    return CellSpace(**{"channels": 4, "layers": 3, **kwargs})


def uniform_logits(space: CellSpace) -> dict[str, torch.Tensor]:
    return {c.name: torch.zeros(len(c.candidates), requires_grad=True) for c in space.choices()}


def sparse_weights(
    space: CellSpace, logits: dict[str, torch.Tensor], seed: int = 1
) -> dict[str, torch.Tensor]:
    """Softmax over a random support per edge (exact zeros elsewhere); some edges all zero.

    Both edges into normal node 2 are all zero, so that node has no computed input.
    """
    rng = random.Random(seed)
    weights = {}
    for c in space.choices():
        keep = [rng.random() < 0.4 for _ in c.candidates]
        if c.name.startswith("normal:2<-") or c.name == "reduce:4<-3":
            keep = [False] * len(keep)
        mask = torch.tensor(keep)
        if mask.any():
            weights[c.name] = torch.softmax(logits[c.name].masked_fill(~mask, float("-inf")), 0)
        else:
            weights[c.name] = torch.zeros(len(keep), dtype=logits[c.name].dtype)
    return weights


def count_op_calls(net, monkeypatch) -> Counter:
    """Count the candidates each mixed op computes, keyed by (edge name, op name)."""
    calls: Counter = Counter()
    names = {
        id(mixed): name
        for cell in net.cells
        for name, mixed in zip(cell.edge_names, cell.edges, strict=True)
    }
    computed = MixedOp.computed

    def counted(self, row):
        slots = computed(self, row)
        calls.update((names[id(self)], self.candidates[self.positions[i]]) for i in slots)
        return slots

    monkeypatch.setattr(MixedOp, "computed", counted)
    return calls


FAST_OPS = (fast.MaxPool2d, fast.DepthwiseConv2d, fast.PolyphaseConv2d)


def fast_and_reference(space: CellSpace, task: Task):
    """A fast supernet of ``space`` (in float64) and a reference one with the same state."""
    net = space.supernet(task).double()
    reference = copy.copy(space)
    reference.impl = "reference"
    twin = reference.supernet(task).double()
    twin.load_state_dict(net.state_dict())
    assert net.impl == "fast" and twin.impl == "reference"
    assert not any(isinstance(m, FAST_OPS) for m in twin.modules())
    return net, twin


# --- the supernet -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task", [MNIST, CIFAR, Task("regression", (2, 9, 11), 3)], ids=["1x28x28", "3x32x32", "2x9x11"]
)
def test_supernet_forward_backward(task: Task) -> None:
    space = tiny()
    net = space.supernet(task)
    logits = uniform_logits(space)
    weights = {k: torch.softmax(v, 0) for k, v in logits.items()}
    out = net(torch.randn(2, *task.input_shape), weights)
    assert out.shape == (2, task.outputs)
    out.square().sum().backward()
    assert all(
        v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
        for v in logits.values()
    )
    assert all(p.grad is not None for p in net.parameters())


def test_choices_name_every_edge_normal_then_reduce() -> None:
    names = [c.name for c in tiny(nodes=2).choices()]
    assert names == [
        "normal:2<-0",
        "normal:2<-1",
        "normal:3<-0",
        "normal:3<-1",
        "normal:3<-2",
        "reduce:2<-0",
        "reduce:2<-1",
        "reduce:3<-0",
        "reduce:3<-1",
        "reduce:3<-2",
    ]
    assert tiny().choices()[0].candidates == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )


def test_zero_weight_ops_and_none_are_never_run(monkeypatch) -> None:
    def must_not_run(self, x):
        raise AssertionError("the none op was computed")

    monkeypatch.setattr(cell_ops.Zero, "forward", must_not_run)
    space = tiny()
    net = space.supernet(CIFAR)
    assert not any(isinstance(m, cell_ops.Zero) for m in net.modules())
    calls = count_op_calls(net, monkeypatch)
    weights = sparse_weights(space, uniform_logits(space))
    net(torch.randn(2, 3, 32, 32), weights).sum().backward()

    nonzero = {
        (name, op)
        for name, w in weights.items()
        for op, v in zip(space.choices()[0].candidates, w.tolist(), strict=True)
        if v != 0.0
    }
    assert set(calls) == nonzero - {(name, "none") for name in weights}
    # Every cell of a type runs the same ops: one normal cell, two reduction cells.
    assert all(n == (1 if name.startswith("normal") else 2) for (name, _), n in calls.items())

    calls.clear()
    net.skip_zeros = False
    net(torch.randn(2, 3, 32, 32), weights)
    assert len(calls) == 7 * len(weights)  # every op but none, whatever its weight


def test_skipping_zeros_matches_the_dense_computation() -> None:
    space = tiny()
    net = space.supernet(CIFAR).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    results = []
    for skip in (True, False):
        net.skip_zeros = skip
        net.zero_grad(set_to_none=True)
        gen = torch.Generator().manual_seed(0)
        logits = {
            c.name: torch.randn(
                len(c.candidates), dtype=torch.float64, generator=gen
            ).requires_grad_()
            for c in space.choices()
        }
        out = net(x, sparse_weights(space, logits))
        F.cross_entropy(out, torch.tensor([1, 7])).backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in net.parameters()]
        arch = [torch.zeros_like(v) if v.grad is None else v.grad for v in logits.values()]
        results.append((out.detach(), grads, arch))
    (out_s, grads_s, arch_s), (out_d, grads_d, arch_d) = results
    torch.testing.assert_close(out_s, out_d, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_s + arch_s, grads_d + arch_d, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in arch_s)


@pytest.mark.parametrize("variant", ["dense", "sparse-dropout"])
def test_fast_supernet_equals_the_reference(variant, monkeypatch) -> None:
    """Shared prefixes (within and across cells), one-byte max-pool argmaxes, polyphase and
    depthwise convolutions, BatchNorm-scaled mixing weights and the cell concatenation change
    nothing: outputs, gradients of every parameter and logit, and running statistics are those
    of DARTS's plain computation with torch's own modules (``impl="reference"``)."""
    space = tiny()
    fast_net, reference = fast_and_reference(space, CIFAR)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    logits = {
        c.name: torch.randn(len(c.candidates), dtype=torch.float64, generator=gen)
        for c in space.choices()
    }
    results = []
    for net in (fast_net, reference):
        if variant == "sparse-dropout":
            net.candidate_dropout = {"skip_connect": 0.3, "sep_conv_3x3": 0.2}
        ls = {k: v.clone().requires_grad_() for k, v in logits.items()}
        w = {k: torch.softmax(v, 0) for k, v in ls.items()}
        if variant == "sparse-dropout":
            w = sparse_weights(space, ls)  # some edges and a whole node computed not at all
        torch.manual_seed(3)  # the same dropout masks on both paths
        out = net(x, w)
        F.cross_entropy(out, torch.tensor([1, 7])).backward()
        grads = {n: p.grad for n, p in net.named_parameters()}
        results.append(
            [out.detach(), grads, {k: v.grad for k, v in ls.items()}, dict(net.named_buffers())]
        )
        # The reference path never enters the fast one.
        monkeypatch.setattr(fast, "mixed_op_forward", None)
        monkeypatch.setattr(fast, "cell_forward", None)
    (out, grads, arch, bufs), (out_r, grads_r, arch_r, bufs_r) = results
    torch.testing.assert_close(out, out_r, rtol=1e-10, atol=1e-12)
    for got, want in ((grads, grads_r), (arch, arch_r), (bufs, bufs_r)):
        assert got.keys() == want.keys()
        for k in got:
            assert (got[k] is None) == (want[k] is None), k
            if got[k] is not None:
                torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12, msg=k)
    assert any(g is not None and g.abs().sum() > 0 for g in arch.values())


def test_the_impl_option_reaches_every_cell_and_survives_variants() -> None:
    space = tiny(impl="reference")
    for variant in (space, space.with_depth(2), space.restrict({"normal:2<-0": ["skip_connect"]})):
        net = variant.supernet(MNIST)
        assert net.impl == "reference"
        assert all(m.impl == "reference" for m in net.modules() if hasattr(m, "impl"))
    net = tiny().supernet(MNIST)
    assert {m.impl for m in net.modules() if hasattr(m, "impl")} == {"fast"}


def test_plans_are_made_once_and_again_after_a_module_is_replaced(monkeypatch) -> None:
    """A forward walks no module tree; assigning a module anywhere makes the plans again."""
    space = tiny(nodes=1, layers=1)
    net = space.supernet(MNIST)
    weights = {k: torch.softmax(v, 0) for k, v in uniform_logits(space).items()}
    x = torch.randn(2, 1, 28, 28)
    net(x, weights)
    walks = Counter()
    leaves = fast._leaves
    monkeypatch.setattr(fast, "_leaves", lambda m: walks.update(["walk"]) or leaves(m))
    net(x, weights)
    net.to(memory_format=torch.channels_last)
    net(x, weights)
    assert walks["walk"] == 0
    pooled = net.cells[0].edges[0].ops[0]  # max_pool_3x3 and its BatchNorm
    pooled[0] = torch.nn.AvgPool2d(3, pooled[0].stride, 1)
    net(x, weights)
    assert walks["walk"] > 0


def test_accelerated_turns_torch_ops_into_fast_ones_sharing_parameters() -> None:
    op = cell_ops.OPS["dil_conv_5x5"](4, 1, False)
    sep = cell_ops.OPS["sep_conv_3x3"](4, 2, False)
    pool = cell_ops.OPS["max_pool_3x3"](4, 2, False)
    assert not any(isinstance(m, FAST_OPS) for m in (*op.modules(), *sep.modules(), pool))
    params = [p for m in (op, sep) for p in m.parameters()]
    state = torch.random.get_rng_state()
    quick = [fast.accelerated(copy.deepcopy(m)) for m in (op, sep, pool)]
    assert torch.equal(state, torch.random.get_rng_state())  # no random numbers drawn
    assert type(quick[0][1]) is fast.PolyphaseConv2d and quick[0][1].dilation == (2, 2)
    assert type(quick[1][0][1]) is fast.DepthwiseConv2d and type(quick[2]) is fast.MaxPool2d
    assert type(quick[1][0][2]) is torch.nn.Conv2d  # the pointwise convolution stays
    x = torch.randn(2, 4, 7, 7)
    for a, b in zip((op, sep, pool), quick, strict=True):
        torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-6)
    shared = [fast.accelerated(m) for m in (op, sep)]
    assert [p for m in shared for p in m.parameters()] == params


def test_discrete_networks_run_the_fast_layers() -> None:
    space = tiny(impl="reference")
    weights = {
        c.name: torch.tensor([float(k == "dil_conv_3x3") for k in c.candidates])
        for c in space.choices()
    }
    net = space.build(space.derive(weights), MNIST)
    assert any(isinstance(m, fast.PolyphaseConv2d) for m in net.modules())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size, kept", [((7, 8), torch.uint8), ((5, 130), torch.int16)])
def test_max_pool_keeps_window_offsets_and_equals_nn_max_pool_with_ties(stride, size, kept) -> None:
    """The argmax kept as its offset in the window (one byte on maps up to 126 pixels wide):
    gradients equal nn.MaxPool2d's even where values tie, no int64 indices are kept for
    backward, and a double backward works."""
    x0 = torch.randint(0, 3, (2, 3, *size), dtype=torch.float64)  # many ties in every window
    x0 = x0.contiguous(memory_format=torch.channels_last)
    g = torch.randn(
        torch.nn.MaxPool2d(3, stride, 1)(x0).shape, dtype=torch.float64, requires_grad=True
    )
    results = []
    for pool in (fast.MaxPool2d(3, stride, 1), torch.nn.MaxPool2d(3, stride, 1)):
        x = x0.clone().requires_grad_()
        saved: list[torch.dtype] = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, saved=saved: saved.append(t.dtype) or t, lambda t: t
        ):
            y = pool(x)
        (dx,) = torch.autograd.grad(y, x, g, create_graph=True)
        (ddg,) = torch.autograd.grad(dx, g, torch.ones_like(dx))
        results.append((y, dx, ddg, saved))
    (y, dx, ddg, saved), (y_ref, dx_ref, ddg_ref, saved_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(dx, dx_ref, rtol=0, atol=0)
    torch.testing.assert_close(ddg, ddg_ref, rtol=0, atol=0)
    assert torch.int64 in saved_ref and saved == [torch.float64, kept]


def test_all_zero_weights_leave_only_the_head_bias() -> None:
    space = tiny()
    net = space.supernet(MNIST)
    weights = {c.name: torch.zeros(len(c.candidates)) for c in space.choices()}
    out = net(torch.randn(2, 1, 28, 28), weights)
    torch.testing.assert_close(out, net.classifier.bias.expand(2, -1))


def test_one_host_transfer_per_forward(monkeypatch) -> None:
    space = tiny()
    net = space.supernet(MNIST)
    weights = {k: torch.softmax(v, 0) for k, v in uniform_logits(space).items()}
    transfers = Counter()
    tolist, item = torch.Tensor.tolist, torch.Tensor.item
    monkeypatch.setattr(
        torch.Tensor, "tolist", lambda self: transfers.update(["tolist"]) or tolist(self)
    )
    monkeypatch.setattr(torch.Tensor, "item", lambda self: transfers.update(["item"]) or item(self))
    net(torch.randn(2, 1, 28, 28), weights)
    assert transfers == Counter(tolist=1)


def test_missing_or_misshapen_weights_are_named() -> None:
    space = tiny()
    net = space.supernet(MNIST)
    weights = {c.name: torch.ones(len(c.candidates)) for c in space.choices()}
    with pytest.raises(ValueError, match=r"weights lack choice 'reduce:5<-4'"):
        net(torch.randn(2, 1, 28, 28), {k: v for k, v in weights.items() if k != "reduce:5<-4"})
    with pytest.raises(ValueError, match=r"'normal:2<-0' have shape \(3,\)"):
        net(torch.randn(2, 1, 28, 28), {**weights, "normal:2<-0": torch.ones(3)})


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("replaced", [False, True], ids=["built", "relu-replaced"])
def test_mixed_op_equals_the_weighted_sum_of_its_ops(stride, replaced) -> None:
    """Shared prefixes and the mixing weight folded into BatchNorm change nothing.

    The reference (``impl="reference"``) calls every op as a module, with torch's own modules:
    outputs, gradients of the input, the weights and every parameter, and the running
    statistics agree. Modules replaced after the op was built (here every ReLU by a Softplus)
    are the ones used.
    """
    candidates = tiny().choices()[0].candidates
    x0 = torch.randn(4, 6, 9, 9, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w0 = torch.softmax(torch.randn(len(candidates), dtype=torch.float64), 0)
    mixed, reference = (
        MixedOp(candidates, 6, stride, impl).double().to(memory_format=torch.channels_last)
        for impl in ("fast", "reference")
    )
    assert not any(isinstance(m, FAST_OPS) for m in reference.modules())
    if replaced:
        with torch.no_grad():
            mixed(x0, w0, w0.tolist())  # plans made (and cached) before the replacement
        for net in (mixed, reference):
            for module in list(net.modules()):
                for name, child in module.named_children():
                    if isinstance(child, torch.nn.ReLU):
                        setattr(module, name, torch.nn.Softplus())
    reference.load_state_dict(mixed.state_dict())
    results = []
    for net in (mixed, reference):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = net(x, w, w.tolist())
        out.square().sum().backward()
        stats = [b.clone() for name, b in net.named_buffers()]
        results.append((out.detach(), x.grad, w.grad, [p.grad for p in net.parameters()], stats))
    for a, b in zip(*results, strict=True):
        for u, v in zip(a, b, strict=True) if isinstance(a, list) else [(a, b)]:
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_prefixes_are_computed_once_per_state(monkeypatch) -> None:
    """A max-pool or polyphase split of a state is computed once however many edges read it."""
    space = tiny()
    net = space.supernet(CIFAR)
    weights = {k: torch.softmax(v, 0) for k, v in uniform_logits(space).items()}
    splits = Counter()
    phases = fast.PolyphaseConv2d.phases
    monkeypatch.setattr(
        fast.PolyphaseConv2d,
        "phases",
        lambda self, x: splits.update(["split"]) or phases(self, x),
    )
    _, calls = count_module_calls(net, lambda: net(torch.randn(2, 3, 32, 32), weights))
    pools = sum(
        n
        for name, n in calls.items()
        if name.endswith(".0") and isinstance(net.get_submodule(name), torch.nn.MaxPool2d)
    )
    # 3 cells of 4 nodes: states 0-4 feed later nodes, so 5 pools per cell, not one per edge (14).
    assert pools == 3 * 5
    # Both dilated convolutions (dilation 2) share a split, at stride 1 only: the normal cell's
    # 5 states, and the reduction cells' nodes 2-4 (their inputs are read at stride 2).
    assert splits["split"] == 5 + 2 * 3


@pytest.mark.parametrize("kernel, stride", [(3, 1), (5, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_polyphase_dilated_conv_equals_the_dilated_conv(
    kernel, stride, size, channels_last
) -> None:
    layer = fast.PolyphaseConv2d(4, 4, kernel, stride, kernel - 1, 2, groups=4).double()
    plain = torch.nn.Conv2d(4, 4, kernel, stride, kernel - 1, 2, groups=4, bias=False).double()
    plain.weight = layer.weight
    x = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = layer(x)
    if channels_last and size == (8, 8):
        assert y.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(y)
    for a, b in zip(
        torch.autograd.grad(y, (x, layer.weight), g),
        torch.autograd.grad(plain(x), (x, plain.weight), g),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, plain(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "size, kernel, stride",
    [
        ((4, 4), 5, 1),
        ((4, 4), 5, 2),
        ((3, 9), 5, 1),
        ((5, 3), 5, 2),
        ((4, 6), 7, 1),
        ((2, 2), 3, 1),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_conv_on_maps_smaller_than_its_kernel_equals_nn_conv2d(
    size, kernel, stride, dtype
) -> None:
    """The weight gradient from 3-column windows: outputs, gradients and a double backward equal
    nn.Conv2d's; maps as large as the kernel go through nn.Conv2d's own path."""
    layer = fast.DepthwiseConv2d(6, 6, kernel, stride, kernel // 2, groups=6, bias=False)
    plain = torch.nn.Conv2d(6, 6, kernel, stride, kernel // 2, groups=6, bias=False)
    layer, plain = layer.to(dtype), plain.to(dtype)
    plain.weight = layer.weight
    x = torch.randn(3, 6, *size, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y, y_ref = layer(x), plain(x)
    assert type(y.grad_fn).__name__ == "_DepthwiseConvBackward"
    g = torch.randn_like(y, requires_grad=True)
    grads = torch.autograd.grad(y, (x, layer.weight), g, create_graph=True)
    grads_ref = torch.autograd.grad(y_ref, (x, plain.weight), g, create_graph=True)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)
    # Double backward: the gradient of the weight gradient's sum with respect to g and x.
    dd = torch.autograd.grad(grads[1].sum(), (g, x))
    dd_ref = torch.autograd.grad(grads_ref[1].sum(), (g, x))
    for a, b in zip(dd, dd_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)
    big = torch.randn(3, 6, kernel, kernel, dtype=dtype, requires_grad=True)
    assert type(layer(big).grad_fn).__name__ == "ConvolutionBackward0"


# --- genotypes ----------------------------------------------------------------------------------


def test_derive_keeps_two_strongest_edges_by_their_best_op_other_than_none() -> None:
    space = tiny(nodes=3)
    ops = space.choices()[0].candidates
    weights = {c.name: torch.zeros(len(ops)) for c in space.choices()}

    def put(name: str, **values: float) -> None:
        for op, v in values.items():
            weights[name][ops.index(op)] = v

    put("normal:2<-0", none=0.9, sep_conv_3x3=0.05)
    put("normal:2<-1", skip_connect=0.3)
    put("normal:3<-0", dil_conv_5x5=0.5)
    put("normal:3<-1", none=1.0)  # heaviest edge, but only through none: not kept
    put("normal:3<-2", avg_pool_3x3=0.4, sep_conv_5x5=0.1)
    put("normal:4<-2", sep_conv_5x5=0.2)
    put("normal:4<-3", max_pool_3x3=0.2)  # a tie: the lower input ranks first
    put("normal:4<-1", none=0.7, skip_connect=0.1)
    for c in space.choices():
        if c.name.startswith("reduce"):
            weights[c.name] += 0.125  # all equal: the first inputs and first op other than none

    genotype = space.derive(weights)
    assert genotype.space == "cell"
    assert genotype.spec["normal"] == (
        ("skip_connect", 1),
        ("sep_conv_3x3", 0),
        ("dil_conv_5x5", 0),
        ("avg_pool_3x3", 2),
        ("sep_conv_5x5", 2),
        ("max_pool_3x3", 3),
    )
    assert genotype.spec["reduce"] == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 3
    assert genotype.spec["normal_concat"] == genotype.spec["reduce_concat"] == (2, 3, 4)


def test_derive_never_keeps_an_edge_that_can_only_be_none() -> None:
    space = tiny(nodes=2).restrict({"normal:3<-1": ["none"]})
    weights = {c.name: torch.ones(len(c.candidates)) for c in space.choices()}
    assert {s for _, s in space.derive(weights).spec["normal"][2:]} == {0, 2}


def test_genotype_json_round_trip_and_build() -> None:
    space = tiny()
    weights = {c.name: torch.rand(len(c.candidates)) for c in space.choices()}
    genotype = space.derive(weights)
    again = Genotype.from_json(genotype.to_json())
    assert again == genotype
    assert Genotype.parse(genotype.to_json()) == genotype
    assert space.build(again, MNIST)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("source", ["derived", "sampled", "darts_v2"])
def test_build_runs_for_derived_sampled_and_published_genotypes(source: str) -> None:
    space = tiny(auxiliary=True, drop_path=0.2)
    if source == "derived":
        genotype = space.derive({c.name: torch.rand(len(c.candidates)) for c in space.choices()})
    elif source == "sampled":
        rng = random.Random(3)
        genotype = space.sample(lambda name, options: rng.choice(options))
    else:
        genotype = Genotype.parse(DARTS_V2)
    for task in (MNIST, CIFAR):
        net = space.build(genotype, task)
        assert net.drop_path_prob == 0.2
        out = net(torch.randn(2, *task.input_shape))
        assert out.shape == (2, 10)
        assert net.aux_logits is not None and net.aux_logits.shape == (2, 10)
        (out.sum() + net.aux_logits.sum()).backward()
        net.eval()
        net(torch.randn(2, *task.input_shape))
        assert net.aux_logits is None


def test_built_network_has_the_genotype_ops_and_affine_batchnorm() -> None:
    space = tiny()
    net = space.build(Genotype.parse(DARTS_V2), CIFAR)
    kinds = {type(m).__name__ for m in net.modules()}
    assert "DilConv" in kinds and "SepConv" in kinds and "MaxPool2d" in kinds
    assert "AvgPool2d" not in kinds and "Zero" not in kinds
    assert all(m.affine for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.auxiliary_head is None
    net(torch.randn(2, 3, 32, 32))
    assert net.aux_logits is None


def test_drop_path_follows_drop_path_prob() -> None:
    net = tiny(drop_path=0.0).build(Genotype.parse(DARTS_V2), MNIST)
    x = torch.randn(4, 1, 28, 28)
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    assert torch.equal(a, net(x))  # no randomness at probability 0
    net.drop_path_prob = 0.5
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x))


def test_sample_with_optuna_suggest_categorical() -> None:
    space = tiny().restrict({"normal:2<-0": ["none", "sep_conv_5x5"]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        genotype = space.sample(trial.suggest_categorical)
        study.tell(trial, 0.0)
        for kind in ("normal", "reduce"):
            pairs = genotype.spec[kind]
            assert len(pairs) == 8
            for i in range(0, 8, 2):
                (_, a), (_, b) = pairs[i : i + 2]
                assert a != b and max(a, b) < 2 + i // 2
            assert all(op != "none" for op, _ in pairs)
        assert ("sep_conv_5x5", 0) in genotype.spec["normal"][:2]  # the edge's only op
        space.build(genotype, MNIST)
    # Option lists are fixed per decision name, as TPE requires.
    options: dict = {}
    for trial in study.trials:
        for name, dist in trial.distributions.items():
            assert options.setdefault(name, dist.choices) == dist.choices
    assert options["normal:3:inputs"] == ("0,1", "0,2", "1,2")
    assert options["normal:2<-0"] == ("sep_conv_5x5",)


def test_one_hot_selects_exactly_the_genotype(monkeypatch) -> None:
    space = tiny()
    genotype = Genotype.parse(DARTS_V2)
    weights = space.one_hot(genotype)
    assert weights["normal:2<-0"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert weights["normal:3<-2"].sum() == 0  # an edge the genotype does not use
    assert sum(int(w.sum()) for w in weights.values()) == 16
    net = space.supernet(CIFAR)
    calls = count_op_calls(net, monkeypatch)
    net(torch.randn(2, 3, 32, 32), weights)
    expected = {
        (f"{kind}:{2 + i // 2}<-{s}", op)
        for kind in ("normal", "reduce")
        for i, (op, s) in enumerate(genotype.spec[kind])
    }
    assert set(calls) == expected


def test_describe_shows_both_cells() -> None:
    text = tiny().describe(Genotype.parse(DARTS_V2))
    lines = text.splitlines()
    assert lines[0].startswith("normal: 2 <- sep_conv_3x3(0) + sep_conv_3x3(1);")
    assert lines[1].startswith("reduce: 2 <- max_pool_3x3(0) + max_pool_3x3(1);")
    assert lines[1].endswith("| concat 2,3,4,5")


# --- variants -----------------------------------------------------------------------------------


def test_restrict_keeps_only_the_named_ops() -> None:
    space = tiny(nodes=2)
    keep = {c.name: ["skip_connect", "none"] for c in space.choices()}
    keep["reduce:3<-2"] = ["sep_conv_3x3", "max_pool_3x3"]
    small = space.restrict(keep)
    cands = {c.name: c.candidates for c in small.choices()}
    assert cands["normal:2<-0"] == ("none", "skip_connect")  # original order is kept
    assert cands["reduce:3<-2"] == ("max_pool_3x3", "sep_conv_3x3")
    assert len(space.choices()[0].candidates) == 8  # the original is unchanged
    net = small.supernet(MNIST)
    kinds = Counter(type(m).__name__ for m in net.modules())
    assert kinds["SepConv"] == 2 and kinds["MaxPool2d"] == 2 and kinds["DilConv"] == 2 * 2
    weights = {c.name: torch.softmax(torch.zeros(len(c.candidates)), 0) for c in small.choices()}
    assert net(torch.randn(2, 1, 28, 28), weights).shape == (2, 10)

    deeper = small.with_depth(5)
    assert deeper.layers == 5 and small.layers == 3
    assert deeper.choices() == small.choices()
    assert len(deeper.supernet(MNIST).cells) == 5


def test_state_dict_restores_restrictions() -> None:
    small = tiny(nodes=2).restrict({"normal:2<-0": ["sep_conv_3x3"]}).with_depth(4)
    fresh = tiny(nodes=2)
    fresh.load_state_dict(small.state_dict())
    assert fresh.choices() == small.choices() and fresh.layers == 4


def test_restrict_rejects_unknown_names_and_ops() -> None:
    space = tiny()
    with pytest.raises(ValueError, match="unknown choice 'normal:9<-0'"):
        space.restrict({"normal:9<-0": ["none"]})
    small = space.restrict({"normal:2<-0": ["none", "skip_connect"]})
    with pytest.raises(ValueError, match="'sep_conv_3x3' is not a candidate of 'normal:2<-0'"):
        small.restrict({"normal:2<-0": ["sep_conv_3x3"]})
    with pytest.raises(ValueError, match="to no ops"):
        space.restrict({"normal:2<-0": []})


# --- bad input ----------------------------------------------------------------------------------


def test_bad_ops_list_names_the_known_ops() -> None:
    with pytest.raises(
        ValueError, match=r"unknown op 'sep_conv_7x7'.*known ops: none, max_pool_3x3"
    ):
        CellSpace(ops="none,sep_conv_7x7")
    with pytest.raises(ValueError, match="at least one op other than 'none'"):
        CellSpace(ops="none")
    with pytest.raises(ValueError, match="twice"):
        CellSpace(ops="skip_connect,skip_connect")
    with pytest.raises(ValueError, match="even"):
        CellSpace(channels=5)
    with pytest.raises(ValueError, match=r"^impl must be one of fast, reference, got 'quick'$"):
        CellSpace(impl="quick")
    with pytest.raises(ValueError, match="impl must be one of fast, reference"):
        MixedOp(("skip_connect",), 4, 1, impl="Fast")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: {**s, "normal": [["conv_9x9", 0]] + s["normal"][1:]}, "unknown op 'conv_9x9'"),
        (lambda s: {**s, "normal": [["none", 0]] + s["normal"][1:]}, "unknown op 'none'"),
        (
            lambda s: {**s, "reduce": s["reduce"][:-1] + [["skip_connect", 5]]},
            "node 5 .* takes input 5",
        ),
        (lambda s: {**s, "reduce": s["reduce"][:-1]}, "two .* pairs per node"),
        (lambda s: {k: v for k, v in s.items() if k != "reduce_concat"}, "lacks 'reduce_concat'"),
        (lambda s: {**s, "normal_concat": [2, 9]}, "normal_concat"),
        (
            lambda s: {**s, "normal": [["skip_connect", "0"]] + s["normal"][1:]},
            "not an \\(op, input\\)",
        ),
    ],
)
def test_bad_genotypes_are_rejected_in_one_line(edit, message: str) -> None:
    spec = Genotype.parse(DARTS_V2).to_dict()["spec"]
    bad = Genotype("cell", edit(spec))
    with pytest.raises(ValueError, match=message) as info:
        tiny().build(bad, CIFAR)
    assert "\n" not in str(info.value)


def test_genotype_of_another_space_is_rejected() -> None:
    with pytest.raises(ValueError, match="space 'dense'"):
        tiny().build(Genotype("dense", {"choices": {}}), CIFAR)


def test_one_hot_rejects_a_genotype_with_other_node_count_or_ops() -> None:
    with pytest.raises(ValueError, match="has 4 nodes; this space has 2"):
        tiny(nodes=2).one_hot(Genotype.parse(DARTS_V2))
    with pytest.raises(ValueError, match="not a candidate"):
        tiny(ops="none,sep_conv_3x3").one_hot(Genotype.parse(DARTS_V2))


def test_vector_input_is_refused() -> None:
    task = Task("regression", (7,), 1)
    with pytest.raises(ValueError, match=r"needs image input \(C, H, W\); got input_shape \(7,\)"):
        tiny().supernet(task)
    with pytest.raises(ValueError, match="needs image input"):
        tiny().build(Genotype.parse(DARTS_V2), task)


_STRIDED_1X1_CASES = """
import torch
from nasplug_builtins.spaces.cell import CellSpace
from nasplug_builtins.spaces.cell.ops import FactorizedReduce
from nasplug.core.types import Task

cl = torch.channels_last
# An odd batch behind the cell's torch.cat, and a 48-pixel map with few channels: shapes on which
# a strided 1x1 convolution's weight gradient corrupted memory on the CPU.
space = CellSpace(channels=4, layers=3)
net = space.supernet(Task("classification", (3, 32, 32), 10)).to(memory_format=cl)
w = {c.name: torch.full((len(c.candidates),), 0.5, requires_grad=True) for c in space.choices()}
net(torch.randn(3, 3, 32, 32).to(memory_format=cl), w).sum().backward()
reduce = FactorizedReduce(12, 4, affine=True).to(memory_format=cl)
reduce(torch.randn(64, 12, 48, 48).to(memory_format=cl)).sum().backward()
print("ok")
"""


def test_factorized_reduce_survives_the_shapes_that_broke_strided_1x1_convolutions() -> None:
    """Run in a subprocess: the failure this guards against kills the process."""
    p = subprocess.run(
        [sys.executable, "-c", _STRIDED_1X1_CASES], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0 and p.stdout.strip() == "ok", (p.returncode, p.stderr[-500:])


def test_factorized_reduce_equals_its_strided_convolutions() -> None:
    """Every other pixel through a 1x1 convolution is the strided 1x1 convolution."""
    torch.manual_seed(0)
    fr = FactorizedReduce(8, 8, affine=False).double()
    for side in (7, 8, 14):
        x = torch.randn(2, 8, side, side, dtype=torch.float64)
        h = torch.relu(x)
        shifted = F.pad(h[:, :, 1:, 1:], (0, side % 2, 0, side % 2))
        want = fr.bn(torch.cat([fr.conv_1(h), fr.conv_2(shifted)], dim=1))
        assert torch.allclose(fr(x), want, rtol=0, atol=1e-12)
