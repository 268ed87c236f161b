"""The built-in relaxations: softmax (with beta-DARTS), sparsemax, entmax (1.5 and any alpha),
soft and hard Gumbel, and DrNAS's Dirichlet.

Every relaxation works over the last dimension of its logits, so one call can serve a single
choice (a 1-D tensor) or a batch of choices stacked into rows.

Schedules: the annealed relaxations share one clock (:class:`Scheduled`). ``on_epoch(epoch,
epochs)`` and ``on_step(step, steps)`` set the search progress

    progress = (epoch * steps + step) / (epochs * steps - 1), clipped to [0, 1],

which is 0 at the first step of the search and exactly 1 at its last step, and every scheduled
value (a temperature ``tau``, entmax's ``alpha``, softmax's Beta-Decay weight) is a
:class:`Schedule` read at that progress.
The clock goes into ``state_dict``, so a resumed search continues with the very same values.

Randomness: the Gumbel and Dirichlet relaxations draw their noise from torch's global
generator on the logits' device; the trainer seeds it and saves its state in checkpoints, so a
resumed run draws the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from entmax import entmax15, entmax_bisect, sparsemax
from torch.distributions import Dirichlet
from torch.distributions.kl import kl_divergence

from nasplug.core.interfaces import DeclaresParameterFree, Relaxation, SearchSpace
from nasplug.core.types import LinearConstraint
from nasplug.searchlib.polytope import (
    cap_constraints,
    constrained_projection,
    constrained_vertex,
    group_projection,
    nearest_vertex,
)

__all__ = [
    "SHAPES",
    "DrNAS",
    "Entmax",
    "Entmax15",
    "Gumbel",
    "GumbelHard",
    "Schedule",
    "Scheduled",
    "Softmax",
    "Sparsemax",
    "Tempered",
]

#: Accepted schedule shapes, for the ``schedule`` options.
SHAPES: tuple[str, ...] = ("constant", "linear", "exp", "cosine")
# Keeps the Gumbel noise finite: -log(-log(u)) is infinite at u = 0 and u = 1.
_UNIFORM_EPS = 1e-6
# Keeps (logits + noise) / tau finite in float32 even for diverged (infinite) logits.
_LOGIT_BOUND = 1e6


@dataclass(frozen=True)
class Schedule:
    """A value that moves from ``start`` (progress 0) to ``end`` (progress 1).

    Shapes: ``constant`` (always ``start``), ``linear``, ``exp`` (geometric: equal ratios in
    equal times, for temperatures spanning decades) and ``cosine`` (slow at both ends).

    Example:
        >>> Schedule("tau", 1.0, 0.01, "exp").value(0.5)
        0.1
    """

    name: str
    start: float
    end: float
    shape: str = "exp"

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(
                f"unknown {self.name} schedule {self.shape!r}; accepted: {', '.join(SHAPES)}"
            )
        if self.shape == "exp" and (self.start <= 0 or self.end <= 0):
            raise ValueError(
                f"an exp {self.name} schedule needs positive start and end, "
                f"got {self.start} and {self.end}"
            )

    def value(self, progress: float) -> float:
        t = min(max(progress, 0.0), 1.0)
        if self.shape == "constant":
            return self.start
        if self.shape == "linear":
            return self.start + (self.end - self.start) * t
        if self.shape == "exp":
            return self.start * (self.end / self.start) ** t
        return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * t)) / 2.0


class Scheduled(Relaxation):
    """A relaxation whose parameters follow :class:`Schedule` s of the search progress.

    Subclasses pass their schedules by name and read the current values with ``value(name)``.
    """

    def __init__(self, *schedules: Schedule, span: float = 1.0) -> None:
        if not 0.0 < span <= 1.0:
            raise ValueError(f"a schedule's span must be in (0, 1], got {span}")
        self._schedules = {s.name: s for s in schedules}
        self._span = span  # the schedules reach their end values at this progress
        self._epoch, self._epochs, self._step, self._steps = 0, 1, 0, 1

    @property
    def progress(self) -> float:
        """Where the search stands, from 0 (first step) to 1 (last step)."""
        done = self._epoch * self._steps + self._step
        return min(max(done / max(self._epochs * self._steps - 1, 1), 0.0), 1.0)

    def value(self, name: str) -> float:
        return self._schedules[name].value(self.progress / self._span)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        if epochs < 1 or epoch < 0:
            raise ValueError(f"epoch {epoch} of {epochs}: need epochs >= 1 and epoch >= 0")
        # The step count of the previous epoch is kept, so that progress at the start of an
        # epoch equals progress at its first on_step.
        self._epoch, self._epochs, self._step = epoch, epochs, 0

    def on_step(self, step: int, steps: int) -> None:
        if steps < 1 or step < 0:
            raise ValueError(f"step {step} of {steps}: need steps >= 1 and step >= 0")
        self._step, self._steps = step, steps

    def state_dict(self) -> dict[str, Any]:
        """The clock, plus the current scheduled values (for logs; they follow from the clock)."""
        state: dict[str, Any] = {
            "epoch": self._epoch,
            "epochs": self._epochs,
            "step": self._step,
            "steps": self._steps,
        }
        state.update({name: self.value(name) for name in self._schedules})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._epoch, self._epochs = int(state["epoch"]), int(state["epochs"])
        self._step, self._steps = int(state["step"]), int(state["steps"])


class Softmax(Scheduled):
    """DARTS's relaxation: ``softmax(logits / temperature)``; dense, never exact zeros.

    **beta-DARTS** (Ye et al., CVPR 2022), with ``beta > 0``: the architecture step's loss gains
    the Beta-Decay penalty

        lambda * mean over choices of logsumexp(logits / temperature),

    the smooth maximum of each choice's (tempered) logits, whose gradient is the choice's own
    softmax weights (divided by the temperature): it pulls every logit down in proportion to its
    weight, which keeps the leading logits from running away (the paper's "value and variance of
    the activated architecture parameters"). Its weight ``lambda`` grows linearly with the search
    progress, from 0 at the first step to ``beta`` at the last (after any warm-up), on the clock
    of :class:`Scheduled`, which goes into ``state_dict``. As the authors' code: the logsumexp
    per choice, averaged over all choices; only in the architecture step. Where it differs: the
    authors' released search raises ``lambda`` once per epoch, by 0.5 (``50 * epoch / 100``:
    0 at the first of NAS-Bench-201's 100 epochs, 49.5 at the last); here it rises every step
    and reaches ``beta`` exactly. The architecture optimiser (Adam) normalises the scale of
    gradients, so what ``beta`` sets is the penalty's pull against the validation loss's. With
    the default ``beta = 0`` there is no penalty: weights and losses are those of plain DARTS.

    The annealed relaxations of the family (sparsemax, entmax) do not take the option: their
    logits stay hundredths apart while ``tau`` falls to a few thousandths, so the logsumexp of
    the raw logits pulls every candidate nearly alike (a shift, which leaves their weights as
    they are), and that of the tempered logits is about their maximum over ``tau``, a pull of
    ``1 / tau`` on the leader alone.

    Args:
        temperature: the softmax temperature.
        beta: the Beta-Decay penalty's weight at the end of the search; 0: no penalty.
    """

    def __init__(self, temperature: float = 1.0, beta: float = 0.0) -> None:
        if temperature <= 0:
            raise ValueError(f"softmax temperature must be > 0, got {temperature}")
        if not 0.0 <= beta < math.inf:
            raise ValueError(
                f"softmax beta must be a finite number >= 0 (the Beta-Decay penalty's final "
                f"weight; 0: none), got {beta}"
            )
        super().__init__(Schedule("beta_weight", 0.0, beta, "linear"))
        self.temperature = temperature
        self.beta = beta

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)

    @property
    def beta_weight(self) -> float:
        """The Beta-Decay penalty's weight at the current step."""
        return self.value("beta_weight")

    def penalty(self, logits: Mapping[str, torch.Tensor], phase: str) -> torch.Tensor | None:
        if self.beta == 0 or phase != "arch" or not logits:
            return None
        smooth_max = [torch.logsumexp(t / self.temperature, dim=-1) for t in logits.values()]
        return self.beta_weight * torch.stack(smooth_max).mean()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:  # a checkpoint of earlier versions holds no clock for softmax
            super().load_state_dict(state)


class Tempered(Scheduled):
    """A relaxation of ``logits / tau``; the temperature runs from ``tau_start`` to ``tau_end``."""

    def __init__(
        self, tau_start: float, tau_end: float, schedule: str, *more: Schedule, span: float = 1.0
    ) -> None:
        if tau_start <= 0 or tau_end <= 0:
            raise ValueError(
                f"temperatures must be > 0, got tau_start={tau_start}, tau_end={tau_end}"
            )
        super().__init__(Schedule("tau", tau_start, tau_end, schedule), *more, span=span)

    @property
    def tau(self) -> float:
        return self.value("tau")


class _CellCap:
    """The ``grouped`` and ``cap`` options of a relaxation that can cap each cell's
    parameter-free candidates, and the constraints they ask for (see :class:`Sparsemax`)."""

    grouped: bool
    cap: int | None

    def _set_cap(self, grouped: bool, cap: int | None) -> None:
        if cap is not None and cap < 0:
            raise ValueError(
                "cap must be >= 0 (the most parameter-free candidates a cell keeps) or none, "
                f"got {cap}"
            )
        self.grouped, self.cap = grouped, cap

    def constraints(self, space: SearchSpace) -> tuple[LinearConstraint, ...]:
        """The cap on each cell's parameter-free mass, where the space declares those
        candidates; none without a cap or by choice (``grouped=false``)."""
        if self.cap is None or not self.grouped or not isinstance(space, DeclaresParameterFree):
            return ()
        return cap_constraints(space.parameter_free(), self.cap)


class Sparsemax(_CellCap, Tempered):
    """``sparsemax(logits / tau)``: a projection with exact zeros, by group where a space has them.

    **Per choice** (``grouped=false``) it projects each choice's tempered logits onto the
    simplex, as earlier versions did.

    **By group** (the default on spaces that declare :class:`~nasplug.core.types.Group` s, such as
    the cell space's nodes) it projects the tempered logits ``z`` of a group's members (a
    matrix, members x candidates, ``unused`` left out) onto the polytope

        P = {x >= 0 : every member's row sums to at most 1, all of x sums to k}.

    A member's slack means "unused", P's vertices are exactly the genotypes the DARTS rule can
    derive (k members, one candidate each), and maximising ``<z, x>`` over P is that rule, so
    the supernet gives a node the mass the derived network gives it. See
    :func:`nasplug.searchlib.polytope.group_projection`. Sparsemax is its case of one member and k = 1,
    which is how a choice outside every group is weighed (its vertex: the argmax).

    **Schedule.** The architecture optimiser moves logits slowly (Adam at lr 3e-4 moves them
    about 0.06 in 200 steps), and the projection of nearly equal logits keeps every candidate.
    So ``tau`` falls geometrically from ``tau_start = 1`` (every candidate kept while the logits
    are nearly equal: the first part explores) to ``tau_end = 0.001``, where gaps of a few
    hundredths between logits leave about one candidate per choice. By group, the fall takes the
    first ``1 - hard`` of the search; the last ``hard`` (half, by default) trains on the vertex
    nearest to the tempered logits (the DARTS rule's genotype, exactly one-hot), the logits
    frozen. So the search ends with the supernet equal to the derived network, its weights
    trained for that very path. The fall brings the weights near a vertex before the hard phase
    (a mean distance of 0.63 against 0.93 with ``tau_end = 0.005`` in the default search), so
    the switch to it disturbs the weights less; the hard phase's steps compute 8 ops per cell
    and take no architecture step, which is why it can take half the search. The rule follows
    the search's own length. ``grouped=false tau_end=0.005`` is the per-choice sparsemax
    of earlier versions.

    **Cap on parameter-free ops.** On a space that declares its parameter-free candidates
    (:class:`~nasplug.core.interfaces.DeclaresParameterFree`; the cell space's pools, and its skips
    where they hold no convolution), ``cap = M`` adds per cell the constraint "the mass on
    parameter-free candidates is at most M" to the projection, which then weighs the cell's
    nodes together (:func:`nasplug.searchlib.polytope.constrained_projection`, exact, with an exact
    Jacobian). The cut polytope's vertices are the genotypes with at most ``M`` parameter-free
    ops, and the hard phase trains the best of them
    (:func:`nasplug.searchlib.polytope.constrained_vertex`), which is what the search derives. Without
    it, parameter-free ops win the early race, before the convolutions are trained: the
    uncapped search chose 6, 6 and 7 of 8 normal edges parameter-free on three seeds. The
    default is ``cap=2`` (what P-DARTS keeps of skips, here inside the search): in the cell
    space it keeps 2 of 8 on every seed with the trained networks at least as accurate, and in
    ``nb201`` it scored higher on the benchmark table with a third of the spread, while a later
    or slower anneal, a longer warm-up or a shorter hard phase did not beat the default schedule
    (docs/benchmarks.md). ``cap=none``, or an ``M`` of at least a cell's
    op count (nodes times ``node_inputs``), is exactly the search without a cap, bit for bit.

    Constraints a search adds beside the cap (resource budgets over the whole network) share its
    groups: each block of linked groups is projected under all of its constraints at once, and
    the hard phase trains the best genotype meeting them all.

    Skipping zero-weight candidates is gradient-exact: the projection's Jacobian is zero
    outside its support.

    Args:
        tau_start: temperature at the first step.
        tau_end: temperature at the end of the fall.
        schedule: shape of the temperature curve: constant (stays at ``tau_start``), linear,
            exp or cosine.
        grouped: project each group onto its polytope; false: per-choice sparsemax everywhere,
            with no hard phase and no cap.
        hard: the share of the search, at its end, trained on the vertex (grouped only; 0: none).
        cap: the most parameter-free candidates a cell keeps (grouped only); none: no cap.
    """

    def __init__(
        self,
        tau_start: float = 1.0,
        tau_end: float = 0.001,
        schedule: str = "exp",
        grouped: bool = True,
        hard: float = 0.5,
        cap: int | None = 2,
    ) -> None:
        if not 0.0 <= hard < 1.0:
            raise ValueError(
                f"hard must be in [0, 1) (the share of the search trained on the "
                f"vertex), got {hard}"
            )
        self._set_cap(grouped, cap)
        self.hard = hard if grouped else 0.0
        super().__init__(tau_start, tau_end, schedule, span=1.0 - self.hard)

    def constrained_weights(
        self,
        groups: Sequence[Sequence[torch.Tensor]],
        ks: Sequence[int],
        costs: Sequence[Sequence[Sequence[torch.Tensor]]],
        bounds: Sequence[float],
        *,
        evaluation: bool = False,
    ) -> list[list[torch.Tensor]]:
        if self.frozen():
            return constrained_vertex([[r.detach() for r in g] for g in groups], ks, costs, bounds)
        tau = self.tau
        return constrained_projection([[r / tau for r in g] for g in groups], ks, costs, bounds)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return sparsemax(logits / self.tau, dim=-1)

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        if not self.grouped:
            return None
        if self.frozen():
            return nearest_vertex([r.detach() for r in rows], k)
        tau = self.tau
        return group_projection([r / tau for r in rows], k)

    def frozen(self) -> bool:
        return self.hard > 0 and self.progress >= self._span


class Entmax15(Tempered):
    """``entmax15(logits / tau)``: between softmax and sparsemax, with exact zeros.

    Entmax 1.5 needs larger gaps between the tempered logits than sparsemax to drop a
    candidate, so its temperature falls further: geometrically from ``tau_start = 1`` (dense
    while logits are nearly equal) to ``tau_end = 0.002`` at the last step (one or two
    candidates per choice).
    Skipping zero-weight candidates is gradient-exact.

    Args:
        tau_start: temperature at the first step.
        tau_end: temperature at the last step.
        schedule: shape of the temperature curve: constant, linear, exp or cosine.
    """

    def __init__(
        self, tau_start: float = 1.0, tau_end: float = 0.002, schedule: str = "exp"
    ) -> None:
        super().__init__(tau_start, tau_end, schedule)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return entmax15(logits / self.tau, dim=-1)


class Entmax(Tempered):
    """``alpha``-entmax of ``logits / tau``: softmax at alpha 1, sparsemax at alpha 2.

    With ``anneal``, alpha rises linearly from 1 (softmax: dense, exploring) at the first step
    to 2 (sparsemax) at the last, and ``alpha`` must be left at its default. The temperature
    follows the same rule as :class:`Entmax15`. Skipping zero-weight candidates is
    gradient-exact.

    Args:
        alpha: the fixed entmax alpha, at least 1.
        anneal: run alpha from 1 to 2 over the search instead.
        tau_start: temperature at the first step.
        tau_end: temperature at the last step.
        schedule: shape of the temperature curve: constant, linear, exp or cosine.
    """

    def __init__(
        self,
        alpha: float = 1.5,
        anneal: bool = False,
        tau_start: float = 1.0,
        tau_end: float = 0.002,
        schedule: str = "exp",
    ) -> None:
        if alpha < 1:
            raise ValueError(
                f"entmax alpha must be >= 1 (1 is softmax, 2 is sparsemax), got {alpha}"
            )
        if anneal and alpha != 1.5:
            raise ValueError(
                f"entmax: give either alpha={alpha} or anneal=true (alpha from 1 to 2), not both"
            )
        alphas = (
            Schedule("alpha", 1.0, 2.0, "linear")
            if anneal
            else Schedule("alpha", alpha, alpha, "constant")
        )
        super().__init__(tau_start, tau_end, schedule, alphas)

    @property
    def alpha(self) -> float:
        return self.value("alpha")

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha
        if alpha == 1.0:  # the bisection is undefined at alpha = 1, where entmax is softmax
            return torch.softmax(logits / self.tau, dim=-1)
        return entmax_bisect(logits / self.tau, alpha=alpha, dim=-1)


def _perturbed(logits: torch.Tensor) -> torch.Tensor:
    """``logits + g`` with Gumbel noise ``g``, in float32 at least."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    z = z.clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
    u = torch.rand_like(z).clamp_(_UNIFORM_EPS, 1.0 - _UNIFORM_EPS)
    return z - torch.log(-torch.log(u))


def _gumbel_softmax(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``softmax((logits + g) / tau)`` with Gumbel noise ``g``, in float32 at least."""
    return torch.softmax(_perturbed(logits) / tau, dim=-1)


class Gumbel(Tempered):
    """SNAS: a soft Gumbel-softmax sample, ``softmax((logits + g) / tau)``, at every call.

    A fresh sample per call of :meth:`weights` (the trainer calls it once per step and shares it
    by every cell of a type). The weights are never exactly zero for finite logits, so nothing
    is skipped and skipping stays exact. ``tau`` falls geometrically from 1 to 0.1 by default.
    ``eval_weights`` is the deterministic ``softmax(logits)``: the probability of each
    candidate being the sample's largest entry.

    Args:
        tau_start: temperature at the first step.
        tau_end: temperature at the last step.
        schedule: shape of the temperature curve: constant, linear, exp or cosine.
    """

    def __init__(self, tau_start: float = 1.0, tau_end: float = 0.1, schedule: str = "exp") -> None:
        super().__init__(tau_start, tau_end, schedule)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return _gumbel_softmax(logits, self.tau).to(logits.dtype)

    def eval_weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)


