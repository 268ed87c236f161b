"""Second-order DARTS: the architecture gradient through one unrolled weight step.

DARTS (Liu et al., 2019, eqs. 6-8) differentiates the validation loss after a virtual SGD step
of the weights, ``w' = w - xi * (momentum * buf + dL_train(w, a)/dw + wd * w)``, with respect
to the architecture ``a``::

    grad = dL_val(w', a)/da - xi * d2L_train(w, a)/(da dw) . v,   v = dL_val(w', a)/dw'

The second term is a Hessian-vector product, approximated by a central difference of
``g(w) = dL_train(w, a)/da`` at ``w +- R v`` with ``R = 0.01 / ||v||`` (or, optionally, by a
forward difference that saves one of the step's five passes).

The virtual step ``w'`` is exactly where the real SGD step on the same training batch lands, so
with ``lookahead="real"`` the real weight step is taken first and serves as the virtual one: the
gradient above, at the same ``(w, a)``, costs one forward-backward pass fewer. The two updates
then both read ``(w, a)`` (simultaneous), where DARTS's weight step reads the updated ``a``.

Gradients flow to the logits through the mixing weights: every pass differentiates the loss
with respect to the mixing weights only, the results are combined, and one backward
through the relaxation turns them into the logits' gradient. The relaxation is therefore called
once per step, so a stochastic one (Gumbel) uses one sample in every pass.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from nasplug.core.interfaces import Relaxation
from nasplug.core.protocols import TrainerView
from nasplug.searchlib.supernet import ArchStep, ArchStepFactory, Batch, SupernetRun, WeightStep

__all__ = [
    "DIFFERENCES",
    "LOOKAHEADS",
    "check_options",
    "second_order",
    "second_order_step",
    "unrolled_gradients",
]

#: DARTS's finite-difference scale: the weights move by 0.01 in total norm.
FD_SCALE = 0.01
DIFFERENCES = ("central", "forward")
LOOKAHEADS = ("virtual", "real")


def second_order_step(
    a_opt: torch.optim.Optimizer, difference: str = "central", lookahead: str = "virtual"
) -> ArchStep:
    """The unrolled architecture step of DARTS, for ``search_supernet(..., arch_step=...)``.

    The virtual step uses ``w_opt``'s current learning rate, momentum, weight decay and momentum
    buffers, per parameter group, so ``w'`` is the point the next SGD step would reach on the
    training batch. Weights are restored exactly afterwards; the weights' ``requires_grad`` flags
    are left as they were found.

    Args:
        difference: ``central`` (DARTS: ``g(w + R v)`` and ``g(w - R v)``, error O(R**2)) or
            ``forward`` (``g(w + R v)`` and ``g(w)``, the latter taken from the virtual step's
            pass at no extra cost: one pass fewer, error O(R)).
        lookahead: ``virtual`` (DARTS: a virtual step, undone; the stepper's weight step follows
            with the updated logits) or ``real`` (the real weight step is taken first, with the
            mixing weights of this step, and is the virtual step: one pass fewer; gradient
            clipping's factor scales the Hessian term as it scaled the step). ``real`` goes with
            the central difference only: its forward difference would need ``g(w)`` in full
            precision, a pass of its own, and save nothing.

    Returns:
        The step; it takes the weight step with ``lookahead="real"``.

    Raises:
        ValueError: for a difference or look-ahead it lacks (see :func:`check_options`).
    """
    check_options(difference, lookahead)
    return _SecondOrderStep(a_opt, difference, lookahead)


class _SecondOrderStep:
    """:func:`second_order_step`'s step."""

    def __init__(self, a_opt: torch.optim.Optimizer, difference: str, lookahead: str) -> None:
        self.a_opt, self.difference = a_opt, difference
        self.takes_weight_step = lookahead == "real"

    def __call__(
        self,
        run: SupernetRun,
        trainer: TrainerView,
        relaxation: Relaxation,
        val_batch: Batch,
        train_batch: Batch,
        w_opt: torch.optim.Optimizer,
        weight_step: WeightStep | None = None,
    ) -> None:
        net, logits, a_opt = run.net, run.logits, self.a_opt
        # The weights keep the graph to the logits for the final backward.
        weights = logits.weights(relaxation)
        grads = unrolled_gradients(
            net,
            trainer,
            weights,
            val_batch,
            train_batch,
            w_opt,
            difference=self.difference,
            weight_step=weight_step,
        )
        a_opt.zero_grad(set_to_none=True)
        # d/da of sum(w(a) * g) is exactly J_w(a)^T g: one backward through the relaxation.
        surrogate = torch.stack([(weights[k] * g).sum() for k, g in grads.items()]).sum()
        pen = relaxation.penalty(logits.as_dict(), "arch")
        if pen is not None:
            surrogate = surrogate + pen
        if run.penalty is not None:
            surrogate = surrogate + run.penalty(weights)
        surrogate.backward()
        a_opt.step()


def second_order(difference: str = "central", lookahead: str = "virtual") -> ArchStepFactory:
    """:func:`second_order_step` with these options, for ``search_supernet(arch_step=...)``.

    The options are checked now, so a strategy can reject bad ones when it is made.
    """
    check_options(difference, lookahead)
    return functools.partial(second_order_step, difference=difference, lookahead=lookahead)


def check_options(difference: str, lookahead: str) -> None:
    """One-line errors for a finite difference or look-ahead that :func:`second_order_step` lacks."""
    if difference not in DIFFERENCES:
        raise ValueError(
            f"unknown finite difference {difference!r}; accepted: {', '.join(DIFFERENCES)}"
        )
    if lookahead not in LOOKAHEADS:
        raise ValueError(f"unknown lookahead {lookahead!r}; accepted: {', '.join(LOOKAHEADS)}")
    if lookahead == "real" and difference != "central":
        raise ValueError(
            f"lookahead=real takes the central difference only, got difference={difference}"
        )


def unrolled_gradients(
    net: torch.nn.Module,
    trainer: TrainerView,
    weights: dict[str, torch.Tensor],
    val_batch: Batch,
    train_batch: Batch,
    w_opt: torch.optim.Optimizer,
    *,
    difference: str = "central",
    weight_step: WeightStep | None = None,
) -> dict[str, torch.Tensor]:
    """The second-order gradient with respect to each choice's mixing weights.

    With ``weight_step`` (the real weight step, see :class:`nasplug.searchlib.supernet.ArchStep`) the
    weights are left where that step took them; without it they are restored.
    """
    check_options(difference, "virtual" if weight_step is None else "real")
    (xa, ta), (xw, tw) = val_batch, train_batch
    forward = difference == "forward"
    groups = w_opt.param_groups
    params = [p for g in groups for p in g["params"]]
    mix = {k: w.detach() for k, w in weights.items()}
    saved = [p.detach().clone() for p in params]
    flags = [p.requires_grad for p in params]
    devices = _rng_devices(xw)
    rng_at_start = _rng_state(devices)
    restore = saved
    try:
        _set_requires_grad(params, True)
        if weight_step is not None:
            # 1. The real weight step is the virtual one; clipping shortened it by `scale`.
            scale = weight_step(mix)
            restore = [p.detach().clone() for p in params]
        else:
            # 1. The virtual weight step on the training batch. A forward difference also takes
            # g(w) = dL_train/d(mixing weights) here, so this pass is one of the difference's two.
            scale = 1.0
            leaves = _leaves(mix) if forward else mix
            with _exact_math(xw.device) if forward else trainer.autocast():
                loss = trainer.loss(net(xw, leaves), tw)
            trainer.check_finite(loss, "second-order virtual step")
            out = _grad(loss, [*params, *leaves.values()] if forward else params)
            g_train, g_here = out[: len(params)], out[len(params) :]
            with torch.no_grad():
                for group, ps, gs in _by_group(groups, params, g_train):
                    for p, g in zip(ps, gs, strict=True):
                        d = g + group["weight_decay"] * p
                        buf = w_opt.state.get(p, {}).get("momentum_buffer")
                        if buf is not None and group["momentum"]:
                            d = d + group["momentum"] * buf
                        p.sub_(group["lr"] * d)
            del g_train, out

        # 2. The validation loss at w': gradients for the mixing weights and v.
        leaves = _leaves(mix)
        with trainer.autocast():
            loss = trainer.loss(net(xa, leaves), ta)
        trainer.check_finite(loss, "second-order validation step")
        out = _grad(loss, [*leaves.values(), *params])
        g_val, v = out[: len(leaves)], out[len(leaves) :]
        _set_requires_grad(params, False)

        # 3. xi * Hessian-vector product by finite differences. With u = xi * v (xi per group)
        # and eps = 0.01 / ||u||, w +- eps * u is DARTS's w +- R v, and the quotient is xi * H v.
        u = [group["lr"] * scale * vi for group, _, vs in _by_group(groups, params, v) for vi in vs]
        del v, out
        eps = FD_SCALE / torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(t) for t in u])
        )
        with _exact_math(xw.device), torch.random.fork_rng(devices=devices):
            # Every pass of the difference sees the same dropout masks as the first.
            _set_rng_state(rng_at_start, devices)
            g_plus = _mix_grad(net, trainer, mix, params, saved, u, eps, train_batch)
            if not forward:
                _set_rng_state(rng_at_start, devices)
                g_minus = _mix_grad(net, trainer, mix, params, saved, u, -eps, train_batch)
    finally:
        with torch.no_grad():
            for p, s in zip(params, restore, strict=True):
                p.copy_(s)
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    if forward:
        return {
            k: gv - (gp - g0) / eps
            for k, gv, gp, g0 in zip(mix, g_val, g_plus, g_here, strict=True)
        }
    return {
        k: gv - (gp - gm) / (2 * eps)
        for k, gv, gp, gm in zip(mix, g_val, g_plus, g_minus, strict=True)
    }


