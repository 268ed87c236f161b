"""The sparse relaxations: sparsemax (by group, with a cap on parameter-free candidates),
entmax 1.5 and alpha-entmax, all of tempered logits and with exact zeros."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from entmax import entmax15, entmax_bisect, sparsemax

from nasplug.searchlib.polytope import (
    constrained_projection,
    constrained_vertex,
    group_projection,
    nearest_vertex,
)

from ._common import CellCap, Schedule, Tempered

__all__ = ["Entmax", "Entmax15", "Sparsemax"]


class Sparsemax(CellCap, Tempered):
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
