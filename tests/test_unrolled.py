"""Second-order DARTS: the finite-difference step against the exact unrolled gradient."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nasplug.core.types import Choice, Data, Task
from nasplug.engine.trainer import Trainer
from nasplug.searchlib.logits import ArchLogits
from nasplug.searchlib.supernet import SupernetRun, SupernetStepper
from nasplug.searchlib.unrolled import second_order_step
from nasplug_builtins.relaxations import Softmax

LR, MOMENTUM, WD = 0.1, 0.9, 3e-4


class TinySupernet(nn.Module):
    """Two mixing points over smooth candidates, enough to make the Hessian term matter."""

    def __init__(self, d: int = 6, outputs: int = 3) -> None:
        super().__init__()
        self.a = nn.ModuleList(
            [nn.Linear(d, d), nn.Sequential(nn.Linear(d, d), nn.Tanh()), nn.Identity()]
        )
        self.b = nn.ModuleList([nn.Sequential(nn.Linear(d, d), nn.Softplus()), nn.Linear(d, d)])
        self.head = nn.Linear(d, outputs)
        self.skip_zeros = True

    def forward(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        h = sum(w * op(x) for w, op in zip(weights["a"], self.a, strict=True))
        h = sum(w * op(h) for w, op in zip(weights["b"], self.b, strict=True))
        return self.head(torch.tanh(h))


class Float64Trainer(Trainer):
    """The trainer's loss casts to fp32; the check runs in fp64 end to end."""

    def loss(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, t)


def _trainer(task: Task) -> Trainer:
    x = torch.randn(8, *task.input_shape)
    y = torch.randint(0, task.outputs, (8,))
    return Float64Trainer(Data(task, (x, y), (x, y)), device="cpu")


