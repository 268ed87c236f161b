"""What a strategy may use of the trainer and of the run directory, as typed Protocols.

A strategy receives the trainer and the run directory in its
:class:`~nasplug.core.interfaces.SearchContext`, typed with :class:`TrainerView` and
:class:`RunView`: these are the whole of what it may rely on. nasplug's engine
(``nasplug.engine.trainer.Trainer``) and its run directories satisfy them; the core names
neither, so a test may hand a strategy any object with these members.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

__all__ = ["MetricAccumulator", "RunView", "TrainerView"]

#: A module type that :meth:`TrainerView.place` hands back unchanged.
_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


@runtime_checkable
class RunView(Protocol):
    """The run directory, as a strategy sees it (``ctx.run``; None when a search has none).

    Strategies checkpoint through :meth:`TrainerView.epochs` and log through
    :meth:`TrainerView.log`; of the directory itself they need only where a phase's checkpoint
    lies, to delete one that is no longer needed (see
    :func:`nasplug.searchlib.blackbox.forget_checkpoint`).
    """

    @property
    def writer(self) -> bool:
        """Whether this process writes files: False on every ``torchrun`` rank but the first."""
        ...

    def checkpoint_path(self, phase: str) -> Path:
        """Where the checkpoint of ``phase`` is (or would be) written.

        Args:
            phase: the name given to :meth:`TrainerView.epochs` or :meth:`TrainerView.fit`.

        Returns:
            The file's path; it need not exist.
        """
        ...


@runtime_checkable
class MetricAccumulator(Protocol):
    """The task's metrics, accumulated over batches (see :meth:`TrainerView.metrics`)."""

    def update(self, out: torch.Tensor, t: torch.Tensor) -> None:
        """Add a batch.

        Args:
            out: the network's outputs for the batch.
            t: the batch's targets, as :meth:`TrainerView.batches` yields them.
        """
        ...

    def compute(self) -> dict[str, float]:
        """The metrics of every batch added so far.

        Returns:
            ``{"loss": ..., task.metric: ..., ...}``; empty when nothing was added.
        """
        ...


