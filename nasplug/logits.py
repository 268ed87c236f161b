"""The architecture logits of a supernet, and the mixing weights a relaxation makes of them."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from nasplug.interfaces import Relaxation
from nasplug.types import Choice, Group

__all__ = ["ArchLogits"]


class ArchLogits(nn.Module):
    """One architecture logit per candidate of every choice (DARTS init: 1e-3 * N(0, 1)).

    With ``groups`` (see :class:`~nasplug.types.Group`), :meth:`weights` hands a relaxation the
    members of each group at once, without their ``unused`` candidate, which then weighs zero;
    every other choice goes to it as a group of one with k = 1. A relaxation without
    ``group_weights`` weighs every choice on its own.
    """

    def __init__(self, choices: tuple[Choice, ...], init_scale: float = 1e-3,
                 groups: tuple[Group, ...] = ()) -> None:
        super().__init__()
        self.names = [c.name for c in choices]
        self.logits = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(c.candidates))) for c in choices)
        self.groups = tuple(groups)
        by_name = {c.name: c for c in choices}
        seen: set[str] = set()
        #: Per group: (k, the members' positions in ``names``, the candidates each keeps).
        self._members: list[tuple[int, list[int], list[list[int]]]] = []
        for g in self.groups:
            missing = [n for n in g.choices if n not in by_name]
            if missing:
                raise ValueError(f"group {g.name!r} names unknown choice {missing[0]!r}")
            if seen & set(g.choices):
                raise ValueError(f"choice {sorted(seen & set(g.choices))[0]!r} is in two groups")
            seen |= set(g.choices)
            kept = [[i for i, cand in enumerate(by_name[n].candidates) if cand != g.unused]
                    for n in g.choices]
            if not all(kept):
                raise ValueError(f"a choice of group {g.name!r} has no candidate but "
                                 f"{g.unused!r}")
            self._members.append((g.k, [self.names.index(n) for n in g.choices], kept))
        # A choice outside every group is a group of its own with k = 1 (sparsemax is the
        # projection onto that group's polytope, the argmax its vertex).
        self._members += [(1, [p], [list(range(len(by_name[n].candidates)))])
                          for p, n in enumerate(self.names) if n not in seen]

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return zip(self.names, self.logits)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    def weights(self, relaxation: Relaxation, *, evaluation: bool = False) -> dict[str, torch.Tensor]:
        """Mixing weights of every choice, by group where the relaxation knows groups."""
        fn = relaxation.eval_weights if evaluation else relaxation.weights
        group_fn = relaxation.eval_group_weights if evaluation else relaxation.group_weights
        out: dict[str, torch.Tensor] = {}
        for k, positions, kept in self._members:
            logits = [self.logits[p] for p in positions]
            index = [None if len(keep) == len(l) else torch.tensor(keep, device=l.device)
                     for l, keep in zip(logits, kept)]
            ws = group_fn([l if i is None else l[i] for l, i in zip(logits, index)], k)
            if ws is None:
                break  # a group-unaware relaxation: every choice on its own
            for p, l, i, w in zip(positions, logits, index, ws):
                out[self.names[p]] = w if i is None else w.new_zeros(l.shape).index_copy(0, i, w)
        return {name: out[name] if name in out else fn(l) for name, l in self.items()}

    @torch.no_grad()
    def eval_weights(self, relaxation: Relaxation) -> dict[str, torch.Tensor]:
        """The deterministic weights for validation and derivation, detached."""
        return {k: w.detach() for k, w in self.weights(relaxation, evaluation=True).items()}
