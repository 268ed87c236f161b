"""The Gumbel relaxations: SNAS's soft sample and GDAS's straight-through one-hot sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasplug.searchlib.polytope import constrained_vertex, nearest_vertex

from ._common import LOGIT_BOUND, CellCap, Tempered

__all__ = ["Gumbel", "GumbelHard"]

# Keeps the Gumbel noise finite: -log(-log(u)) is infinite at u = 0 and u = 1.
_UNIFORM_EPS = 1e-6


def _perturbed(logits: torch.Tensor) -> torch.Tensor:
    """``logits + g`` with Gumbel noise ``g``, in float32 at least."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    z = z.clamp(-LOGIT_BOUND, LOGIT_BOUND)
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


class GumbelHard(CellCap, Gumbel):
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

    With ``cap = M`` (on spaces that declare parameter-free candidates, as for sparsemax's
    cap), a cell's sampled path is the best genotype for the perturbed logits with at most
    ``M`` parameter-free ops (:func:`nasplug.searchlib.polytope.constrained_vertex`), and so
    is the evaluation path. The default matches sparsemax's, ``cap=2``: in ``nb201``
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