@runtime_checkable
class TrainerView(Protocol):
    """What a strategy may use of the shared trainer (``ctx.trainer``).

    The trainer owns the machine: the device, precision, where the data lives and in what
    order it is read, checkpoints, logs and progress bars. A strategy says what is optimised
    and hands the tensors to these members; it never moves data or modules itself.

    Splits are named ``weight`` and ``arch`` (the two halves of the training data: supernet
    weights and architecture), ``train`` and ``test``; a search never reads ``test``.
    """

    @property
    def device(self) -> torch.device:
        """Where modules and batches live; create new tensors on it (or on an input's device)."""
        ...

    @property
    def quiet(self) -> bool:
        """Whether messages and progress bars are off; a strategy may quiet its libraries too."""
        ...

    @property
    def lazy_sync(self) -> bool:
        """Whether reading a tensor's value stalls the device (true off the CPU): read few."""
        ...

    @property
    def run(self) -> RunView | None:
        """The run directory, or None when the search writes nothing."""
        ...

    def place(self, module: _ModuleT) -> _ModuleT:
        """Move ``module`` to the device (and compile it, when the run asks to).

        Args:
            module: a supernet, a discrete network or an ``nn.Module`` holding logits.

        Returns:
            The same module, placed.
        """
        ...

    def steps(self, split: str, batch_size: int) -> int:
        """How many batches :meth:`batches` yields per epoch of shuffled ``split``.

        Args:
            split: ``weight``, ``arch``, ``train`` or ``test``.
            batch_size: the batch size.

        Returns:
            The number of batches.
        """
        ...

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        epoch: int = 0,
        stream: int = 0,
        shuffle: bool = True,
        cutout: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``split`` on the device, in an order fixed by (seed, epoch, stream).

        Args:
            split: ``weight``, ``arch``, ``train`` or ``test``.
            batch_size: examples per batch (under ``torchrun``, over all processes).
            epoch: the epoch, so that a resumed run reads what an uninterrupted one would.
            stream: tells apart two readers of the same split in one epoch.
            shuffle: shuffle and augment (training); False reads in order, unaugmented.
            cutout: the side of a cutout square on augmented image batches (0: none).

        Returns:
            An iterator of ``(inputs, targets)``; targets are prepared for :meth:`loss`.
        """
        ...

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The precision context of forward passes (bf16 on CUDA, full precision elsewhere).

        Returns:
            A context manager; run forward passes and losses inside it.
        """
        ...

    def loss(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The task's loss.

        Args:
            out: the network's outputs.
            t: targets as :meth:`batches` yields them.

        Returns:
            A 0-dim tensor.
        """
        ...

    def check_finite(self, loss: torch.Tensor, where: str) -> None:
        """Stop the run on a NaN or infinite loss, before the epoch's checkpoint is written.

        Args:
            loss: the loss just computed.
            where: where it was computed, for the message (``"search epoch 2 step 5"``).

        Raises:
            nasplug.engine.trainer.NonFiniteLoss: on a bad loss; off the CPU at the end of the
                epoch rather than at once.
        """
        ...

    def update(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.Tensor] | None = None,
        *,
        clip: bool = True,
    ) -> torch.Tensor | None:
        """Backward, average gradients over the processes, clip the gradient norm, step.

        Args:
            loss: the loss to minimise.
            optimizer: the optimiser to step; its gradients are zeroed first.
            params: the parameters whose gradient norm is clipped.
            clip: clip at all (architecture steps do not).

        Returns:
            The gradient norm clipping measured, or None when nothing was clipped (see
            :meth:`clip_factor`).
        """
        ...

    def clip_factor(self, norm: torch.Tensor | None) -> torch.Tensor | float:
        """The factor :meth:`update` scaled the gradients by.

        Args:
            norm: what :meth:`update` returned.

        Returns:
            A factor in (0, 1]; 1.0 when nothing was clipped.
        """
        ...

    def evaluate(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        split: str,
        module: nn.Module | None = None,
    ) -> dict[str, float]:
        """Metrics of ``forward`` on ``split``, without gradients.

        Args:
            forward: inputs -> outputs, e.g. ``lambda x: supernet(x, weights)``.
            split: the split to score on (``arch`` during a search).
            module: the module ``forward`` runs, switched to eval mode meanwhile.

        Returns:
            The task's metrics by name (``loss`` and ``task.metric`` among them).
        """
        ...

    def metrics(self) -> MetricAccumulator:
        """A fresh accumulator of training metrics (over every process's shards).

        Returns:
            An empty :class:`MetricAccumulator`.
        """
        ...

    def epochs(self, n: int, state: Mapping[str, Any], phase: str) -> Iterator[int]:
        """The epochs of ``phase``, with ``state`` checkpointed after each one.

        A phase that has a checkpoint resumes after its last finished epoch, every state and
        random generator restored; a finished phase yields nothing and leaves its final state
        loaded.

        Args:
            n: the phase's epochs.
            state: objects with ``state_dict``/``load_state_dict`` by name (modules,
                optimisers, schedulers, the relaxation, the space,
                ``nasplug.engine.memo.Memo`` for plain data).
            phase: the phase's name, unique within the run (``"search"``, ``"stage2"``).

        Returns:
            An iterator of epoch numbers, from 0 or from where the checkpoint left off.
        """
        ...

    def fit(
        self,
        model: nn.Module,
        *,
        epochs: int,
        batch_size: int,
        phase: str,
        train_split: str = "train",
        eval_split: str = "test",
        lr: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        aux_weight: float = 0.4,
        drop_path: float = 0.0,
        cutout: int | None = None,
        report: Callable[[int, dict[str, float]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train a discrete network from scratch (SGD, cosine schedule), checkpointed per epoch.

        Args:
            model: the network, e.g. ``space.build(genotype, task)``.
            epochs: training epochs.
            batch_size: examples per batch.
            phase: the checkpoint's phase, one per candidate (``"sample/3"``).
            train_split: the split trained on (``weight`` during a search).
            eval_split: the split scored after every epoch (``arch`` during a search).
            lr: SGD learning rate.
            momentum: SGD momentum.
            weight_decay: SGD weight decay.
            aux_weight: the weight of an auxiliary head's loss, for models that set
                ``aux_logits``.
            drop_path: the final drop-path rate, for models with ``drop_path_prob``.
            cutout: the cutout square of augmented image batches (None: the trainer's
                default; 0: none).
            report: ``report(epoch, metrics)`` after every epoch; it may raise to stop.

        Returns:
            The per-epoch records: ``{"epoch", "train", eval_split, "seconds"}``.

        Raises:
            nasplug.engine.trainer.NonFiniteLoss: when the loss becomes NaN or infinite.
        """
        ...

    def log(self, event: str, **fields: Any) -> None:
        """Record an event in the run's log (and TensorBoard, when on).

        Args:
            event: the event's name (``"candidate"``, ``"search_epoch"``).
            **fields: JSON data.
        """
        ...

    def say(self, text: str) -> None:
        """Print one line for the user, unless the trainer is quiet.

        Args:
            text: the line.
        """
        ...

    def progress(self, iterable: Any, total: int, desc: str) -> Any:
        """``iterable`` with a progress bar, unless the trainer is quiet.

        Args:
            iterable: what is iterated.
            total: its length.
            desc: the bar's label.

        Returns:
            An iterable of the same items; it may have ``set_postfix`` (tqdm's).
        """
        ...
