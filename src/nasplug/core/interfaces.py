"""The four plugin axes: one abstract class each, their optional capabilities, and the context
a strategy receives.

A plugin is a class registered under an entry-point group; its constructor takes explicit
keyword arguments with defaults, which are the ``--space-opt`` / ``--relax-opt`` /
``--strategy-opt`` / ``--data-opt`` options of the CLI.

An abstract method is what every plugin of an axis implements. A capability that only some
plugins have is a ``typing.Protocol`` of this module (``DeclaresGroups``, ``Progressive``,
``OffersBenchmark``, ...): callers check it with ``isinstance`` or take it as a parameter's type.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from nasplug.core._discovery import name_of
from nasplug.core.groups import group_layout, nearest_vertex
from nasplug.core.protocols import RunView, TrainerView
from nasplug.core.types import Choice, Data, Genotype, Group, LinearConstraint, SearchResult, Task

__all__ = [
    "BenchmarkTable",
    "Constrains",
    "Dataset",
    "DeclaresGroups",
    "DeclaresParameterFree",
    "DropsCandidates",
    "OffersBenchmark",
    "ParsesGenotype",
    "Progressive",
    "Relaxation",
    "ReplacesCandidates",
    "ReportsCosts",
    "RunView",
    "ScoresCandidates",
    "SearchContext",
    "SearchSpace",
    "SearchesTable",
    "Stateful",
    "Strategy",
    "Suggest",
    "TrainerView",
    "Weights",
    "groups_of",
    "restricted_candidates",
]

#: Mixing weights of every choice: ``{choice.name: tensor of len(choice.candidates)}``.
Weights = Mapping[str, torch.Tensor]
#: ``suggest(name, options) -> option``: how a sampler picks one discrete decision.
#: Random search passes a seeded ``random.choice``; TPE passes ``trial.suggest_categorical``.
Suggest = Callable[[str, Sequence[Any]], Any]


class SearchSpace(ABC):
    """A family of architectures, as a weight-sharing supernet and as discrete networks.

    Required (abstract): :meth:`choices`, :meth:`supernet`, :meth:`build`.

    Provided, and relied on by every strategy: :meth:`derive` (the discretisation rule),
    :meth:`sample` (a genotype for black-box strategies), :meth:`one_hot` (a genotype's
    mixing weights) and :meth:`describe`. Their defaults read and write genotypes of the shape
    ``{"choices": {choice name: candidate}}``; a space with another shape overrides all four.

    Optional capabilities, each a Protocol of this module. The class keeps a default of each
    so that spaces written before they were Protocols keep working; a space that has the
    capability overrides the default, and callers depend on the Protocol, not on this class:

    - :class:`DeclaresGroups`: :meth:`groups` (default: none).
    - :class:`Progressive`: :meth:`restrict` (default: raises NotImplementedError) and
      :meth:`with_depth` (default: the space itself), for progressive search (``pdarts``).
    - :class:`ReplacesCandidates`: :meth:`on_epoch_end` (default: nothing replaced).
    - :class:`Stateful`: :meth:`state_dict` / :meth:`load_state_dict` (default: no state).
    - :class:`ScoresCandidates`: :meth:`candidates` / :meth:`score_candidates` (default: none).

    Capabilities without a default here: :class:`OffersBenchmark`, :class:`ParsesGenotype`,
    :class:`DeclaresParameterFree`, :class:`ReportsCosts`.

    Order of calls in a supernet search: ``choices()``, ``groups()`` and ``supernet(task)``
    when it starts; the supernet's ``forward(x, weights)`` every step, with ``weights`` holding
    a tensor per choice (exact zeros mean "not used": the supernet must not compute those
    candidates); ``on_epoch_end(supernet, weights)`` after every epoch; ``derive(weights)``
    to discretise, ``one_hot(genotype)`` to score the derived network inside the supernet,
    ``score_candidates(weights, score)`` once at the end; ``build(genotype, task)`` for the
    discrete network. ``state_dict`` goes into every checkpoint of the search.
    """

    #: Constructor options that make a tiny instance for tests (see
    #: :func:`nasplug.testing.tiny_instance`); empty: the defaults.
    test_options: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def choices(self) -> tuple[Choice, ...]:
        """The supernet's mixing points.

        Returns:
            Every choice, in an order that does not change between calls (unless the space
            replaces candidates, see :class:`ReplacesCandidates`).
        """

    def groups(self) -> tuple[Group, ...]:
        """Sets of choices of which exactly ``k`` are used (the :class:`DeclaresGroups` capability).

        A space whose derive rule keeps ``k`` of several choices declares them here, so that a
        structure-aware relaxation can give the group exactly the mass the derived network has.

        Returns:
            The groups (see :class:`~nasplug.core.types.Group`); every choice belongs to at
            most one. Default: none.
        """
        return ()

    @abstractmethod
    def supernet(self, task: Task) -> nn.Module:
        """The weight-sharing network of every architecture of the space.

        Args:
            task: the data's task (input shape, outputs).

        Returns:
            A module whose ``forward(x, weights: Weights)`` returns the task's outputs and
            computes no candidate of zero weight.
        """

    @abstractmethod
    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        """The discrete network of one architecture.

        Args:
            genotype: a genotype of this space (from :meth:`derive` or :meth:`sample`).
            task: the data's task.

        Returns:
            A plain ``nn.Module`` with ``forward(x)``.

        Raises:
            ValueError: for a genotype this space cannot build.
        """

    def derive(self, weights: Weights) -> Genotype:
        """The discretisation rule: the genotype that mixing weights stand for.

        Default: the strongest candidate of every choice outside the groups; in each
        :class:`~nasplug.core.types.Group`, the ``k`` members whose strongest candidate other
        than ``unused`` weighs most, each with that candidate, and ``unused`` for the others
        (ties go to the earlier candidate, then the earlier member). Where ``unused`` sits among
        a choice's candidates does not matter. Where the weights are a vertex (each group
        ``k`` members one-hot, the rest zero), the genotype must be exactly that network.

        Args:
            weights: mixing weights of every choice.

        Returns:
            A genotype of the shape ``{"choices": {choice name: candidate}}`` carrying the
            space's registered name (see :func:`nasplug.core.registry.name_of`).
        """
        choices = self.choices()
        candidates = {c.name: c.candidates for c in choices}
        unused = _unused_of(self.groups())
        chosen: dict[str, str] = {}
        for _, k, members in group_layout(choices, self.groups()):
            rows = [weights[name].detach().float().cpu()[keep] for name, keep in members]
            for (name, keep), w in zip(members, nearest_vertex(rows, k), strict=True):
                hot = w.nonzero().flatten().tolist()
                chosen[name] = candidates[name][keep[hot[0]]] if hot else unused[name]
        return Genotype(name_of(self), {"choices": {c.name: chosen[c.name] for c in choices}})

    def sample(self, suggest: Suggest) -> Genotype:
        """A valid genotype, each decision taken by ``suggest``.

        Default: per choice, ``suggest(choice.name, candidates)``; per group, first
        ``suggest(f"{group.name}:members", options)`` among the ways to pick ``k`` of its
        members (options such as ``"0,2"``: positions in ``group.choices``), then a candidate
        other than ``unused`` for each picked member; the others get ``unused``.

        Args:
            suggest: answers one decision, ``suggest(name, options) -> option``; decision
                names are unique within one draw.

        Returns:
            A genotype of :meth:`derive`'s shape, carrying the space's registered name.
        """
        choices, groups = self.choices(), self.groups()
        group_layout(choices, groups)  # a group naming an unknown or shared choice: one line
        group_of = {member: g for g in groups for member in g.choices}
        picked: dict[str, bool] = {}  # per group member, once its group is decided: used?
        chosen: dict[str, Any] = {}
        for c in choices:
            group = group_of.get(c.name)
            if group is None:
                chosen[c.name] = suggest(c.name, list(c.candidates))
                continue
            if c.name not in picked:
                options = [
                    ",".join(map(str, combo))
                    for combo in itertools.combinations(range(len(group.choices)), group.k)
                ]
                answer = str(suggest(f"{group.name}:members", options))
                used = {group.choices[int(i)] for i in answer.split(",")}
                picked.update({m: m in used for m in group.choices})
            if picked[c.name]:
                usable = [cand for cand in c.candidates if cand != group.unused]
                chosen[c.name] = suggest(c.name, usable)
            else:
                chosen[c.name] = group.unused
        return Genotype(name_of(self), {"choices": chosen})

    def one_hot(self, genotype: Genotype) -> dict[str, torch.Tensor]:
        """Mixing weights that select ``genotype`` inside the supernet (for the discretisation gap).

        Default, for :meth:`derive`'s shape: 1.0 on the chosen candidate of each choice; a
        group member that names the group's ``unused`` gets all zeros (the vertex the
        group-aware relaxations reach: ``unused`` carries no mass).

        Args:
            genotype: a genotype of this space.

        Returns:
            A tensor per choice name, over its candidates, on the CPU.

        Raises:
            ValueError: for a genotype of another shape, a name that is not a candidate, or a
                group that does not use exactly ``k`` members.
        """
        chosen = genotype.spec.get("choices")
        if not isinstance(chosen, Mapping):
            raise ValueError(
                f"the default one_hot reads genotypes of the shape {{'choices': {{...}}}}; "
                f"got {sorted(genotype.spec)}"
            )
        unused = _unused_of(self.groups())
        out = {}
        for c in self.choices():
            name = chosen.get(c.name)
            if c.name in unused and name == unused[c.name]:
                out[c.name] = torch.zeros(len(c.candidates))
            elif name in c.candidates:
                out[c.name] = torch.tensor([float(k == name) for k in c.candidates])
            else:
                named = "no candidate" if name is None else repr(name)
                raise ValueError(
                    f"the genotype names {named} for choice {c.name!r}; candidates: "
                    f"{', '.join(c.candidates)}"
                )
        for g in self.groups():
            used = sum(bool(out[m].any()) for m in g.choices)
            if used != g.k:
                raise ValueError(
                    f"the genotype uses {used} choices of group {g.name!r}; it uses exactly "
                    f"k={g.k}, the others {g.unused!r}"
                )
        return out

    def restrict(self, keep: Mapping[str, Sequence[str]]) -> SearchSpace:
        """A copy whose choices keep only the named candidates (the :class:`Progressive` capability).

        Args:
            keep: per choice name, the candidates it keeps; choices not named keep all.
                :func:`restricted_candidates` computes the result, with its errors.

        Returns:
            A new space of the same kind; this one is unchanged.

        Raises:
            NotImplementedError: by default: the space has no progressive capability.
            ValueError: for an unknown choice or candidate, or a choice left with none.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support restricting candidates")

    def with_depth(self, depth: int) -> SearchSpace:
        """A copy with ``depth`` repeated units (the :class:`Progressive` capability).

        Args:
            depth: how many cells or layers the supernet and built networks repeat.

        Returns:
            A new space; by default (a space without depth) this one.
        """
        return self

    def on_epoch_end(self, supernet: nn.Module, weights: Weights) -> Mapping[str, Sequence[str]]:
        """Replace candidates after a search epoch (the :class:`ReplacesCandidates` capability).

        The strategy then gives the replaced candidates a fresh start: their logits reset to
        the choice's mean, their optimiser state cleared.

        Args:
            supernet: the module :meth:`supernet` returned, as trained so far.
            weights: the epoch's evaluation weights.

        Returns:
            Per choice name, the candidates that were replaced; default: none.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the space changed during a search, for checkpoints (the :class:`Stateful` capability).

        Returns:
            Plain data and tensors; default: empty.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, when a killed search resumes.

        Args:
            state: a :meth:`state_dict` of a space made with the same options.
        """

    def candidates(self, weights: Weights) -> list[dict[str, Any]]:
        """Records of the candidates a search evaluated (the :class:`ScoresCandidates` capability).

        Args:
            weights: the final evaluation weights.

        Returns:
            JSON records (properties, final weight) for ``nasplug show``; default: none.
        """
        return []

    def score_candidates(
        self, weights: Weights, score: Callable[[Weights], float]
    ) -> list[dict[str, Any]]:
        """:meth:`candidates`, with a metric per candidate where the space can score them.

        Called once at the end of a supernet search.

        Args:
            weights: the final evaluation weights.
            score: evaluates the trained supernet with the given mixing weights on the
                architecture half and returns the task's metric.

        Returns:
            JSON records; default: :meth:`candidates` unscored.
        """
        return self.candidates(weights)

    def describe(self, genotype: Genotype) -> str:
        """A short human-readable rendering of a genotype, for ``nasplug show``.

        Args:
            genotype: a genotype of this space.

        Returns:
            One line (or a few); default: the genotype's own text.
        """
        return str(genotype)


