"""The shared trainer: devices, data on the device, loops, optimisers, checkpoints and logs.

Strategies say what is optimised; the trainer says how tensors move. A small dataset lives on
the device as tensors and every batch is an index into it, so no loader is rebuilt per step.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from nasplug.interfaces import Relaxation, SearchSpace
from nasplug.rundir import RunDir
from nasplug.tasks import Metrics, Objective
from nasplug.types import Choice, Data, Task

__all__ = ["ArchLogits", "Memo", "NonFiniteLoss", "SearchContext", "Trainer", "pick_device"]

_SPLIT_SEED = 20190401  # the weight/architecture halves depend on the data only, not on --seed


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is intact."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; any other name is forced."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r}; accepted: auto, cpu, cuda, cuda:N, mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but MPS is not available; use --device cpu")
    return dev


class Memo(dict):
    """Plain data a strategy keeps across epochs (history, counters); saved in checkpoints."""

    def state_dict(self) -> dict[str, Any]:
        return dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.clear()
        self.update(state)


class ArchLogits(nn.Module):
    """One architecture logit per candidate of every choice (DARTS init: 1e-3 * N(0, 1))."""

    def __init__(self, choices: tuple[Choice, ...], init_scale: float = 1e-3) -> None:
        super().__init__()
        self.names = [c.name for c in choices]
        self.logits = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(c.candidates))) for c in choices)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return zip(self.names, self.logits)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.items())

    def weights(self, relaxation: Relaxation, *, evaluation: bool = False) -> dict[str, torch.Tensor]:
        fn = relaxation.eval_weights if evaluation else relaxation.weights
        return {name: fn(l) for name, l in self.items()}


@dataclass
class SearchContext:
    """What a strategy gets: the plugins, the data, the trainer and the run's budget."""

    space: SearchSpace
    relaxation: Relaxation
    trainer: Trainer
    data: Data
    epochs: int
    batch_size: int
    seed: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.data.task

    @property
    def run(self) -> RunDir | None:
        return self.trainer.run