class GumbelHard(_CellCap, Gumbel):
    """GDAS: a straight-through one-hot Gumbel sample; one candidate per choice and step.

    The forward value is exactly one-hot (the unchosen candidates are exactly 0.0, so the
    supernet runs one candidate per choice); the gradient is that of the tempered sample ``p``,
    so it reaches every logit. ``tau`` falls linearly from 10 to 0.1 by default, as in GDAS.
    Skipping is part of this estimator, not an approximation of a dense gradient, hence
    ``skip_is_exact = False``. ``eval_weights`` is ``softmax(logits)``.

    By group (the default on spaces with groups) a step samples a vertex of the group's
    polytope: the DARTS rule on Gumbel-perturbed logits, k members with one candidate each
    (two edges of a cell node, one op each). Its straight-through gradient is that of ``k``
    times the tempered softmax over all of the group's (member, candidate) pairs, the group's
    total mass. Evaluation uses the DARTS rule on the plain logits, the path the search
    derives.

    With ``cap = M`` (on spaces that declare parameter-free candidates, as for
    :class:`Sparsemax`), a cell's sampled path is the best genotype for the perturbed logits
    with at most ``M`` parameter-free ops (:func:`nasplug.searchlib.polytope.constrained_vertex`), and so
    is the evaluation path. The default matches :class:`Sparsemax`'s, ``cap=2``: in ``nb201``
    the uncapped sampled paths were mostly pools and ``none`` (5.3 of 6 edges, table accuracy
    79.06 ± 11.33 over three seeds), capped 2 of 6 and 91.81 ± 0.97 (docs/benchmarks.md);
    ``cap=none`` samples as without a cap.

    Args:
        tau_start: temperature at the first step.
        tau_end: temperature at the last step.
        schedule: shape of the temperature curve: constant, linear, exp or cosine.
        grouped: sample a vertex per group; false: one candidate per choice everywhere, no cap.
        cap: the most parameter-free candidates a cell's path keeps (grouped only); none: no cap.
    """

    skip_is_exact = False

    def __init__(
        self,
        tau_start: float = 10.0,
        tau_end: float = 0.1,
        schedule: str = "linear",
        grouped: bool = True,
        cap: int | None = 2,
    ) -> None:
        super().__init__(tau_start, tau_end, schedule)
        self._set_cap(grouped, cap)

    def constrained_weights(
        self,
        groups: Sequence[Sequence[torch.Tensor]],
        ks: Sequence[int],
        costs: Sequence[Sequence[Sequence[torch.Tensor]]],
        bounds: Sequence[float],
        *,
        evaluation: bool = False,
    ) -> list[list[torch.Tensor]]:
        if evaluation:
            return constrained_vertex([[r.detach() for r in g] for g in groups], ks, costs, bounds)
        flats = [torch.cat(list(rows)) for rows in groups]
        perturbed = [_perturbed(flat) for flat in flats]
        hard = constrained_vertex(
            [
                list(p.detach().split([len(r) for r in rows]))
                for p, rows in zip(perturbed, groups, strict=True)
            ],
            ks,
            costs,
            bounds,
        )
        out = []
        for rows, k, flat, pert, vertex in zip(groups, ks, flats, perturbed, hard, strict=True):
            p = k * torch.softmax(pert / self.tau, dim=-1)
            out.append(
                list(
                    (torch.cat(vertex) + (p - p.detach()))
                    .to(flat.dtype)
                    .split([len(r) for r in rows])
                )
            )
        return out

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        p = _gumbel_softmax(logits, self.tau)
        one_hot = torch.zeros_like(p).scatter_(-1, p.argmax(dim=-1, keepdim=True), 1.0)
        # p - p.detach() is exactly zero, so the forward value is the exact one-hot, while the
        # backward pass sees the identity on p.
        return (one_hot + (p - p.detach())).to(logits.dtype)

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        if not self.grouped:
            return None
        flat, sizes = torch.cat(list(rows)), [len(r) for r in rows]
        perturbed = _perturbed(flat)
        p = k * torch.softmax(perturbed / self.tau, dim=-1)
        hard = torch.cat(nearest_vertex(list(perturbed.detach().split(sizes)), k))
        return list((hard + (p - p.detach())).to(flat.dtype).split(sizes))

    def eval_group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        if not self.grouped:
            return None
        return nearest_vertex([r.detach() for r in rows], k)