@runtime_checkable
class DeclaresGroups(Protocol):
    """A space capability: sets of choices of which exactly ``k`` are used.

    ``groups()`` names, for a derive rule that keeps ``k`` of several choices (the DARTS cell:
    2 incoming edges per node), those choices as a :class:`~nasplug.core.types.Group`. A
    group-aware relaxation then gives the group exactly ``k`` units of mass; the defaults of
    :meth:`SearchSpace.derive`, :meth:`SearchSpace.sample` and :meth:`SearchSpace.one_hot`
    honour groups. Read a space's groups with :func:`groups_of`.
    """

    def groups(self) -> tuple[Group, ...]:
        """The groups.

        Returns:
            Each group once; every choice in at most one.
        """
        ...


@runtime_checkable
class Progressive(Protocol):
    """A space capability: progressive search, which narrows candidates and deepens the network.

    ``pdarts`` trains a deeper supernet per stage (``with_depth``) over fewer candidates
    (``restrict`` between stages). Both return a new space and leave this one as it was.
    """

    def restrict(self, keep: Mapping[str, Sequence[str]]) -> SearchSpace:
        """A copy whose choices keep only the named candidates.

        Args:
            keep: per choice name, the candidates it keeps, in any order; choices not named
                keep all (:func:`restricted_candidates` computes this).

        Returns:
            The restricted space, its choices' candidates in their original order.

        Raises:
            ValueError: for an unknown choice or candidate, or a choice left with none.
        """
        ...

    def with_depth(self, depth: int) -> SearchSpace:
        """A copy with ``depth`` repeated units (cells, layers).

        Args:
            depth: how many units; at least 1.

        Returns:
            The deeper or shallower space (a space without depth: itself).

        Raises:
            ValueError: for a depth the space cannot have.
        """
        ...