class Trainer:
    """Owns the machine: device, precision, data placement, loops, checkpoints and logs.

    Args:
        data: the loaded dataset; ``data.train`` is split into weight and architecture halves.
        run: where checkpoints and events go (None: nowhere).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        seed: seeds Python, NumPy and torch.
        deterministic: ask torch for deterministic kernels.
        grad_clip: max gradient norm of weight steps (0 disables).
        quiet: no progress bars or per-epoch lines.
    """

    def __init__(self, data: Data, *, run: RunDir | None = None, device: str = "auto", seed: int = 0,
                 deterministic: bool = False, grad_clip: float = 5.0, quiet: bool = False,
                 eval_batch_size: int = 512) -> None:
        self.device = pick_device(device)
        self.run = run
        self.seed = seed
        self.grad_clip = grad_clip
        self.quiet = quiet or os.environ.get("NASPLUG_QUIET", "") not in ("", "0")
        self.eval_batch_size = eval_batch_size
        self._bad: torch.Tensor | None = None
        self._bad_where = ""
        self.task = data.task
        seed_everything(seed)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        x, y = data.train
        self.objective = Objective(data.task, y).to(self.device)
        if data.val is not None:
            halves = {"weight": (x, y), "arch": data.val}
        else:
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(_SPLIT_SEED))
            w, a = perm[: len(x) // 2], perm[len(x) // 2:]
            halves = {"weight": (x[w], y[w]), "arch": (x[a], y[a])}
        full = (torch.cat([halves["weight"][0], halves["arch"][0]]),
                torch.cat([halves["weight"][1], halves["arch"][1]]))
        self.splits = {name: self._place(*xy) for name, xy in
                       {**halves, "train": full, "test": data.test}.items()}

    def _place(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(self.device, torch.float32), self.objective.targets(y.to(self.device))

    # ---- data --------------------------------------------------------------------------------
    def size(self, split: str) -> int:
        return len(self.splits[split][0])

    def steps(self, split: str, batch_size: int) -> int:
        return math.ceil(self.size(split) / batch_size)

    def batches(self, split: str, batch_size: int, *, epoch: int = 0, stream: int = 0,
                shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``split``; the order depends only on (seed, epoch, stream), so resume is exact."""
        x, t = self.splits[split]
        n = len(x)
        if shuffle:
            g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{epoch}/{stream}/{split}".encode()))
            order = torch.randperm(n, generator=g).to(self.device)
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size]
                yield x[idx], t[idx]
        else:
            for i in range(0, n, batch_size):
                yield x[i:i + batch_size], t[i:i + batch_size]

    # ---- computing ---------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; full precision elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def place(self, module: nn.Module) -> nn.Module:
        """Move a module to the device (channels_last where it has convolutions)."""
        module = module.to(self.device)
        if any(isinstance(m, nn.Conv2d) for m in module.modules()):
            module = module.to(memory_format=torch.channels_last)
        return module

    def loss(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.objective.loss(out, t)

    def check_finite(self, loss: torch.Tensor, where: str) -> None:
        """Stop on a NaN/inf loss, before the epoch's checkpoint is written.

        On the CPU the check is immediate. On accelerators a flag accumulates on the device and
        is read once per epoch, so the hot loop has no host-device sync.
        """
        bad = ~torch.isfinite(loss.detach()).all()
        if self.device.type == "cpu":
            if bool(bad):
                raise NonFiniteLoss(f"loss became {float(loss)} in {where}; the last good checkpoint "
                                    f"is kept; try a lower learning rate")
        else:
            self._bad = bad if self._bad is None else self._bad | bad
            self._bad_where = self._bad_where or where

    def _raise_if_bad(self) -> None:
        if self._bad is not None and bool(self._bad):
            raise NonFiniteLoss(f"loss became NaN or inf in the epoch ending at {self._bad_where}; the "
                                f"last good checkpoint is kept; try a lower learning rate")
        self._bad, self._bad_where = None, ""

    def update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
               params: list[torch.Tensor] | None = None, *, clip: bool = True) -> None:
        """Backward, clip the gradient norm of ``params``, step."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip and self.grad_clip > 0 and params:
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()

    @torch.no_grad()
    def evaluate(self, forward: Callable[[torch.Tensor], torch.Tensor], split: str,
                 module: nn.Module | None = None) -> dict[str, float]:
        """Metrics of ``forward`` on ``split`` (``module`` is switched to eval mode meanwhile)."""
        was_training = module.training if module is not None else False
        if module is not None:
            module.eval()
        m = Metrics(self.objective)
        try:
            with self.autocast():
                for x, t in self.batches(split, self.eval_batch_size, shuffle=False):
                    m.update(forward(x), t)
        finally:
            if module is not None:
                module.train(was_training)
        return m.compute()

    def metrics(self) -> Metrics:
        return Metrics(self.objective)

    # ---- epochs, checkpoints, logs -----------------------------------------------------------
    def epochs(self, n: int, state: Mapping[str, Any], phase: str) -> Iterator[int]:
        """Yield epoch numbers of ``phase``, checkpointing ``state`` after each one.

        ``state`` maps names to objects with ``state_dict``/``load_state_dict`` (modules,
        optimisers, schedulers, the relaxation, the space, a :class:`Memo`). A phase that has a
        checkpoint resumes after its last finished epoch with every state and RNG restored; a
        finished phase yields nothing and leaves its final state loaded.
        """
        start = 0
        ckpt = self.run.load_checkpoint(phase) if self.run is not None else None
        if ckpt is not None:
            for name, obj in state.items():
                if name in ckpt["state"]:
                    obj.load_state_dict(ckpt["state"][name])
            set_rng_state(ckpt["rng"])
            start = int(ckpt["epoch"])
            if start < n:
                self.log("resume", phase=phase, epoch=start)
        for epoch in range(start, n):
            yield epoch
            self._raise_if_bad()
            if self.run is not None:
                self.run.save_checkpoint(phase, {
                    "epoch": epoch + 1, "epochs": n,
                    "state": {name: obj.state_dict() for name, obj in state.items()},
                    "rng": get_rng_state()})

    def log(self, event: str, **fields: Any) -> None:
        if self.run is not None:
            self.run.log(event, **fields)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def progress(self, iterable: Any, total: int, desc: str) -> Any:
        if self.quiet:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True,
                    file=sys.stderr, mininterval=0.5)

    # ---- training a discrete network --------------------------------------------------------
    def fit(self, model: nn.Module, *, epochs: int, batch_size: int, phase: str,
            train_split: str = "train", eval_split: str = "test", lr: float = 0.025,
            momentum: float = 0.9, weight_decay: float = 3e-4, aux_weight: float = 0.4,
            drop_path: float = 0.0, cutout: int = 0,
            report: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, Any]]:
        """Train a discrete network from scratch with SGD + cosine; evaluate after every epoch.

        ``report(epoch, metrics)`` is called after each epoch (Optuna pruning raises from it).
        Models with a ``drop_path_prob`` attribute get it ramped linearly to ``drop_path``; models
        that set ``aux_logits`` during training get the auxiliary loss weighted by ``aux_weight``.
        Returns the per-epoch history.
        """
        model = self.place(model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        memo = Memo(history=[])
        steps = self.steps(train_split, batch_size)
        t0 = time.time()
        for epoch in self.epochs(epochs, {"model": model, "opt": opt, "sched": sched, "memo": memo},
                                 phase):
            if hasattr(model, "drop_path_prob"):
                model.drop_path_prob = drop_path * epoch / max(epochs, 1)
            model.train()
            train_m = self.metrics()
            batches = self.batches(train_split, batch_size, epoch=epoch)
            for x, t in self.progress(batches, steps, f"{phase} {epoch + 1}/{epochs}"):
                if cutout > 0:
                    x = _cutout(x, cutout)
                with self.autocast():
                    out = model(x)
                    loss = self.loss(out, t)
                    aux = getattr(model, "aux_logits", None)
                    if aux is not None and aux_weight > 0:
                        loss = loss + aux_weight * self.loss(aux, t)
                self.check_finite(loss, f"{phase} epoch {epoch + 1}")
                self.update(loss, opt, params)
                train_m.update(out.detach(), t)
            sched.step()
            rec = {"epoch": epoch + 1, "train": train_m.compute(),
                   eval_split: self.evaluate(model, eval_split, module=model),
                   "seconds": time.time() - t0}
            memo["history"].append(rec)
            self.log("train_epoch", phase=phase, **rec)
            self.say(f"{phase} epoch {epoch + 1}/{epochs}: " + _fmt(rec[eval_split]))
            if report is not None:
                report(epoch, rec[eval_split])
        return list(memo["history"])


def _cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero one random ``size`` x ``size`` square per image (DARTS's evaluation augmentation)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), device=x.device)
    cx = torch.randint(0, w, (n,), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    half = size // 2
    hole = ((ys - cy.view(n, 1, 1)).abs() <= half) & ((xs - cx.view(n, 1, 1)).abs() <= half)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def _fmt(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the core
        pass


def get_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(),
                             "python": _py_state_to_plain(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_plain_to_py_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(s: tuple) -> list:
    return [s[0], list(s[1]), s[2]]


def _plain_to_py_state(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])
