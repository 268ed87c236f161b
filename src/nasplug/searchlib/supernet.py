"""The supernet search that every gradient-based strategy shares.

:func:`search_supernet` trains a space's supernet and its architecture logits for some epochs:
every step takes an architecture step on a batch of the architecture half, then a weight step
on a batch of the weight half (:class:`SupernetStepper`; each half-step freezes the other
parameter group, so backward computes no gradient nobody uses). The architecture step is a
variant: :func:`first_order_step` by default, the unrolled second order of
:mod:`nasplug.searchlib.unrolled`, or none at all when the weights train along sampled paths.
:func:`supernet_result` derives the genotype and records the gap between the continuous supernet
and the derived network inside it; :func:`recalibrate_batchnorm` re-estimates BatchNorm
statistics on a path. :class:`nasplug.searchlib.supernet_options.SupernetOptions` holds the options and
hyperparameters that the strategies built on it share. A DARTS variant of a third party is a
strategy calling these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from nasplug.core.interfaces import (
    Constrains,
    Relaxation,
    ReplacesCandidates,
    ScoresCandidates,
    SearchContext,
    SearchSpace,
    Stateful,
    groups_of,
)
from nasplug.core.protocols import TrainerView
from nasplug.core.types import Choice, Genotype, LinearConstraint, SearchResult
from nasplug.engine import ddp
from nasplug.engine.batchnorm import running_stats_kept
from nasplug.engine.memo import Memo
from nasplug.engine.memory import count_params
from nasplug.searchlib import supernet_defaults as defaults
from nasplug.searchlib.diagnostics import (
    at_vertex,
    edge_stats,
    group_stats,
    summarize,
    summarize_groups,
)
from nasplug.searchlib.logits import ArchLogits

__all__ = [
    "RECALIBRATION_BATCHES",
    "WARMUP",
    "ArchStep",
    "ArchStepFactory",
    "Batch",
    "SupernetRun",
    "SupernetStepper",
    "WeightStep",
    "first_order_step",
    "recalibrate_batchnorm",
    "search_supernet",
    "supernet_result",
]

#: Weight-half batches on which the derived path's BatchNorm statistics are re-estimated.
RECALIBRATION_BATCHES = 4
#: Default warm-up epochs of the strategies built on :func:`search_supernet`. Early in a search the parameter-free ops
#: (pools, skips) lower the loss fastest, because the convolutions are still untrained, and the
#: architecture step rewards them for it: without a warm-up the default softmax search chose
#: max_pool_3x3 on 7 of 8 normal-cell edges. One epoch of weight steps lets the convolutions
#: catch up first, and keeps most of a short search for the architecture.
WARMUP = 1


@dataclass
class SupernetRun:
    """A trained supernet and its architecture logits, with the per-epoch history."""

    space: SearchSpace
    net: nn.Module
    logits: ArchLogits
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    #: The budget's soft penalty of the mixing weights, added to the architecture loss (see
    #: :attr:`~nasplug.core.interfaces.SearchContext.budget_penalty`); None without one.
    penalty: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None = None


#: A batch as the trainer yields it: ``(inputs, targets)``.
Batch = tuple[torch.Tensor, torch.Tensor]
#: ``weight_step(mixing weights) -> clip factor``: the stepper's real weight step on the
#: training batch, at the given detached mixing weights; it returns the factor gradient clipping
#: scaled the gradients by (see :meth:`~nasplug.core.protocols.TrainerView.clip_factor`).
WeightStep = Callable[[dict[str, torch.Tensor]], "torch.Tensor | float"]


class ArchStep(Protocol):
    """One architecture update of a supernet search (see :class:`SupernetStepper`).

    An :data:`ArchStepFactory` makes it from the architecture optimiser, for
    ``search_supernet(arch_step=...)``: :func:`first_order_step` by default,
    :func:`nasplug.searchlib.unrolled.second_order_step` for DARTS's unrolled gradient. A plain
    function with ``__call__``'s signature serves too; without the attribute it is taken to be
    false.

    Attributes:
        takes_weight_step: whether the step also takes the weight step. Such a step is passed
            ``weight_step=`` and calls it exactly once (with the mixing weights the weight
            step is to use); the stepper then takes no weight step of its own.
    """

    takes_weight_step: bool

    def __call__(
        self,
        run: SupernetRun,
        trainer: TrainerView,
        relaxation: Relaxation,
        val_batch: Batch,
        train_batch: Batch,
        w_opt: torch.optim.Optimizer,
        *,
        weight_step: WeightStep | None = None,
    ) -> None:
        """Update the logits once.

        Args:
            run: the supernet and its logits (``run.net``, ``run.logits``) and the budget's
                soft penalty (``run.penalty``), which the step adds to its loss.
            trainer: the shared trainer.
            relaxation: the run's relaxation; its ``penalty(logits, "arch")`` is added too.
            val_batch: a batch of the architecture half.
            train_batch: a batch of the weight half.
            w_opt: the weights' optimiser (SGD), whose state a second-order step reads.
            weight_step: the real weight step, given only when :attr:`takes_weight_step`.
        """
        ...


#: ``factory(a_opt) -> step``: makes an :class:`ArchStep` from the architecture optimiser.
ArchStepFactory = Callable[[torch.optim.Optimizer], ArchStep]


def _freeze(params: Sequence[torch.Tensor], frozen: bool) -> None:
    for p in params:
        p.requires_grad_(not frozen)


def search_supernet(
    ctx: SearchContext,
    space: SearchSpace,
    *,
    epochs: int,
    phase: str,
    w_lr: float = defaults.W_LR,
    w_lr_min: float = defaults.W_LR_MIN,
    w_momentum: float = defaults.W_MOMENTUM,
    w_weight_decay: float = defaults.W_WEIGHT_DECAY,
    a_lr: float = defaults.A_LR,
    a_weight_decay: float = defaults.A_WEIGHT_DECAY,
    arch_step: ArchStepFactory | None = None,
    sample_paths: bool = False,
    warmup: int = 0,
    logits: ArchLogits | None = None,
    before_epoch: Callable[[int, nn.Module], None] | None = None,
) -> SupernetRun:
    """Train ``space``'s supernet for ``epochs`` with the context's relaxation.

    Args:
        arch_step: a factory taking the architecture optimiser and returning the
            :class:`ArchStep` that updates the logits; default: :func:`first_order_step`.
            Ignored when ``sample_paths``.
        sample_paths: train the weights along uniformly sampled single paths (one candidate per
            choice each step) and never update the logits (random search's weight sharing).
        warmup: the first epochs take weight steps only, the architecture frozen at its start
            and the relaxation's clock held at its first step (at most ``epochs - 1``, so that
            at least one epoch learns the architecture). The relaxation's schedules then run
            over the remaining epochs.
        logits: initial logits (e.g. carried from a previous stage); fresh ones otherwise,
            under the relaxation's constraints where it has any (see
            :class:`~nasplug.core.interfaces.Constrains`) and the run's budget
            (:attr:`~nasplug.core.interfaces.SearchContext.constraints`, on ``space``'s candidates),
            unless the budget is a soft penalty or ``sample_paths``.
        before_epoch: called with the epoch and the supernet before each epoch.
    """
    trainer, relax = ctx.trainer, ctx.relaxation
    net = trainer.place(space.supernet(ctx.task))
    budget = () if sample_paths else tuple(c.on(space.choices()) for c in ctx.constraints)
    soft = ctx.budget_penalty is not None
    if logits is None:
        constraints = relax.constraints(space) if isinstance(relax, Constrains) else ()
        logits = ArchLogits(
            space.choices(),
            groups=groups_of(space),
            constraints=constraints + (() if soft else budget),
        )
    logits = trainer.place(logits)
    stepper = SupernetStepper(
        trainer,
        relax,
        net,
        logits,
        arch_step=arch_step,
        w_lr=w_lr,
        w_momentum=w_momentum,
        w_weight_decay=w_weight_decay,
        a_lr=a_lr,
        a_weight_decay=a_weight_decay,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(stepper.w_opt, epochs, eta_min=w_lr_min)
    memo = Memo(history=[], seconds=0.0)
    run = stepper.run = SupernetRun(space, net, logits)
    choices, groups = space.choices(), groups_of(space)
    if soft and budget:
        run.penalty = expected_cost_penalty(choices, budget, float(ctx.budget_penalty or 0.0))
    warmup = max(min(warmup, epochs - 1), 0)
    steps = min(trainer.steps("weight", ctx.batch_size), trainer.steps("arch", ctx.batch_size))
    state = {
        "net": net,
        "logits": logits,
        "w_opt": stepper.w_opt,
        "a_opt": stepper.a_opt,
        "sched": sched,
        "relaxation": relax,
        **({"space": space} if isinstance(space, Stateful) else {}),
        "memo": memo,
    }
    for epoch in trainer.epochs(epochs, state, phase):
        t0 = time.time()
        warming = epoch < warmup
        relax.on_epoch(max(epoch - warmup, 0), epochs - warmup)
        if before_epoch is not None:
            before_epoch(epoch, net)
        net.train()
        train_m = trainer.metrics()
        batches = zip(
            trainer.batches("weight", ctx.batch_size, epoch=epoch, stream=0),
            trainer.batches("arch", ctx.batch_size, epoch=epoch, stream=1),
            strict=False,  # an odd split gives the architecture half one example more
        )
        bar = trainer.progress(batches, steps, f"{phase} {epoch + 1}/{epochs}")
        for step, ((xw, tw), (xa, ta)) in enumerate(bar):
            relax.on_step(0 if warming else step, steps)
            out, loss = stepper.step(
                (xw, tw),
                (xa, ta),
                sample_paths=sample_paths,
                arch=not warming,
                where=f"{phase} epoch {epoch + 1} step {step + 1}",
            )
            train_m.update(out, tw)
            # Reading the loss is a host-device sync: only where that is free (the CPU).
            if step % 10 == 0 and not trainer.lazy_sync and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
        step_seconds = (time.time() - t0) / max(steps, 1)
        sched.step()
        eval_w = logits.eval_weights(relax)

        def forward(x: torch.Tensor, w: dict[str, torch.Tensor] = eval_w) -> torch.Tensor:
            return net(x, w)

        val = trainer.evaluate(forward, "arch", module=net)
        changed = space.on_epoch_end(net, eval_w) if isinstance(space, ReplacesCandidates) else {}
        if changed:
            stepper.refresh(space.choices(), changed)
        stats = edge_stats(choices, eval_w)
        nodes = group_stats(choices, groups, eval_w)
        memo["seconds"] += time.time() - t0
        train = train_m.compute()
        summary = {**summarize(stats), **summarize_groups(nodes)}
        rec = {
            "epoch": epoch + 1,
            "train": train,
            "val": val,
            "genotype": space.derive(logits.derivable(eval_w)).to_dict(),
            "edges": stats,
            "groups": nodes,
            "summary": summary,
            "seconds": time.time() - t0,
            "warmup": warming,
            "step_seconds": step_seconds,
            "candidates_changed": {k: list(v) for k, v in changed.items()},
        }
        memo["history"].append(rec)
        trainer.log("search_epoch", phase=phase, **rec)
        eta = memo["seconds"] / (epoch + 1) * (epochs - epoch - 1)
        vertex = f" vertex distance {summary['mean_vertex_distance']:.3f}" if nodes else ""
        trainer.say(
            f"{phase} epoch {epoch + 1}/{epochs}{' (warm-up)' if warming else ''}: "
            f"train loss {train['loss']:.4f} "
            f"val {ctx.task.metric} {val.get(ctx.task.metric, float('nan')):.4f} "
            f"support {summary.get('mean_support', 0):.2f}{vertex} "
            f"({rec['seconds']:.1f}s, ETA {eta:.0f}s)"
        )
    run.history = list(memo["history"])
    run.seconds = float(memo["seconds"])
    return run


class SupernetStepper:
    """One search step of a supernet: an architecture half-step, then a weight half-step.

    Each half-step freezes the other parameter group, so backward computes no gradient that
    nobody uses.
    """

    def __init__(
        self,
        trainer: TrainerView,
        relaxation: Relaxation,
        net: nn.Module,
        logits: ArchLogits,
        *,
        arch_step: ArchStepFactory | None = None,
        w_lr: float = defaults.W_LR,
        w_momentum: float = defaults.W_MOMENTUM,
        w_weight_decay: float = defaults.W_WEIGHT_DECAY,
        a_lr: float = defaults.A_LR,
        a_weight_decay: float = defaults.A_WEIGHT_DECAY,
    ) -> None:
        self.trainer, self.relax, self.net, self.logits = trainer, relaxation, net, logits
        self.w_params = [p for p in net.parameters() if p.requires_grad]
        self.a_params = list(logits.parameters())
        self.w_opt = torch.optim.SGD(
            self.w_params, lr=w_lr, momentum=w_momentum, weight_decay=w_weight_decay
        )
        self.a_opt = torch.optim.Adam(
            self.a_params, lr=a_lr, betas=defaults.A_BETAS, weight_decay=a_weight_decay
        )
        self.arch_step = (arch_step or first_order_step)(self.a_opt)
        if arch_step is not None and ddp.is_distributed():
            # A custom architecture step may call a_opt.step() itself instead of going through
            # Trainer.update: average the logits' gradients over the ranks right before it.
            # (For second-order DARTS that is the mean of each rank's unrolled gradient on its
            # own shards: every rank stays identical, though it is not the single-process value.)
            self.a_opt.register_step_pre_hook(
                lambda opt, args, kwargs: ddp.average_gradients(self.a_params)
            )
        self.run = SupernetRun(None, net, logits)  # type: ignore[arg-type]

    @torch.no_grad()
    def refresh(self, choices: tuple, changed: Mapping[str, Sequence[str]]) -> None:
        """Give replaced candidates a fresh start: the choice's mean logit, no optimiser state.

        A new candidate inheriting a weak logit would get exactly zero weight under a sparse
        relaxation and so never a gradient; the mean puts it back in the competition.
        """
        by_name = {c.name: c for c in choices}
        for name, logit in self.logits.items():
            if name not in changed:
                continue
            idx = [by_name[name].candidates.index(k) for k in changed[name]]
            logit[idx] = logit.mean()
            for buf in self.a_opt.state.get(logit, {}).values():
                if isinstance(buf, torch.Tensor) and buf.shape == logit.shape:
                    buf[idx] = 0

    def step(
        self,
        train_batch: Batch,
        val_batch: Batch,
        *,
        sample_paths: bool = False,
        arch: bool = True,
        where: str = "search step",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; returns the weight step's (detached outputs, loss).

        Without ``arch`` (a warm-up), or while the relaxation is frozen (its weights constant in
        the logits), only the weight half-step is taken.
        """
        if sample_paths:
            with torch.no_grad():
                path = _uniform_path(self.logits)
            return self._weight_step(train_batch, path, where)[:2]
        if not arch or self.relax.frozen():
            with torch.no_grad():
                weights = {k: w.detach() for k, w in self.logits.weights(self.relax).items()}
            return self._weight_step(train_batch, weights, where)[:2]
        _freeze(self.w_params, True)
        # A plain function without the attribute takes no weight step (see ArchStep).
        if getattr(self.arch_step, "takes_weight_step", False):
            done: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

            def weight_step(mix: dict[str, torch.Tensor]) -> torch.Tensor | float:
                done.append(self._weight_step(train_batch, mix, where))
                return self.trainer.clip_factor(done[-1][2])

            self.arch_step(
                self.run,
                self.trainer,
                self.relax,
                val_batch,
                train_batch,
                self.w_opt,
                weight_step=weight_step,
            )
            _freeze(self.w_params, False)
            if len(done) != 1:
                raise RuntimeError(
                    f"the architecture step took {len(done)} weight steps; "
                    "one that takes the weight step must take exactly one"
                )
            return done[0][:2]
        self.arch_step(self.run, self.trainer, self.relax, val_batch, train_batch, self.w_opt)
        _freeze(self.w_params, False)
        with torch.no_grad():
            weights = {k: w.detach() for k, w in self.logits.weights(self.relax).items()}
        return self._weight_step(train_batch, weights, where)[:2]

    def _weight_step(
        self, train_batch: Batch, weights: dict[str, torch.Tensor], where: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The weight half-step at fixed mixing ``weights``: (detached outputs, loss, and the
        gradient norm clipping measured, see :meth:`~nasplug.core.protocols.TrainerView.update`).

        Leaves the weights trainable and the logits as they were found.
        """
        trainer, logits = self.trainer, self.logits
        _freeze(self.w_params, False)
        _freeze(self.a_params, True)
        xw, tw = train_batch
        try:
            with trainer.autocast():
                out = self.net(xw, weights)
                loss = trainer.loss(out, tw)
                pen = self.relax.penalty(logits.as_dict(), "weight")
                if pen is not None:
                    loss = loss + pen
            trainer.check_finite(loss, where)
            norm = trainer.update(loss, self.w_opt, self.w_params)
        finally:
            _freeze(self.a_params, False)
        return out.detach(), loss.detach(), norm


def first_order_step(a_opt: torch.optim.Optimizer) -> ArchStep:
    """The first-order architecture step: the gradient of the validation loss at the current weights.

    Args:
        a_opt: the architecture optimiser.

    Returns:
        The step; it takes no weight step.
    """
    return _FirstOrderStep(a_opt)


class _FirstOrderStep:
    """:func:`first_order_step`'s step."""

    takes_weight_step: bool = False

    def __init__(self, a_opt: torch.optim.Optimizer) -> None:
        self.a_opt = a_opt

    def __call__(
        self,
        run: SupernetRun,
        trainer: TrainerView,
        relaxation: Relaxation,
        val_batch: Batch,
        train_batch: Batch,
        w_opt: torch.optim.Optimizer,
        *,
        weight_step: WeightStep | None = None,
    ) -> None:
        xa, ta = val_batch
        with trainer.autocast():
            weights = run.logits.weights(relaxation)
            loss = trainer.loss(run.net(xa, weights), ta)
            pen = relaxation.penalty(run.logits.as_dict(), "arch")
            if pen is not None:
                loss = loss + pen
            if run.penalty is not None:
                loss = loss + run.penalty(weights)
        trainer.check_finite(loss, "architecture step")
        trainer.update(loss, self.a_opt, clip=False)


def expected_cost_penalty(
    choices: Sequence[Choice], constraints: Sequence[LinearConstraint], lam: float
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    """``lam`` times, summed over ``constraints``, the weights' expected cost over the
    constraint's bound (``sum(coefficient * weight) / bound``): ProxylessNAS's soft budget,
    which pulls the architecture toward cheap candidates without any guarantee."""
    rates = {c.name: torch.zeros(len(c.candidates), dtype=torch.float64) for c in choices}
    position = {c.name: {k: i for i, k in enumerate(c.candidates)} for c in choices}
    for c in constraints:
        for choice, candidate, coefficient in c.terms:
            rates[choice][position[choice][candidate]] += coefficient / max(c.bound, 1e-12)
    used = {name: rate for name, rate in rates.items() if bool(rate.any())}

    def penalty(weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        terms = [(rate.to(weights[name]) * weights[name]).sum() for name, rate in used.items()]
        return lam * torch.stack(terms).sum()

    return penalty


def _uniform_path(logits: ArchLogits) -> dict[str, torch.Tensor]:
    """One candidate per choice, uniformly at random, as one-hot weights."""
    out = {}
    for name, row in logits.items():
        w = torch.zeros_like(row)
        w[int(torch.randint(len(row), (1,)).item())] = 1.0
        out[name] = w
    return out


def supernet_result(
    ctx: SearchContext, run: SupernetRun, genotype: Genotype | None = None
) -> SearchResult:
    """Derive the genotype and measure the discretisation gap on the architecture half.

    The gap compares the supernet with its continuous (evaluation) weights against the same
    supernet with the derived genotype's one-hot weights, without retraining; the one-hot
    weights are scored again with BatchNorm statistics re-estimated on their path.
    """
    trainer, task = ctx.trainer, ctx.task
    eval_w = run.logits.eval_weights(ctx.relaxation)
    choices, groups = run.space.choices(), groups_of(run.space)
    derived = run.space.derive(run.logits.derivable(eval_w))
    vertex = at_vertex(choices, groups, eval_w)
    if vertex:
        # At a vertex the supernet is one network: the derive rule must name exactly that one.
        support = run.space.one_hot(derived)
        if not all(torch.equal(support[k].to(w), w) for k, w in eval_w.items()):
            raise RuntimeError(
                f"the search ended at a vertex, but {type(run.space).__name__}."
                f"derive gives another network than the weights' support"
            )
    genotype = genotype or derived
    hot = {k: v.to(trainer.device) for k, v in run.space.one_hot(genotype).items()}
    cont = trainer.evaluate(lambda x: run.net(x, eval_w), "arch", module=run.net)
    disc = trainer.evaluate(lambda x: run.net(x, hot), "arch", module=run.net)
    recal = _evaluate_with_path_statistics(
        trainer, run.net, lambda x: run.net(x, hot), ctx.batch_size
    )
    m = task.metric
    stats = edge_stats(choices, eval_w)
    nodes = group_stats(choices, groups, eval_w)
    metrics = {
        f"val_{m}_continuous": cont.get(m, float("nan")),
        f"val_{m}_discrete": disc.get(m, float("nan")),
        f"val_{m}_discrete_recalibrated": recal.get(m, float("nan")),
        "discretisation_gap": cont.get(m, float("nan")) - disc.get(m, float("nan")),
        f"val_{m}": cont.get(m, float("nan")),
        "search_seconds": run.seconds,
        "params": float(count_params(run.space.build(genotype, task))),
        "supernet_params": float(count_params(run.net)),
        "final_vertex": float(vertex),
        **{f"final_{k}": v for k, v in {**summarize(stats), **summarize_groups(nodes)}.items()},
    }
    trainer.log(
        "discretisation",
        metric=m,
        continuous=cont,
        discrete=disc,
        recalibrated=recal,
        gap=metrics["discretisation_gap"],
        edges=stats,
        groups=nodes,
        vertex=vertex,
    )

    def score(weights: Mapping[str, torch.Tensor]) -> float:
        w = {k: v.to(trainer.device) for k, v in weights.items()}
        return trainer.evaluate(lambda x: run.net(x, w), "arch", module=run.net).get(
            m, float("nan")
        )

    space = run.space
    return SearchResult(
        genotype,
        metrics,
        run.history,
        space.score_candidates(eval_w, score) if isinstance(space, ScoresCandidates) else [],
        supernet=run.net,
        weights={k: v.detach() for k, v in eval_w.items()},
    )


def _evaluate_with_path_statistics(
    trainer: TrainerView,
    net: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
) -> dict[str, float]:
    """Metrics of ``forward`` with BatchNorm statistics re-estimated on its path, no weight changed.

    The supernet's statistics describe the mixture, not the derived path; scored both ways, the
    discretisation gap shows how much of it is stale statistics rather than the architecture.
    The supernet's own statistics are restored afterwards.
    """
    with running_stats_kept(net):
        recalibrate_batchnorm(net, forward, trainer, batch_size, RECALIBRATION_BATCHES)
        return trainer.evaluate(forward, "arch", module=net)


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module,
    forward: Callable[[torch.Tensor], torch.Tensor],
    trainer: TrainerView,
    batch_size: int,
    batches: int,
) -> None:
    """Re-estimate BatchNorm running statistics as the plain average over a few weight batches.

    Statistics gathered along random paths (SPOS) or under a mixture of candidates do not
    describe any single path well.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = net.training
    net.train()
    try:
        for b, (x, _) in enumerate(trainer.batches("weight", batch_size, shuffle=False)):
            if b >= batches:
                break
            with trainer.autocast():
                forward(x)
    finally:
        net.train(was_training)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