@runtime_checkable
class ReplacesCandidates(Protocol):
    """A space capability: candidates that change during a search.

    A space whose candidates evolve (the ``dense`` space's widths) replaces them after an epoch
    and says which; :func:`nasplug.searchlib.supernet.search_supernet` calls it after every
    epoch and restarts the replaced candidates' logits from their choice's mean. Such a space
    is usually :class:`Stateful` too, so that a resumed search has the same candidates.
    """

    def on_epoch_end(self, supernet: nn.Module, weights: Weights) -> Mapping[str, Sequence[str]]:
        """Act on the epoch's weights.

        Args:
            supernet: the space's supernet, as trained so far; the space may change its
                candidates' modules in place.
            weights: the epoch's evaluation weights.

        Returns:
            Per choice name, the candidates that were replaced (empty: none).
        """
        ...


@runtime_checkable
class Stateful(Protocol):
    """A capability: state that changes during a search and goes into its checkpoints.

    The trainer checkpoints every object of a phase's state by ``state_dict`` and restores it
    with ``load_state_dict`` when a killed run resumes (see
    :meth:`~nasplug.core.protocols.TrainerView.epochs`).
    """

    def state_dict(self) -> dict[str, Any]:
        """The state.

        Returns:
            Plain data and tensors, loadable with ``torch.load(weights_only=True)``.
        """
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state.

        Args:
            state: what :meth:`state_dict` returned, in an object made with the same options.
        """
        ...


@runtime_checkable
class ScoresCandidates(Protocol):
    """A space capability: records of the candidates a search weighed, for ``nasplug show``.

    A space whose candidates have measurable structure (widths, depths) lists them with their
    final weight; ``nasplug show`` prints each numeric column's rank correlation with the
    ``metric`` column.
    """

    def candidates(self, weights: Weights) -> list[dict[str, Any]]:
        """The records.

        Args:
            weights: the search's final evaluation weights.

        Returns:
            JSON records.
        """
        ...

    def score_candidates(
        self, weights: Weights, score: Callable[[Weights], float]
    ) -> list[dict[str, Any]]:
        """The records, with a ``metric`` per candidate where the space can score them.

        Args:
            weights: the search's final evaluation weights.
            score: the task's metric of the trained supernet with the given mixing weights,
                on the architecture half.

        Returns:
            JSON records.
        """
        ...


@runtime_checkable
class DropsCandidates(Protocol):
    """A supernet capability: dropping out candidates' outputs while training.

    ``candidate_dropout`` maps a candidate's name to the rate at which its output is zeroed in
    training forward passes (never in evaluation); ``pdarts`` sets it before every epoch to
    keep parameter-free skips from winning because they train fastest.
    """

    candidate_dropout: dict[str, float]


def groups_of(space: SearchSpace) -> tuple[Group, ...]:
    """The groups of ``space``: those it declares (:class:`DeclaresGroups`), none otherwise.

    Args:
        space: any space.

    Returns:
        Its groups.
    """
    return space.groups() if isinstance(space, DeclaresGroups) else ()


@runtime_checkable
class BenchmarkTable(Protocol):
    """Ground truth for a space: a metric of every genotype, answered without training.

    ``label`` says what the number is and where it comes from, as a report shows it (for
    example "CIFAR-10 accuracy (%) in the analog-nasbench table, its own training recipe");
    ``metric`` is the key under which runs record it (``table_accuracy``). ``query`` must cost
    nothing measurable beside a training step: strategies call it hundreds of times a second.
    """

    label: str
    metric: str

    def query(self, genotype: Genotype) -> float:
        """The table's value of one genotype.

        Args:
            genotype: a genotype of the table's space.

        Returns:
            The value.

        Raises:
            ValueError: for a genotype of another space or one the table does not hold.
        """
        ...

    def best(self) -> float:
        """The best value over every genotype of the table, for regret and for plots.

        Returns:
            The value.
        """
        ...


@runtime_checkable
class OffersBenchmark(Protocol):
    """A space capability: a :class:`BenchmarkTable` of its genotypes.

    Black-box strategies evaluate with it (``method=table``), and every run on such a space
    records the derived genotype's value in its metrics.
    """

    def benchmark(self) -> BenchmarkTable:
        """The table, loaded once and cached.

        Returns:
            The table.

        Raises:
            nasplug.core.options.OptionError: when the table cannot be had (an optional package
                not installed, a damaged file), with one line saying how to get it.
        """
        ...


@runtime_checkable
class ParsesGenotype(Protocol):
    """A space capability: reading genotypes written in the space's own published notation.

    The inverse of :meth:`SearchSpace.describe` for spaces whose literature has a notation of
    its own (NAS-Bench-201's arch strings). ``nasplug train FILE --space NAME`` uses it for a
    file that holds neither JSON nor a DARTS ``Genotype(...)`` string.
    """

    def parse_genotype(self, text: str) -> Genotype:
        """Read one genotype.

        Args:
            text: the genotype in the space's notation.

        Returns:
            The genotype, carrying the space's registered name.

        Raises:
            ValueError: in one line naming what is wrong, for text it cannot read.
        """
        ...


@runtime_checkable
class DeclaresParameterFree(Protocol):
    """A space capability: which candidates hold no parameters, per cell.

    Relaxations with a ``cap`` turn it into one :class:`~nasplug.core.types.LinearConstraint`
    per cell with :func:`nasplug.searchlib.polytope.cap_constraints`.
    """

    def parameter_free(self) -> Mapping[str, Sequence[tuple[str, str]]]:
        """The parameter-free entries of each cell.

        A cell is a set of groups whose mass a relaxation's cap counts together (the DARTS
        space's ``normal`` and ``reduce`` cells). An entry is parameter-free when its op has no
        trainable parameters where it sits, as the space builds it (not guessed from names).

        Returns:
            Per cell name, its (choice, candidate) entries without parameters; a group's
            ``unused`` candidate left out.
        """
        ...


@runtime_checkable
class ReportsCosts(Protocol):
    """A space capability: where each candidate sits in the network, to cost it.

    :func:`nasplug.searchlib.costs.candidate_costs` counts or times the modules; the rest of
    the network (stem, preprocessing, head) is found from whole networks, so that for params
    and FLOPs a genotype's cost equals its built network's exactly, provided the network is the
    sum of its parts: what one choice builds must not depend on another choice. 4-D inputs are
    timed in ``torch.channels_last`` memory format, the one nasplug's image spaces run in.
    """

    def cost_sites(
        self, task: Task
    ) -> Mapping[tuple[str, str], Sequence[tuple[nn.Module, tuple[int, ...]]]]:
        """The op modules each candidate puts into ``build(genotype, task)``.

        Args:
            task: the data's task.

        Returns:
            Per (choice, candidate), one ``(module, input shape)`` per place the network uses
            it (every cell of a type), each module built as ``build`` builds it, the shape's
            batch dimension 1. A candidate that puts nothing in the network (a cell's ``none``)
            is left out.
        """
        ...


@runtime_checkable
class Constrains(Protocol):
    """A relaxation capability: linear constraints across groups, met by the weights.

    A group may be spanned by several constraints, and constraints sharing a group link the
    groups they span into one block (see :func:`nasplug.searchlib.polytope.constraint_layout`).
    Every block is then weighed at once, through ``constrained_weights`` instead of
    ``group_weights``.
    """

    def constraints(self, space: SearchSpace) -> tuple[LinearConstraint, ...]:
        """The constraints on ``space``'s weights, asked once when a supernet search starts.

        Args:
            space: the space searched; a relaxation typically builds its constraints from a
                space capability such as :class:`DeclaresParameterFree`.

        Returns:
            The constraints; empty: none. A search may add others (resource budgets).

        Raises:
            ValueError: when the space lacks what the constraints need, or no genotype meets
                them.
        """
        ...

    def constrained_weights(
        self,
        groups: Sequence[Sequence[torch.Tensor]],
        ks: Sequence[int],
        costs: Sequence[Sequence[Sequence[torch.Tensor]]],
        bounds: Sequence[float],
        *,
        evaluation: bool = False,
    ) -> list[list[torch.Tensor]]:
        """The weights of one block of groups, under its constraints.

        Args:
            groups: per group, its members' logits (``unused`` left out, as for
                :meth:`Relaxation.group_weights`).
            ks: per group, its mass ``k``.
            costs: per constraint of the block, its coefficients shaped as ``groups`` (0.0
                where it names nothing).
            bounds: per constraint, its bound.
            evaluation: the deterministic weights (validation, derivation).

        Returns:
            Weights shaped as ``groups`` that meet ``sum(costs[i] * weights) <= bounds[i]``
            for every ``i``.
        """
        ...


def restricted_candidates(
    candidates: Mapping[str, tuple[str, ...]],
    keep: Mapping[str, Sequence[str] | str],
    unknown: str,
) -> dict[str, tuple[str, ...]]:
    """What :meth:`Progressive.restrict` computes: candidates reduced to those kept.

    Args:
        candidates: choice name -> its candidates.
        keep: choice name -> the candidates it keeps (one name or several).
        unknown: the end of the message for an unknown choice, saying what the choices are.

    Returns:
        ``candidates`` with the choices named in ``keep`` reduced to the candidates kept, in
        their order.

    Raises:
        ValueError: in one line, for a choice not in ``candidates``, a candidate the choice
            does not have, or a choice left with none.
    """
    out = dict(candidates)
    for name, ops in keep.items():
        wanted = [ops] if isinstance(ops, str) else list(ops)
        if name not in out:
            raise ValueError(f"unknown choice {name!r}; {unknown}")
        extra = [op for op in wanted if op not in out[name]]
        if extra:
            raise ValueError(
                f"op {extra[0]!r} is not a candidate of {name!r}; candidates: "
                f"{', '.join(out[name])}"
            )
        if not wanted:
            raise ValueError(f"restricting {name!r} to no ops; keep at least one")
        out[name] = tuple(op for op in out[name] if op in wanted)
    return out


class Relaxation(ABC):
    """Maps architecture logits to mixing weights.

    Required (abstract): :meth:`weights`. Every other hook has a default that a relaxation
    overrides when it needs it.

    Order of calls: ``on_epoch(epoch, epochs)`` before each search epoch, ``on_step(step,
    steps)`` and ``frozen()`` before each step, then ``weights(logits)`` once per choice per
    step (one sample is shared by every cell of a type); ``penalty(logits, phase)`` is added to
    the loss of the architecture (``"arch"``) or weight (``"weight"``) step;
    ``eval_weights(logits)`` gives the deterministic weights used for validation and
    derivation. ``state_dict`` goes into every checkpoint of the search.

    On a space with :class:`~nasplug.core.types.Group` s, ``group_weights(rows, k)`` (and
    ``eval_group_weights``) is asked first for the members of each group at once; a relaxation
    that returns None there (the default) is group-unaware and weighs every choice on its own.
    A relaxation with the :class:`Constrains` capability weighs the groups of each of its
    constraints together instead.

    Attributes:
        skip_is_exact: whether not computing zero-weight candidates leaves every gradient
            unchanged (true for softmax, sparsemax, entmax; straight-through samples define
            their own estimator).
    """

    skip_is_exact: ClassVar[bool] = True

    #: Constructor options that make a tiny instance for tests (see
    #: :func:`nasplug.testing.tiny_instance`); empty: the defaults.
    test_options: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Training-time mixing weights of one choice.

        Args:
            logits: the choice's logits, one per candidate (the last dimension).

        Returns:
            Weights of the same shape; exact zeros mean "not computed".
        """

    def eval_weights(self, logits: torch.Tensor) -> torch.Tensor:
        """The deterministic weights of one choice, for validation and derivation.

        Args:
            logits: the choice's logits.

        Returns:
            Weights of the same shape; default: :meth:`weights`.
        """
        return self.weights(logits)

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        """Training-time weights of one group's members, of which ``k`` are used.

        Args:
            rows: each member's logits without its ``unused`` candidate.
            k: how many members a genotype uses.

        Returns:
            Weights shaped as ``rows`` (the unused candidates get weight zero), or None (the
            default): weigh each member as a choice of its own.
        """
        return None

    def eval_group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        """The deterministic counterpart of :meth:`group_weights`, for validation and derivation.

        Args:
            rows: each member's logits without its ``unused`` candidate.
            k: how many members a genotype uses.

        Returns:
            As :meth:`group_weights`; default: :meth:`group_weights`.
        """
        return self.group_weights(rows, k)

    def frozen(self) -> bool:
        """Whether the weights are now constant in the logits (a final hard phase).

        Returns:
            True: strategies take no architecture step. Default: False.
        """
        return False

    def penalty(self, logits: Mapping[str, torch.Tensor], phase: str) -> torch.Tensor | None:
        """A loss term of the relaxation's own (FairDARTS's zero-one loss, beta-DARTS's).

        Args:
            logits: every choice's logits, by name.
            phase: ``"arch"`` for the architecture step, ``"weight"`` for the weight step.

        Returns:
            A 0-dim tensor added to that step's loss, or None (the default): no term.
        """
        return None

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Advance per-epoch schedules (temperatures, alphas) before a search epoch.

        Args:
            epoch: the epoch about to run, from 0 (warm-up epochs not counted).
            epochs: the epochs the schedule spans.
        """

    def on_step(self, step: int, steps: int) -> None:
        """Advance per-step schedules before a search step.

        Args:
            step: the step about to run within its epoch, from 0.
            steps: the steps of an epoch.
        """

    def state_dict(self) -> dict[str, Any]:
        """The schedules' state, for checkpoints.

        Returns:
            Plain data and tensors; default: empty.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, when a killed search resumes.

        Args:
            state: a :meth:`state_dict` of a relaxation made with the same options.
        """


@dataclass
class SearchContext:
    """What a strategy gets: the plugins, the data, the trainer and the run's budget.

    Attributes:
        space: the space to search.
        relaxation: the relaxation of mixing weights.
        trainer: the shared trainer (see :class:`~nasplug.core.protocols.TrainerView`).
        data: the data; a search uses the ``weight`` and ``arch`` halves of its train split.
        epochs: the run's epochs (``--epochs``).
        batch_size: the run's batch size.
        seed: the run's seed.
        options: deprecated; read :attr:`storage`, :attr:`study` and :attr:`run_dir`. Holds
            them under those keys for strategies written before they were fields.
        feasible: a predicate the run sets from the user's resource budget (``--budget``):
            whether a genotype's network meets it. Black-box strategies propose only genotypes
            it accepts (see :class:`~nasplug.searchlib.blackbox.SamplePool`); None: every
            genotype is feasible.
        constraints: the same budget as linear constraints on the mixing weights (``cost . x
            <= limit - fixed`` per resource), made on the full space: a supernet strategy
            weighs them with its relaxation's own (see
            :func:`nasplug.searchlib.supernet.search_supernet`).
        budget_penalty: with a value (lambda) the constraints are not met by construction but
            penalised: lambda times the weights' expected cost over what the budget leaves the
            candidates (the bound), summed over the resources, is added to the architecture
            loss. None: met by construction.
        storage: the Optuna storage URL of a strategy that keeps an Optuna study (``--storage``);
            None: its own default (``tpe``: SQLite in the run directory).
        study: the Optuna study's name (``--study``); None: the strategy's default.
        run_dir: the run directory's path, for files a strategy keeps beside its checkpoints;
            None when the search writes nothing.
    """

    space: SearchSpace
    relaxation: Relaxation
    trainer: TrainerView
    data: Data
    epochs: int
    batch_size: int
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    feasible: Callable[[Genotype], bool] | None = None
    constraints: tuple[LinearConstraint, ...] = ()
    budget_penalty: float | None = None
    storage: str | None = None
    study: str | None = None
    run_dir: str | None = None

    def __post_init__(self) -> None:
        # Callers that still pass `options` fill the fields, and strategies that still read
        # `options` find the fields there.
        for key in _OPTION_FIELDS:
            if getattr(self, key) is None and self.options.get(key) is not None:
                setattr(self, key, self.options[key])
        self.options = {**self.options, **{key: getattr(self, key) for key in _OPTION_FIELDS}}

    @property
    def task(self) -> Task:
        """The data's task."""
        return self.data.task

    @property
    def run(self) -> RunView | None:
        """The run directory, as the trainer holds it; None when the search writes nothing."""
        return self.trainer.run