def _exact(
    net, logits, relax, val, train, w_opt, clip: float = 0.0
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """d L_val(w - lr * (momentum * buf + c * g(w) + wd * w)) / d logits through autograd, and
    the weights it is taken at; ``c`` is the clipping factor, held constant as the step holds it."""
    (xa, ta), (xw, tw) = val, train
    params = dict(net.named_parameters())
    weights = logits.weights(relax)
    loss = F.cross_entropy(functional_call(net, params, (xw, weights)), tw)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    c = 1.0
    if clip:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        c = min(1.0, clip / (float(norm.detach()) + 1e-6))
    virtual = {}
    for (name, p), g in zip(params.items(), grads, strict=True):
        buf = w_opt.state[p]["momentum_buffer"]
        virtual[name] = p - LR * (MOMENTUM * buf + c * g + WD * p)
    loss = F.cross_entropy(functional_call(net, virtual, (xa, weights)), ta)
    grads = torch.autograd.grad(
        loss, list(logits.parameters()), materialize_grads=True, allow_unused=True
    )
    return list(grads), [w.detach() for w in virtual.values()]


def _check(
    net: nn.Module,
    choices: tuple[Choice, ...],
    task: Task,
    batch: int,
    rtol: float,
    difference: str = "central",
) -> float:
    torch.manual_seed(0)
    net = net.double()
    trainer = _trainer(task)
    logits = ArchLogits(choices, init_scale=0.5).double()
    relax = Softmax()
    w_params = list(net.parameters())
    w_opt = torch.optim.SGD(w_params, lr=LR, momentum=MOMENTUM, weight_decay=WD)
    x = torch.randn(4 * batch, *task.input_shape, dtype=torch.float64)
    t = torch.randint(0, task.outputs, (4 * batch,))
    batches = [(x[i : i + batch], t[i : i + batch]) for i in range(0, 4 * batch, batch)]
    # One real weight step first, so that the momentum buffers are not empty.
    F.cross_entropy(
        net(*batches[0][:1], {k: w.detach() for k, w in logits.weights(relax).items()}),
        batches[0][1],
    ).backward()
    w_opt.step()
    w_opt.zero_grad(set_to_none=True)

    val, train = batches[1], batches[2]
    # BatchNorm normalises with batch statistics in training mode, so running the reference
    # first does not change what the step computes.
    exact, _ = _exact(net, logits, relax, val, train, w_opt)
    before = [p.detach().clone() for p in w_params]
    for p in w_params:
        p.requires_grad_(False)  # as search_supernet leaves them during the architecture step
    a_opt = torch.optim.SGD(logits.parameters(), lr=0.0)
    run = SupernetRun(space=None, net=net, logits=logits)  # type: ignore[arg-type]
    second_order_step(a_opt, difference)(run, trainer, relax, val, train, w_opt)
    approx = [p.grad for p in logits.parameters()]

    first = torch.autograd.grad(
        F.cross_entropy(net(val[0], logits.weights(relax)), val[1]),
        list(logits.parameters()),
        materialize_grads=True,
        allow_unused=True,
    )
    flat = torch.cat([g.flatten() for g in exact])
    err = (torch.cat([g.flatten() for g in approx]) - flat).norm() / flat.norm()
    assert err < rtol, f"relative error {float(err):.2e} of the finite-difference gradient"
    # The check has teeth: the second-order term moves the gradient far more than the error.
    gap = (torch.cat([g.flatten() for g in first]) - flat).norm() / flat.norm()
    assert gap > 20 * err
    # The step leaves the weights and their frozen flags exactly as they were.
    assert all(torch.equal(p, b) for p, b in zip(w_params, before, strict=True))
    assert not any(p.requires_grad for p in w_params)
    return float(err)


def test_second_order_matches_exact_unrolled_gradient_on_a_smooth_net() -> None:
    task = Task("classification", (6,), 3)
    choices = (Choice("a", ("linear", "tanh", "identity")), Choice("b", ("softplus", "linear")))
    # Measured: 1.6e-5 (central, error O(R**2)) and 3.0e-3 (forward, error O(R)).
    central = _check(TinySupernet(), choices, task, batch=16, rtol=1e-4)
    forward = _check(TinySupernet(), choices, task, batch=16, rtol=1e-2, difference="forward")
    assert central < forward


def test_second_order_matches_exact_unrolled_gradient_on_the_cell_supernet() -> None:
    """The cell supernet made smooth: ReLU -> Softplus, and no max-pool.

    A central difference of a gradient is only as good as the gradient is smooth: where the
    0.01 move of the weights flips a ReLU or a max-pool's argmax, the quotient jumps (in DARTS
    too). With smooth ops the error shrinks as R**2, which is what shows the step is right.
    """
    from nasplug_builtins.spaces.cell import CellSpace

    task = Task("classification", (3, 8, 8), 4)
    space = CellSpace(
        ops="none,avg_pool_3x3,skip_connect,sep_conv_3x3,dil_conv_3x3",
        channels=4,
        layers=3,
        nodes=2,
    )  # one normal and two reduction cells
    net = space.supernet(task)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus())
    # Measured: 2.1e-5 (central) and 2.2e-3 (forward).
    _check(net, space.choices(), task, batch=8, rtol=2e-4)
    _check(
        net.requires_grad_(True), space.choices(), task, batch=8, rtol=1e-2, difference="forward"
    )


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_real_lookahead_matches_exact_unrolled_gradient(clip: float) -> None:
    """``lookahead=real``: the stepper's real weight step is the virtual step.

    The logits' gradient is DARTS's unrolled gradient at the weights before the step, and the
    weights end where the virtual step puts them, clipped (``clip=0.05`` clips every step here)
    or not.
    """
    torch.manual_seed(0)
    task = Task("classification", (6,), 3)
    choices = (Choice("a", ("linear", "tanh", "identity")), Choice("b", ("softplus", "linear")))
    net = TinySupernet().double()
    trainer = _trainer(task)
    trainer.grad_clip = clip
    logits = ArchLogits(choices, init_scale=0.5).double()
    relax = Softmax()
    stepper = SupernetStepper(
        trainer,
        relax,
        net,
        logits,
        w_lr=LR,
        w_momentum=MOMENTUM,
        w_weight_decay=WD,
        a_weight_decay=0.0,
        arch_step=partial(second_order_step, lookahead="real"),
    )
    x = torch.randn(48, *task.input_shape, dtype=torch.float64)
    t = torch.randint(0, task.outputs, (48,))
    batches = [(x[i : i + 16], t[i : i + 16]) for i in range(0, 48, 16)]
    stepper.step(batches[0], batches[1])  # fills the momentum buffers
    val, train = batches[1], batches[2]
    exact, landed = _exact(net, logits, relax, val, train, stepper.w_opt, clip)
    first = torch.autograd.grad(
        F.cross_entropy(net(val[0], logits.weights(relax)), val[1]),
        list(logits.parameters()),
        materialize_grads=True,
        allow_unused=True,
    )
    stepper.step(train, val)

    flat = torch.cat([g.flatten() for g in exact])
    err = (torch.cat([p.grad.flatten() for p in logits.parameters()]) - flat).norm() / flat.norm()
    assert err < 1e-4, f"relative error {float(err):.2e} of the finite-difference gradient"
    assert (torch.cat([g.flatten() for g in first]) - flat).norm() / flat.norm() > 20 * err
    for p, w in zip(net.parameters(), landed, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("lookahead", ["virtual", "real"])
def test_second_order_darts_search_returns_a_buildable_genotype(lookahead: str) -> None:
    from nasplug.core.interfaces import SearchContext
    from nasplug_builtins.spaces.cell import CellSpace
    from nasplug_builtins.strategies.darts import Darts

    task = Task("classification", (1, 8, 8), 3)
    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 3, (48,))
    data = Data(task, (x, y), (x[:12], y[:12]))
    trainer = Trainer(data, device="cpu", quiet=True)
    space = CellSpace(channels=4, layers=2, nodes=2)
    ctx = SearchContext(space, Softmax(), trainer, data, epochs=1, batch_size=8, seed=0)
    result = Darts(order=2, lookahead=lookahead).search(ctx)
    assert space.build(result.genotype, task)(x[:2]).shape == (2, 3)
    assert result.history and "val" in result.history[-1]


@pytest.mark.parametrize(
    "opts, message",
    [
        ({"order": 0}, "order must be 1 or 2"),
        ({"order": 3}, "order must be 1 or 2"),
        (
            {"order": 2, "difference": "backward"},
            "unknown finite difference 'backward'; accepted: central, forward",
        ),
        ({"order": 2, "lookahead": "ahead"}, "unknown lookahead 'ahead'; accepted: virtual, real"),
        (
            {"order": 2, "lookahead": "real", "difference": "forward"},
            "lookahead=real takes the central difference only, got difference=forward",
        ),
    ],
)
def test_bad_options_are_one_line_errors(opts, message) -> None:
    from nasplug_builtins.strategies.darts import Darts

    with pytest.raises(ValueError, match=message):
        Darts(**opts)
