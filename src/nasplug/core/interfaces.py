"""The four plugin axes: one abstract class each, and the context a strategy receives.

A plugin is a class registered under an entry-point group; its constructor takes explicit
keyword arguments with defaults, which are the ``--space-opt`` / ``--relax-opt`` /
``--strategy-opt`` / ``--data-opt`` options of the CLI.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from nasplug.core.discovery import name_of
from nasplug.core.groups import group_layout, nearest_vertex
from nasplug.core.protocols import RunView, TrainerView
from nasplug.core.types import Choice, Data, Genotype, Group, LinearConstraint, SearchResult, Task

__all__ = [
    "BenchmarkTable",
    "Constrains",
    "Dataset",
    "DeclaresParameterFree",
    "OffersBenchmark",
    "ParsesGenotype",
    "Relaxation",
    "ReportsCosts",
    "RunView",
    "SearchContext",
    "SearchSpace",
    "SearchesTable",
    "Strategy",
    "Suggest",
    "TrainerView",
    "restricted_candidates",
    "Weights",
]

#: Mixing weights of every choice: ``{choice.name: tensor of len(choice.candidates)}``.
Weights = Mapping[str, torch.Tensor]
#: ``suggest(name, options) -> option``: how a sampler picks one discrete decision.
#: Random search passes a seeded ``random.choice``; TPE passes ``trial.suggest_categorical``.
Suggest = Callable[[str, Sequence[Any]], Any]


class SearchSpace(ABC):
    """A family of architectures, as a weight-sharing supernet and as discrete networks.

    Order of calls: ``choices()`` and ``supernet(task)`` when a search starts; the supernet's
    ``forward(x, weights)`` every step, with ``weights`` holding a tensor per choice (exact
    zeros mean "not used": the supernet must not compute those candidates);
    ``on_epoch_end(supernet, weights)`` after every search epoch (spaces whose candidates change
    during the search act here and say which changed); ``derive(weights)`` to discretise; ``build(genotype, task)`` for
    the discrete network. ``sample(suggest)`` draws a valid genotype for black-box strategies.
    ``state_dict``/``load_state_dict`` carry any state the space changes during a search into
    checkpoints.
    """

    @abstractmethod
    def choices(self) -> tuple[Choice, ...]:
        """The supernet's mixing points, in a stable order."""

    def groups(self) -> tuple[Group, ...]:
        """Sets of choices of which exactly ``k`` are used (see :class:`~nasplug.core.types.Group`).

        A space whose derive rule keeps ``k`` of several choices declares them here, so that a
        structure-aware relaxation can give the group exactly the mass the derived network has.
        Every choice belongs to at most one group. Default: none.
        """
        return ()

    @abstractmethod
    def supernet(self, task: Task) -> nn.Module:
        """A module whose ``forward(x, weights: Weights)`` returns the task's outputs."""

    @abstractmethod
    def build(self, genotype: Genotype, task: Task) -> nn.Module:
        """The discrete network for ``genotype``, a plain ``nn.Module`` with ``forward(x)``."""

    def derive(self, weights: Weights) -> Genotype:
        """The discretisation rule. Default: the strongest candidate of every choice outside the
        groups; in each :class:`~nasplug.core.types.Group`, the ``k`` members whose strongest candidate
        other than ``unused`` weighs most, each with that candidate, and ``unused`` for the
        others (ties go to the earlier candidate, then the earlier member). Where ``unused``
        sits among a choice's candidates does not matter.

        The genotype has the shape ``{"choices": {choice name: candidate}}`` and carries the
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
        """A valid genotype, each decision taken by ``suggest``. Default: per choice,
        ``suggest(choice.name, candidates)``; per group, first ``suggest(f"{group.name}:members",
        options)`` among the ways to pick ``k`` of its members (options such as ``"0,2"``:
        positions in ``group.choices``), then a candidate other than ``unused`` for each picked
        member; the others get ``unused``.

        The genotype has :meth:`derive`'s shape and carries the space's registered name.
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
        """Mixing weights that select ``genotype`` inside the supernet (for the discretisation
        gap). Default, for :meth:`derive`'s shape: 1.0 on the chosen candidate of each choice;
        a group member that names the group's ``unused`` gets all zeros (the vertex the
        group-aware relaxations reach: ``unused`` carries no mass). A name that is not a
        candidate, or a group that does not use exactly ``k`` members, is a ValueError.
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
        """A copy whose choices keep only the named candidates (progressive search)."""
        raise NotImplementedError(f"{type(self).__name__} does not support restricting candidates")

    def with_depth(self, depth: int) -> SearchSpace:
        """A copy with ``depth`` repeated units (cells, layers); spaces without depth return self."""
        return self

    def on_epoch_end(self, supernet: nn.Module, weights: Weights) -> Mapping[str, Sequence[str]]:
        """Called after each search epoch with the evaluation weights.

        Spaces whose candidates change during a search act here and return, per choice name, the
        candidates that were replaced; the strategy then gives those candidates a fresh start
        (their logits reset to the choice's mean, their optimiser state cleared). Default: none.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

    def candidates(self, weights: Weights) -> list[dict[str, Any]]:
        """Records of the candidates a search evaluated (properties, final weight), for
        ``nasplug show``; spaces whose candidates have measurable structure fill it. Default: none.
        """
        return []

    def score_candidates(
        self, weights: Weights, score: Callable[[Weights], float]
    ) -> list[dict[str, Any]]:
        """:meth:`candidates`, with a metric per candidate where the space can score them.

        Called once at the end of a supernet search; ``score(weights)`` evaluates the trained
        supernet with the given mixing weights on the architecture half and returns the task's
        metric. Default: :meth:`candidates` unscored.
        """
        return self.candidates(weights)

    def describe(self, genotype: Genotype) -> str:
        """A short human-readable rendering of a genotype."""
        return str(genotype)


@runtime_checkable
class BenchmarkTable(Protocol):
    """Ground truth for a space: a metric of every genotype, answered without training.

    ``label`` says what the number is and where it comes from, as a report shows it (for
    example "CIFAR-10 accuracy (%) in the analog-nasbench table, its own training recipe");
    ``metric`` is the key under which runs record it (``table_accuracy``). ``query`` must cost
    nothing measurable beside a training step: strategies call it hundreds of times a second.
    ``best()`` is the table's best value, for regret and for plots.
    """

    label: str
    metric: str

    def query(self, genotype: Genotype) -> float:
        """The table's value for ``genotype``; a genotype of another space is a ValueError."""
        ...

    def best(self) -> float:
        """The best value over every genotype of the table."""
        ...


@runtime_checkable
class OffersBenchmark(Protocol):
    """A space capability: a :class:`BenchmarkTable` of its genotypes.

    ``benchmark()`` loads the table (once; cache it); when the table cannot be had (an optional
    package not installed, a damaged file) it raises :class:`~nasplug.core.options.OptionError` with
    one line saying how to get it. Black-box strategies evaluate with it (``method=table``), and
    every run on such a space records the derived genotype's value in its metrics.
    """

    def benchmark(self) -> BenchmarkTable: ...


@runtime_checkable
class ParsesGenotype(Protocol):
    """A space capability: reading genotypes written in the space's own published notation.

    ``parse_genotype(text)`` is the inverse of :meth:`SearchSpace.describe` for spaces whose
    literature has a notation of its own (NAS-Bench-201's arch strings); a text it cannot read is
    a one-line ValueError naming what is wrong. ``nasplug train FILE --space NAME`` uses it for a
    file that holds neither JSON nor a DARTS ``Genotype(...)`` string.
    """

    def parse_genotype(self, text: str) -> Genotype: ...


@runtime_checkable
class DeclaresParameterFree(Protocol):
    """A space capability: which candidates hold no parameters, per cell.

    ``parameter_free()`` maps each cell (a set of groups whose mass a relaxation's cap counts
    together, e.g. the DARTS space's ``normal`` and ``reduce`` cells) to its (choice, candidate)
    entries whose op has no trainable parameters where it sits, as the space builds it (not
    guessed from names). Relaxations with a ``cap`` turn it into one
    :class:`~nasplug.core.types.LinearConstraint` per cell with
    :func:`nasplug.searchlib.polytope.cap_constraints`.
    """

    def parameter_free(self) -> Mapping[str, Sequence[tuple[str, str]]]: ...


@runtime_checkable
class ReportsCosts(Protocol):
    """A space capability: where each candidate sits in the network, to cost it.

    ``cost_sites(task)`` maps every (choice, candidate) to the op modules that candidate puts
    into ``build(genotype, task)``, one per place the network uses it (every cell of a type),
    each built as ``build`` builds it, with the input shape it gets there (batch 1 first).
    A candidate that puts nothing in the network (a cell's ``none``) is left out.
    :func:`nasplug.searchlib.costs.candidate_costs` counts or times these modules; the rest of the
    network (stem, preprocessing, head) is found from whole networks, so that for params and
    FLOPs a genotype's cost equals its built network's exactly, provided the network is the
    sum of its parts: what one choice builds must not depend on another choice. 4-D inputs are
    timed in ``torch.channels_last`` memory format, the one nasplug's image spaces run in.
    """

    def cost_sites(
        self, task: Task
    ) -> Mapping[tuple[str, str], Sequence[tuple[nn.Module, tuple[int, ...]]]]: ...


@runtime_checkable
class Constrains(Protocol):
    """A relaxation capability: linear constraints across groups, met by the weights.

    ``constraints(space)`` is asked once when a supernet search starts (empty: none; a
    relaxation typically builds them from a space capability such as
    :class:`DeclaresParameterFree`; a search may add others, such as resource budgets). A group
    may be spanned by several constraints, and constraints sharing a group link the groups they
    span into one block (see :func:`nasplug.searchlib.polytope.constraint_layout`). Every block is then
    weighed at once, through ``constrained_weights`` instead of ``group_weights``: ``groups``
    holds per group its members' logits (``unused`` left out, as for ``group_weights``), ``ks``
    their masses, ``costs`` per constraint of the block its coefficients shaped as ``groups``
    (0.0 where it names nothing), ``bounds`` per constraint its bound; the result is shaped as
    ``groups`` and must meet ``sum(costs[i] * weights) <= bounds[i]`` for every ``i``.
    ``evaluation`` asks for the deterministic weights (validation, derivation).
    """

    def constraints(self, space: SearchSpace) -> tuple[LinearConstraint, ...]: ...

    def constrained_weights(
        self,
        groups: Sequence[Sequence[torch.Tensor]],
        ks: Sequence[int],
        costs: Sequence[Sequence[Sequence[torch.Tensor]]],
        bounds: Sequence[float],
        *,
        evaluation: bool = False,
    ) -> list[list[torch.Tensor]]: ...


def restricted_candidates(
    candidates: Mapping[str, tuple[str, ...]],
    keep: Mapping[str, Sequence[str] | str],
    unknown: str,
) -> dict[str, tuple[str, ...]]:
    """``candidates`` (choice name -> candidates) with the choices named in ``keep`` reduced to
    the candidates kept, in their order: what :meth:`SearchSpace.restrict` computes.

    Raises a one-line ValueError for a choice not in ``candidates`` (``unknown`` ends the
    message, saying what the choices are), a candidate the choice does not have, or a choice
    left with none.
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

    Order of calls: ``on_epoch(epoch, epochs)`` before each search epoch, ``on_step(step,
    steps)`` before each step, then ``weights(logits)`` once per choice per step (one sample is
    shared by every cell of a type); ``penalty(logits, phase)`` is added to the loss of the
    architecture (``"arch"``) or weight (``"weight"``) step; ``eval_weights(logits)`` gives the
    deterministic weights used for validation and derivation. ``state_dict`` goes into
    checkpoints.

    ``skip_is_exact`` says whether not computing zero-weight candidates leaves every gradient
    unchanged (true for softmax, sparsemax, entmax; straight-through samples define their own
    estimator).

    On a space with :class:`~nasplug.core.types.Group` s, ``group_weights(rows, k)`` (and
    ``eval_group_weights``) is asked first for the members of each group at once, their
    ``unused`` candidate left out; a relaxation that returns None there (the default) is
    group-unaware and weighs every choice on its own. A relaxation with the
    :class:`Constrains` capability weighs the groups of each of its constraints together
    instead. ``frozen()`` says, before each step, whether the weights no longer depend on the
    logits (a final hard phase): strategies then take no architecture step.
    """

    skip_is_exact: ClassVar[bool] = True

    @abstractmethod
    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Training-time mixing weights over the last dimension of ``logits``."""

    def eval_weights(self, logits: torch.Tensor) -> torch.Tensor:
        return self.weights(logits)

    def group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        """Training-time weights of one group's members, of which ``k`` are used; None: per choice.

        ``rows`` holds each member's logits without its ``unused`` candidate; the result has the
        same shapes, and the unused candidates get weight zero.
        """
        return None

    def eval_group_weights(self, rows: Sequence[torch.Tensor], k: int) -> list[torch.Tensor] | None:
        """Deterministic counterpart of :meth:`group_weights`, for validation and derivation."""
        return self.group_weights(rows, k)

    def frozen(self) -> bool:
        """Whether the weights are now constant in the logits, so an architecture step is moot."""
        return False

    def penalty(self, logits: Mapping[str, torch.Tensor], phase: str) -> torch.Tensor | None:
        return None

    def on_epoch(self, epoch: int, epochs: int) -> None:
        pass

    def on_step(self, step: int, steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


@dataclass
class SearchContext:
    """What a strategy gets: the plugins, the data, the trainer and the run's budget.

    ``feasible`` is a predicate the run sets from the user's resource budget (``--budget``):
    whether a genotype's network meets it. Black-box strategies propose only genotypes it
    accepts (see :class:`~nasplug.searchlib.candidates.SamplePool`); None: every genotype is feasible.
    ``constraints`` is the same budget as linear constraints on the mixing weights (``cost . x
    <= limit - fixed`` per resource, see :func:`nasplug.run.budget.budget_constraints`), made on
    the full space: a supernet strategy weighs them with its relaxation's own (see
    :func:`nasplug.searchlib.supernet.search_supernet`). With ``budget_penalty`` (lambda) they are not
    met by construction but penalised: lambda times the weights' expected cost over what the
    budget leaves the candidates (the bound), summed over the resources, is added to the
    architecture loss.
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

    @property
    def task(self) -> Task:
        return self.data.task

    @property
    def run(self) -> RunView | None:
        return self.trainer.run


