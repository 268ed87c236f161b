"""The architecture logits of a supernet, and the mixing weights a relaxation makes of them."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from nasplug.interfaces import Relaxation
from nasplug.polytope import group_layout
from nasplug.types import Choice, Group

__all__ = ["ArchLogits"]


class ArchLogits(nn.Module):
    """One architecture logit per candidate of every choice (DARTS init: 1e-3 * N(0, 1)).

    With ``groups`` (see :class:`~nasplug.types.Group`), :meth:`weights` hands a relaxation the
    members of each group at once, without their ``unused`` candidate, which then weighs zero;
    every other choice goes to it as a group of one with k = 1. A relaxation without
    ``group_weights`` weighs every choice on its own.
    """

    def __init__(
        self, choices: tuple[Choice, ...], init_scale: float = 1e-3, groups: tuple[Group, ...] = ()
    ) -> None:
        super().__init__()
        self.names = [c.name for c in choices]
        self.logits = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(c.candidates))) for c in choices
        )
        self.groups = tuple(groups)
        #: Per group (choices outside every group: one each, k = 1): k, the members' positions
        #: in ``names``, the candidates each keeps.
        self._members = [
            (k, [self.names.index(n) for n, _ in members], [keep for _, keep in members])
            for _, k, members in group_layout(choices, self.groups)
        ]

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return zip(self.names, self.logits, strict=True)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    def weights(
        self, relaxation: Relaxation, *, evaluation: bool = False
    ) -> dict[str, torch.Tensor]:
        """Mixing weights of every choice, by group where the relaxation knows groups."""
        fn = relaxation.eval_weights if evaluation else relaxation.weights
        group_fn = relaxation.eval_group_weights if evaluation else relaxation.group_weights
        out: dict[str, torch.Tensor] = {}
        for k, positions, kept in self._members:
            logits = [self.logits[p] for p in positions]
            index = [
                None if len(keep) == len(row) else torch.tensor(keep, device=row.device)
                for row, keep in zip(logits, kept, strict=True)
            ]
            ws = group_fn(
                [row if i is None else row[i] for row, i in zip(logits, index, strict=True)], k
            )
            if ws is None:
                break  # a group-unaware relaxation: every choice on its own
            for p, row, i, w in zip(positions, logits, index, ws, strict=True):
                out[self.names[p]] = w if i is None else w.new_zeros(row.shape).index_copy(0, i, w)
        return {name: out[name] if name in out else fn(row) for name, row in self.items()}

    @torch.no_grad()
    def eval_weights(self, relaxation: Relaxation) -> dict[str, torch.Tensor]:
        """The deterministic weights for validation and derivation, detached."""
        return {k: w.detach() for k, w in self.weights(relaxation, evaluation=True).items()}