def _mix_grad(
    net: torch.nn.Module,
    trainer: TrainerView,
    mix: dict[str, torch.Tensor],
    params: list[torch.Tensor],
    saved: list[torch.Tensor],
    u: list[torch.Tensor],
    eps: torch.Tensor,
    batch: Batch,
) -> list[torch.Tensor]:
    """dL_train/d(mixing weights) at ``saved + eps * u``; the weights stay frozen."""
    x, t = batch
    with torch.no_grad():
        for p, s, d in zip(params, saved, u, strict=True):
            torch.add(s, d * eps, out=p)
    leaves = _leaves(mix)
    loss = trainer.loss(net(x, leaves), t)
    trainer.check_finite(loss, "second-order Hessian-vector product")
    return _grad(loss, list(leaves.values()))


def _grad(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # Candidates skipped at zero weight leave their weights and parameters out of the graph:
    # their gradient is zero.
    return list(torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True))


def _leaves(mix: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: w.detach().requires_grad_() for k, w in mix.items()}


def _set_requires_grad(params: list[torch.Tensor], on: bool) -> None:
    for p in params:
        p.requires_grad_(on)


def _by_group(
    groups: list[dict[str, Any]], params: list[torch.Tensor], values: Sequence[torch.Tensor]
) -> Iterator[tuple[dict[str, Any], list, list]]:
    """``(group, its params, their values)`` for each parameter group, in order."""
    start = 0
    for g in groups:
        n = len(g["params"])
        yield g, params[start : start + n], list(values[start : start + n])
        start += n


def _rng_devices(x: torch.Tensor) -> list[torch.device]:
    return [x.device] if x.device.type == "cuda" else []


def _rng_state(devices: list[torch.device]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(
    state: tuple[torch.Tensor, list[torch.Tensor]], devices: list[torch.device]
) -> None:
    torch.set_rng_state(state[0])
    for d, s in zip(devices, state[1], strict=True):
        torch.cuda.set_rng_state(s, d)


@contextlib.contextmanager
def _exact_math(device: torch.device) -> Iterator[None]:
    """Full fp32 arithmetic: a 0.01 move of the weights is below bf16's and TF32's resolution."""
    if device.type != "cuda":
        yield
        return
    with (
        torch.autocast("cuda", enabled=False),
        torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled,
            benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic,
            allow_tf32=False,
        ),
    ):
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