def _concentration(logits: torch.Tensor) -> torch.Tensor:
    """DrNAS's positive map ``elu(x) + 1`` of the logits, in float32 at least.

    Computed as ``x + 1`` above 0 and ``exp(x)`` below (the same function): ``elu``'s
    ``exp(x) - 1`` rounds to -1 below about x = -17 in float32, a concentration of exactly 0.
    The floor keeps it positive where ``exp`` itself underflows.
    """
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    z = z.clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
    below = torch.where(z > 0, torch.zeros_like(z), z)  # exp never sees a large z, nor its gradient
    c = torch.where(z > 0, z + 1.0, torch.exp(below))
    return c.clamp(min=torch.finfo(c.dtype).tiny)


def _positive(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``w`` in ``dtype``, no entry below its smallest normal number: never an exact zero."""
    w = w.to(dtype)
    return w.clamp(min=torch.finfo(dtype).tiny)


def _fill_to_k(shares: torch.Tensor, k: int) -> torch.Tensor:
    """Members' masses ``min(1, t * shares)``, with ``t`` such that they sum to ``k``.

    ``shares`` (positive, summing to 1) says how a group's mass is split among its members;
    scaled to ``k`` units, a member whose share would exceed one unit is capped at 1 and the
    excess goes to the others in proportion to their shares. With at most ``k`` members, each
    gets 1. No host synchronisation: the number of capped members is found with tensor ops.
    """
    n = shares.numel()
    if n <= k:
        return torch.ones_like(shares)
    order = torch.argsort(shares.detach(), descending=True)
    s = shares.detach()[order]
    tail = s.flip(0).cumsum(0).flip(0)  # tail[m]: the shares of all but the m largest
    m = torch.arange(k, device=shares.device)
    # The fewest capped members m for which the largest uncapped one fits: (k - m) s[m] <= tail[m];
    # m = k - 1 always does, as s[k - 1] <= tail[k - 1].
    fits = (k - m) * s[:k] <= tail[:k]
    capped_count = torch.argmax(fits.to(torch.int8))
    capped = torch.zeros(n, dtype=torch.bool, device=shares.device)
    capped[order] = torch.arange(n, device=shares.device) < capped_count
    rest = torch.where(capped, torch.zeros_like(shares), shares)
    return torch.where(capped, torch.ones_like(shares), (k - capped_count) * rest / rest.sum())


class DrNAS(Relaxation):
    """DrNAS (Chen et al., ICLR 2021): mixing weights sampled from a Dirichlet distribution.

    The architecture parameters are Dirichlet concentrations, ``c = elu(logits) + 1`` (positive,
    monotone in the logits). A training step mixes with a reparameterised sample
    ``w ~ Dirichlet(c)`` (``torch.distributions.Dirichlet.rsample``: its pathwise gradient
    reaches the logits), drawn once per choice and step and shared by every cell of a type; the
    evaluation and derivation weights are the distribution's mean ``c / sum(c)``, which ranks
    candidates as the logits do. The regulariser of the paper's objective, the distance of the
    concentrations from an anchor, is here its KL form as in the authors' code: ``kl * sum over
    choices of KL(Dirichlet(c) || Dirichlet(1, ..., 1))``, added to the architecture step's
    loss. Its weight ``kl`` defaults to 0 (no penalty), as the authors' default is the L2 form,
    which is the architecture optimiser's weight decay (nasplug's default, 1e-3, is theirs);
    their KL setting is ``kl=0.001``.

    **By group** (the default on spaces with groups, such as the cell's nodes) one sample is
    drawn from the Dirichlet over all of the group's (member, candidate) pairs, their ``unused``
    candidate left out. By the Dirichlet's aggregation property that is an edge-level sample
    (the members' shares, Dirichlet in the sums of their concentrations) times an independent
    operation-level sample per member: the edge and operation weights that the paper draws for
    a node, from the same concentrations. The shares are then scaled to the group's ``k`` units,
    a member that would exceed one unit capped at 1 and its excess spread over the others in
    proportion to their shares, so the node carries the mass of the derived network (k edges,
    one operation each). Evaluation applies the same map to the mean. Choices outside every
    group are groups of one with k = 1: a plain Dirichlet sample.

    Where this differs from the authors' code: the released code samples per edge only (a
    node's edges carry one unit each; ``grouped=false`` does that), with no edge-level
    parameters, while the paper reports PC-DARTS's edge normalisation in the DARTS space; here
    the edge level is drawn from the same concentrations rather than from parameters of its
    own. The authors derive with ``softmax(logits)`` and validate on fresh samples; here both use
    the Dirichlet mean (the same operation per edge, since both rank candidates by logit, but
    the DARTS cell's choice of a node's edges compares the mean's values). The progressive
    scheme (partial channels widened while candidates are pruned) is not part of a relaxation.

    A Dirichlet sample has no exact zeros (torch clamps its draws to the smallest normal number,
    and so do these weights), so nothing is ever skipped, and ``skip_is_exact`` is false: a
    clamped weight is constant in the logits where an exact zero would be due.

    Args:
        kl: weight of the KL penalty to the uniform Dirichlet in the architecture step; 0: none.
        grouped: sample per group (k units over the members); false: per choice everywhere.
    """

    skip_is_exact = False  # no weight is ever exactly zero, so nothing is skipped

    def __init__(self, kl: float = 0.0, grouped: bool = True) -> None:
        if not 0.0 <= kl < math.inf:
            raise ValueError(
                f"drnas kl must be a finite number >= 0 (the KL penalty's weight; 0: none), got {kl}"
            )
        self.kl = kl
        self.grouped = grouped

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        sample = Dirichlet(_concentration(logits), validate_args=False).rsample()
        return _positive(sample, logits.dtype)

    def eval_weights(self, logits: torch.Tensor) -> torch.Tensor:
        c = _concentration(logits)
        return _positive(c / c.sum(dim=-1, keepdim=True), logits.dtype)

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        if not self.grouped:
            return None
        flat = torch.cat(list(rows))
        sample = Dirichlet(_concentration(flat), validate_args=False).rsample()
        return self._spread(sample, [len(r) for r in rows], k, flat.dtype)

    def eval_group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        if not self.grouped:
            return None
        flat = torch.cat(list(rows))
        c = _concentration(flat)
        return self._spread(c / c.sum(), [len(r) for r in rows], k, flat.dtype)

    @staticmethod
    def _spread(
        point: torch.Tensor, sizes: list[int], k: int, dtype: torch.dtype
    ) -> list[torch.Tensor]:
        """A point of the group's simplex, its members' shares scaled to ``k`` units, capped at 1."""
        parts = point.split(sizes)
        shares = torch.stack([p.sum() for p in parts])
        mass = _fill_to_k(shares, k)
        return [_positive(p * (m / s), dtype) for p, m, s in zip(parts, mass, shares, strict=True)]

    def penalty(self, logits: Mapping[str, torch.Tensor], phase: str) -> torch.Tensor | None:
        if self.kl == 0 or phase != "arch":
            return None
        terms = []
        for row in logits.values():
            c = _concentration(row)
            prior = Dirichlet(torch.ones_like(c), validate_args=False)
            terms.append(kl_divergence(Dirichlet(c, validate_args=False), prior))
        return self.kl * torch.stack(terms).sum() if terms else None
