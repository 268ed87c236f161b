"""DrNAS's Dirichlet relaxation."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch.distributions import Dirichlet
from torch.distributions.kl import kl_divergence

from nasplug.core.interfaces import Relaxation

from ._common import LOGIT_BOUND

__all__ = ["DrNAS"]


def _concentration(logits: torch.Tensor) -> torch.Tensor:
    """DrNAS's positive map ``elu(x) + 1`` of the logits, in float32 at least.

    Computed as ``x + 1`` above 0 and ``exp(x)`` below (the same function): ``elu``'s
    ``exp(x) - 1`` rounds to -1 below about x = -17 in float32, a concentration of exactly 0.
    The floor keeps it positive where ``exp`` itself underflows.
    """
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    z = z.clamp(-LOGIT_BOUND, LOGIT_BOUND)
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