#: The fields of :class:`SearchContext` that its deprecated ``options`` mirrors.
_OPTION_FIELDS = ("storage", "study", "run_dir")


class Strategy(ABC):
    """Decides what is optimised: supernet weights and logits, or discrete candidates.

    Required (abstract): :meth:`search`, called once per run. A strategy that can search by a
    benchmark table alone has the :class:`SearchesTable` capability too.
    """

    #: Constructor options that make a tiny instance for tests (see
    #: :func:`nasplug.testing.tiny_instance`); empty: the defaults.
    test_options: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the search.

        Args:
            ctx: the space, the relaxation, the data and the shared trainer, which moves the
                tensors, checkpoints and logs (see :class:`SearchContext`).

        Returns:
            The chosen genotype, with ``val_<task.metric>`` among its metrics, the history and
            any candidates' records.

        Raises:
            ValueError: in one line, for a space or budget the strategy cannot search.
        """


@runtime_checkable
class SearchesTable(Protocol):
    """A strategy capability: a black-box search that can score genotypes by a table alone.

    ``method`` is the instance's evaluation method. With ``method == "table"`` a run checks,
    before anything is written, that the space offers a benchmark (see
    :func:`nasplug.searchlib.blackbox.benchmark_of`), and ``search(ctx)`` scores every
    genotype by it. ``search_table`` is the same search with nothing but the space: no data,
    trainer or run directory, so the query-budget curve can run it for hundreds of seeds.
    """

    method: str

    def search_table(
        self,
        space: SearchSpace,
        *,
        seed: int,
        queries: int,
        feasible: Callable[[Genotype], bool] | None = None,
    ) -> SearchResult:
        """Search ``space`` by its table.

        Under one seed it is the same search ``search(ctx)`` makes with ``method=table``, that
        budget and ``ctx.feasible``.

        Args:
            space: a space with the :class:`OffersBenchmark` capability.
            seed: the seed of every random decision.
            queries: how many lookups of the table.
            feasible: only genotypes it accepts are queried (see
                :attr:`SearchContext.feasible`); None: every genotype may be.

        Returns:
            A result whose ``history`` holds one row per query, in order, the table's value
            under ``metric`` (see :func:`nasplug.searchlib.blackbox.table_result`).

        Raises:
            nasplug.core.options.OptionError: when the space's table cannot be had.
        """
        ...


class Dataset(ABC):
    """A source of data. The constructor's keyword arguments are the ``--data-opt`` options.

    Required (abstract): :meth:`load`. It returns each split in one of two forms (see
    :class:`nasplug.core.types.Data`):

    - resident: an ``(x, y)`` pair of tensors, inputs normalised with statistics of the train
      split only. Right for data that fits in memory; the trainer keeps it on the device.
    - streaming: a ``torch.utils.data.Dataset`` whose items are raw ``(x, y)`` pairs of arrays
      or tensors, one example each. A plugin declares that it streams by returning Datasets;
      it decodes nothing up front. The trainer normalises the inputs with ``Data.mean`` and
      ``Data.std`` when the plugin gives them, otherwise with statistics it computes in one
      pass over the train split; it reads batches through loader worker processes, or loads
      the Datasets into memory once when they are small (``Trainer(stream="auto")``). Items
      are read in worker processes, so a Dataset must be picklable and must not hold open
      handles that break across ``fork``.

    All splits of one ``Data`` use the same form. Resident data should also give the
    ``Data.mean`` and ``Data.std`` it was normalised with (runs prepare new inputs with them).
    ``Data.augment`` declares the augmentation the data suits when the user gives none (e.g.
    ``no-flip`` for digits), and ``Data.note`` says what loading did to the source.
    """

    #: Constructor options that make a tiny instance for tests (see
    #: :func:`nasplug.testing.tiny_instance`); empty: the defaults.
    test_options: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def load(self) -> Data:
        """Load the data.

        Returns:
            The task and its splits: normalised tensors, or torch Datasets to stream.

        Raises:
            ValueError: in one line, for a source that cannot be read (a missing file, a
                wrong shape), naming it and what is accepted.
        """


def _unused_of(groups: Sequence[Group]) -> dict[str, str]:
    """The ``unused`` candidate of every choice that belongs to a group, by choice name."""
    return {member: g.unused for g in groups for member in g.choices}