class Strategy(ABC):
    """Decides what is optimised: supernet weights and logits, or discrete candidates.

    ``search(ctx)`` is called once per run; ``ctx`` (a :class:`SearchContext`)
    hands over the space, the relaxation, the data and the shared trainer, which moves the
    tensors, checkpoints and logs.
    """

    @abstractmethod
    def search(self, ctx: SearchContext) -> SearchResult:
        """Run the search and return the chosen genotype with its metrics."""


@runtime_checkable
class SearchesTable(Protocol):
    """A strategy capability: a black-box search that can score genotypes by a table alone.

    ``method`` is the instance's evaluation method. With ``method == "table"`` a run checks,
    before anything is written, that the space offers a benchmark (see
    :func:`nasplug.searchlib.candidates.benchmark_of`), and ``search(ctx)`` scores every genotype by it.
    ``search_table(space, seed=, queries=, feasible=)`` is the same search with nothing but the
    space: no data, trainer or run directory, so the query-budget curve can run it for hundreds
    of seeds. Its result's ``history`` holds one row per query, in order, the table's value
    under ``metric`` (see :func:`nasplug.searchlib.candidates.table_result`); under one seed it is the
    same search ``search(ctx)`` makes with ``method=table``, that budget and ``ctx.feasible``.
    With ``feasible`` (see :attr:`SearchContext.feasible`) no genotype it refuses is queried;
    None: every genotype may be.
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
        """Search ``space`` with ``queries`` lookups of its table, under ``seed``."""
        ...


class Dataset(ABC):
    """A source of data. The constructor's keyword arguments are the ``--data-opt`` options.

    ``load`` returns each split in one of two forms (see :class:`nasplug.core.types.Data`):

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

    @abstractmethod
    def load(self) -> Data:
        """The task and its splits: normalised tensors, or torch Datasets to stream."""


def _unused_of(groups: Sequence[Group]) -> dict[str, str]:
    """The ``unused`` candidate of every choice that belongs to a group, by choice name."""
    return {member: g.unused for g in groups for member in g.choices}
