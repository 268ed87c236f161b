"""The architecture logits of a supernet, and the mixing weights a relaxation makes of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from nasplug.core.interfaces import Constrains, Relaxation
from nasplug.core.types import Choice, Group, LinearConstraint
from nasplug.searchlib.polytope import (
    constrained_vertex,
    constraint_layout,
    group_layout,
    nearest_vertex,
)

__all__ = ["ArchLogits"]


class ArchLogits(nn.Module):
    """One architecture logit per candidate of every choice (DARTS init: 1e-3 * N(0, 1)).

    With ``groups`` (see :class:`~nasplug.core.types.Group`), :meth:`weights` hands a relaxation the
    members of each group at once, without their ``unused`` candidate, which then weighs zero;
    every other choice goes to it as a group of one with k = 1. A relaxation without
    ``group_weights`` weighs every choice on its own. With ``constraints`` (see
    :class:`~nasplug.core.interfaces.Constrains`; any number, a group may be spanned by several), the
    groups that constraints link go to the relaxation's ``constrained_weights`` together, one
    block at a time, with every constraint of the block (see
    :func:`~nasplug.searchlib.polytope.constraint_layout`).
    """

    def __init__(
        self,
        choices: tuple[Choice, ...],
        init_scale: float = 1e-3,
        groups: tuple[Group, ...] = (),
        constraints: tuple[LinearConstraint, ...] = (),
    ) -> None:
        super().__init__()
        self.names = [c.name for c in choices]
        self.logits = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(c.candidates))) for c in choices
        )
        self.groups = tuple(groups)
        self.constraints = tuple(constraints)
        layout = group_layout(choices, self.groups)
        #: Per group (choices outside every group: one each, k = 1): k, the members' positions
        #: in ``names``, the candidates each keeps.
        self._members = [
            (k, [self.names.index(n) for n, _ in members], [keep for _, keep in members])
            for _, k, members in layout
        ]
        #: Per block of groups that constraints link: the constraints' bounds, the positions in
        #: ``_members`` of the groups it spans, and per constraint, per such group and member,
        #: the coefficients of the kept candidates.
        self._coupled = [
            ([c.bound for c in block], positions, costs)
            for block, positions, costs in constraint_layout(choices, layout, self.constraints)
        ]
        #: The coefficients as tensors, per block, device and dtype: made once, not every step.
        self._cost_tensors: dict[tuple[int, str, torch.dtype], list[list[list[torch.Tensor]]]] = {}

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return zip(self.names, self.logits, strict=True)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    def weights(
        self, relaxation: Relaxation, *, evaluation: bool = False
    ) -> dict[str, torch.Tensor]:
        """Mixing weights of every choice, by group where the relaxation knows groups.

        A relaxation without the :class:`~nasplug.core.interfaces.Constrains` capability weighs
        every group as without constraints; :meth:`derivable` still makes the derived genotype
        meet them.
        """
        fn = relaxation.eval_weights if evaluation else relaxation.weights
        group_fn = relaxation.eval_group_weights if evaluation else relaxation.group_weights
        out: dict[str, torch.Tensor] = {}
        coupled: set[int] = set()
        if self._coupled and isinstance(relaxation, Constrains):
            coupled = {g for _, positions, _ in self._coupled for g in positions}
            for block, (bounds, positions, _) in enumerate(self._coupled):
                rows = [self._rows(self._members[g]) for g in positions]
                ws = relaxation.constrained_weights(
                    [kept for _, kept in rows],
                    [self._members[g][0] for g in positions],
                    self._costs(block, rows),
                    bounds,
                    evaluation=evaluation,
                )
                for g, (index, _), coupled_ws in zip(positions, rows, ws, strict=True):
                    self._put(out, g, index, coupled_ws)
        for g, member in enumerate(self._members):
            if g in coupled:
                continue
            index, kept = self._rows(member)
            group_ws = group_fn(kept, member[0])
            if group_ws is None:
                break  # a group-unaware relaxation: every choice on its own
            self._put(out, g, index, group_ws)
        return {name: out[name] if name in out else fn(row) for name, row in self.items()}

    @torch.no_grad()
    def eval_weights(self, relaxation: Relaxation) -> dict[str, torch.Tensor]:
        """The deterministic weights for validation and derivation, detached."""
        return {k: w.detach() for k, w in self.weights(relaxation, evaluation=True).items()}

    @torch.no_grad()
    def derivable(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the derive rule reads so that the genotype meets the constraints: ``weights``
        as they are, except for the blocks of groups whose constraints the DARTS rule's vertex
        of the weights breaks; those get the vertex maximising ``<weights, x>`` under all of
        the block's constraints.

        Without constraints, or where none binds, this is ``weights`` itself.
        """
        out = dict(weights)
        for block, (bounds, positions, _) in enumerate(self._coupled):
            rows = [self._rows(self._members[g], weights) for g in positions]
            kept = [r for _, r in rows]
            ks = [self._members[g][0] for g in positions]
            tensors = self._costs(block, rows)
            plain = [nearest_vertex(r, k) for r, k in zip(kept, ks, strict=True)]
            if all(
                sum(
                    float((v * c).sum())
                    for vs, cs in zip(plain, costs, strict=True)
                    for v, c in zip(vs, cs, strict=True)
                )
                <= bound
                for costs, bound in zip(tensors, bounds, strict=True)
            ):
                continue
            for g, (index, _), ws in zip(
                positions, rows, constrained_vertex(kept, ks, tensors, bounds), strict=True
            ):
                self._put(out, g, index, ws, weights)
        return out

    def _rows(
        self,
        member: tuple[int, list[int], list[list[int]]],
        weights: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[list[torch.Tensor | None], list[torch.Tensor]]:
        """A group's rows without their unused candidate, and the index that picked them."""
        _, positions, kept = member
        full = [self.logits[p] if weights is None else weights[self.names[p]] for p in positions]
        index = [
            None if len(keep) == len(row) else torch.tensor(keep, device=row.device)
            for row, keep in zip(full, kept, strict=True)
        ]
        return index, [row if i is None else row[i] for row, i in zip(full, index, strict=True)]

    def _costs(
        self, block: int, rows: list[tuple[list, list[torch.Tensor]]]
    ) -> list[list[list[torch.Tensor]]]:
        """Per constraint of a block, its coefficients shaped as the block's ``rows``."""
        like = rows[0][1][0]
        key = (block, str(like.device), like.dtype)
        if key not in self._cost_tensors:
            self._cost_tensors[key] = [
                [
                    [torch.tensor(c, dtype=like.dtype, device=like.device) for c in member_costs]
                    for member_costs in group_costs
                ]
                for group_costs in self._coupled[block][2]
            ]
        return self._cost_tensors[key]

    def _put(
        self,
        out: dict[str, torch.Tensor],
        g: int,
        index: list[torch.Tensor | None],
        ws: list[torch.Tensor],
        like: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        for p, i, w in zip(self._members[g][1], index, ws, strict=True):
            row = self.logits[p] if like is None else like[self.names[p]]
            out[self.names[p]] = w if i is None else w.new_zeros(row.shape).index_copy(0, i, w)
