"""The shared trainer: devices, data on the device, loops, optimisers, checkpoints and logs.

Strategies say what is optimised; the trainer says how tensors move. A small dataset lives on
the device as tensors and every batch is an index into it, so no loader is rebuilt per step.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from nasplug.core.errors import RunError, one_line
from nasplug.core.options import AUGMENT_MODES, STREAM_MODES
from nasplug.core.protocols import RunView
from nasplug.core.types import Data
from nasplug.engine import augment as augment_mod
from nasplug.engine import ddp, streaming
from nasplug.engine.compiling import check_compile, has_forward
from nasplug.engine.memo import Memo
from nasplug.engine.rng import get_rng_state, rng_digest, seed_everything, set_rng_state
from nasplug.engine.tasks import Metrics, Objective

__all__ = ["NonFiniteLoss", "Trainer", "pick_device"]

_SPLIT_SEED = 20190401  # the weight/architecture halves depend on the data only, not on --seed
#: A module type that :meth:`Trainer.place` hands back unchanged (it moves the module in place).
_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


class RunLog(RunView, Protocol):
    """What the trainer needs of a run directory: what a strategy sees of it (``writer``,
    ``checkpoint_path``), an events log and checkpoints by phase."""

    def log(self, event: str, **fields: Any) -> None: ...

    def save_checkpoint(self, phase: str, state: Mapping[str, Any]) -> None: ...

    def load_checkpoint(self, phase: str) -> dict[str, Any] | None: ...


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is intact."""


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; any other name is forced.

    Under ``torchrun``, ``auto`` and ``cuda`` mean the GPU of this process's ``LOCAL_RANK``.
    """
    if name in ("auto", "cuda") and torch.cuda.is_available() and ddp.is_distributed():
        return torch.device("cuda", ddp.local_rank())
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
        sink: also receives every event logged, as ``sink(event, fields)`` (e.g. TensorBoard).
        compile: a ``torch.compile`` backend (e.g. ``inductor``) for the modules passed to
            :meth:`place`; None: run eagerly.
        augment: augmentation of shuffled training batches of images (input shape of 3 dims):
            ``standard`` (DARTS's random crop with 4 px padding, less for images under 32 px
            (:func:`nasplug.engine.augment.crop_pad`), and horizontal flip, plus
            cutout in :meth:`fit`), ``no-flip`` (the same without flips: digits, text, many
            scientific images) or ``off``; None: ``data.augment``, else ``standard``. Evaluation batches are never augmented; other
            tasks ignore it.
        stream: ``auto`` streams when the inputs of all splits would take more than
            :data:`nasplug.engine.streaming.STREAM_BYTES` as float32, and keeps them resident on the
            device otherwise; ``on`` and ``off`` force either. Streaming reads batches through
            a DataLoader (``workers`` processes, pinned memory on CUDA, each batch copied to
            the device one batch ahead); both paths give identical batches.
        workers: loader processes of the streaming path, and of loading a Dataset into memory
            (0: read in this process).

    ``input_stats`` is the (mean, std) that the inputs are normalised with (see
    :class:`nasplug.run.inputs.Normalisation`), or (None, None) where the data does not say.

    Under ``torchrun`` training batches are this rank's shard of each global batch and
    :meth:`update` averages gradients over the ranks (see :mod:`nasplug.engine.ddp`).

    ``lazy_sync`` (True on accelerators) makes the hot loop free of host-device syncs: the
    NaN flag is accumulated on the device and read once per epoch, and progress bars show no
    per-step loss.
    """

    def __init__(
        self,
        data: Data,
        *,
        run: RunLog | None = None,
        device: str = "auto",
        seed: int = 0,
        deterministic: bool = False,
        grad_clip: float = 5.0,
        quiet: bool = False,
        eval_batch_size: int = 512,
        sink: Callable[[str, Mapping[str, Any]], None] | None = None,
        compile: str | None = None,
        augment: str | None = None,
        stream: str = "auto",
        workers: int = 2,
    ) -> None:
        self.device = pick_device(device)
        if self.device.type == "cuda" and self.device.index is not None:
            # The current device is the one whose RNG state checkpoints save and restore.
            torch.cuda.set_device(self.device)
        self.lazy_sync = self.device.type != "cpu"
        self.run = run
        self.sink = sink
        self.seed = seed
        self.grad_clip = grad_clip
        self.quiet = quiet or os.environ.get("NASPLUG_QUIET", "") not in ("", "0")
        self.eval_batch_size = eval_batch_size
        self._bad: torch.Tensor | None = None
        self._bad_where = ""
        self._kept = "no checkpoint was written"  # what the NaN messages say is kept
        self.compile = compile or None
        self._compile_clock: _CompileClock | None = None
        if self.compile is not None:
            check_compile(self.compile, self.device)
        self.task = data.task
        seed_everything(seed)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        chosen = augment if augment is not None else data.augment or "standard"
        self.augment = _one_of("augment", chosen, AUGMENT_MODES)
        self.stream = _one_of("stream", stream, STREAM_MODES)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ValueError(f"workers={workers!r} is not accepted; accepted: an integer >= 0")
        self.workers = workers
        sources, y_train = self._sources(data)
        self.objective = Objective(data.task, y_train).to(self.device)
        n = sum(len(sources[k]) for k in ("train", "test"))
        size = streaming.estimated_bytes(n, data.task.input_shape)
        self.streaming = self.stream == "on" or (
            self.stream == "auto" and size > streaming.STREAM_BYTES
        )
        self._sizes = {name: len(src) for name, src in sources.items()}
        if self.streaming:
            self._streams = sources
            self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        else:
            self._streams = {}
            self._splits = {
                name: self._place(*src.materialise(self.workers)) for name, src in sources.items()
            }

    def _sources(self, data: Data) -> tuple[dict[str, streaming.Source], torch.Tensor]:
        """The weight, arch, train and test splits as sources, and the train targets that fit
        the objective (regression standardises with them)."""
        stores, y_train = streaming.stores(data, self.workers)
        train = stores["train"]
        # What the inputs are normalised with: computed or given for a Dataset, recorded by
        # whoever normalised resident tensors (None when nobody did).
        stats = (train.mean, train.std) if isinstance(train, streaming.Items) else None
        self.input_stats: tuple[Any, Any] = stats or (data.mean, data.std)
        if "val" in stores:
            joined = streaming.Joined(train, stores["val"])
            halves = {
                "weight": streaming.Source(train, torch.arange(len(train))),
                "arch": streaming.Source(stores["val"], torch.arange(len(stores["val"]))),
                "train": streaming.Source(joined, torch.arange(len(joined))),
            }
        else:
            n = len(train)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(_SPLIT_SEED))
            w, a = perm[: n // 2], perm[n // 2 :]
            halves = {
                "weight": streaming.Source(train, w),
                "arch": streaming.Source(train, a),
                "train": streaming.Source(train, torch.cat([w, a])),
            }
        test = streaming.Source(stores["test"], torch.arange(len(stores["test"])))
        return {**halves, "test": test}, y_train

    def _place(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(self.device, torch.float32), self.objective.targets(y.to(self.device))

    # ---- data --------------------------------------------------------------------------------
    @property
    def splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The resident splits as (inputs, prepared targets) on the device, by name (weight,
        arch, train, test); streamed splits are not in memory: read them with :meth:`batches`."""
        if self.streaming:
            raise AttributeError(
                "Trainer.splits holds resident data only and this trainer streams; "
                "read batches with Trainer.batches, or pass stream='off'"
            )
        return self._splits

    def size(self, split: str) -> int:
        return self._sizes[split]

    def steps(self, split: str, batch_size: int) -> int:
        """How many shuffled batches :meth:`batches` yields per epoch."""
        world = ddp.world_size()
        if world > 1:
            full, tail = divmod(self.size(split), batch_size)
            return full + (tail >= world)
        return math.ceil(self.size(split) / batch_size)

    def cutout_size(self, cutout: int | None = None) -> int:
        """The cutout square of training batches: ``cutout`` when given (0: none), otherwise
        half the image side (DARTS's 16 of 32) unless augmentation is off; 0 for non-images."""
        if len(self.task.input_shape) != 3:
            return 0
        if cutout is None:
            return 0 if self.augment == "off" else min(self.task.input_shape[1:]) // 2
        if not isinstance(cutout, int) or isinstance(cutout, bool) or cutout < 0:
            raise ValueError(f"cutout={cutout!r} is not accepted; accepted: an integer >= 0")
        return cutout

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
        """Batches of ``split``; the order depends only on (seed, epoch, stream), so resume is exact.

        Shuffled (training) batches of images are augmented as ``augment`` says (random crop
        and flip), plus cutout of a ``cutout`` square when it is above 0; each batch's
        parameters are drawn from a generator seeded by (seed, epoch, stream, split, batch
        index). Unshuffled batches (evaluation, calibration) are never augmented. The resident
        and streaming paths give identical batches.

        Under ``torchrun`` a shuffled (training) batch is this rank's equal shard of the global
        batch of ``batch_size``, cut from the same permutation on every rank; unshuffled passes
        (evaluation, calibration) give every rank the whole split.
        """
        n = self.size(split)
        if shuffle:
            ddp.check_batch_size(batch_size)
            g = torch.Generator().manual_seed(
                zlib.crc32(f"{self.seed}/{epoch}/{stream}/{split}".encode())
            )
            order = torch.randperm(n, generator=g)
            keys = []
            for b, i in enumerate(range(0, n, batch_size)):
                rows = ddp.shard(torch.arange(min(batch_size, n - i)))
                if len(rows) == 0:  # a last partial batch smaller than the number of ranks
                    break
                params = self._augmentation(split, epoch, stream, b, min(batch_size, n - i), cutout)
                keys.append((order[i + rows], None if params is None else params.rows(rows)))
        else:
            keys = [
                (torch.arange(i, min(i + batch_size, n)), None) for i in range(0, n, batch_size)
            ]
        if not self.streaming:
            yield from self._resident(split, keys, contiguous=not shuffle)
            return
        source = self._streams[split]
        pin = self.device.type == "cuda"
        batches = streaming.loader(source, keys, self.workers, pin=pin)
        for x, y in streaming.prefetch(batches, self.device):
            yield x, self.objective.targets(y)

    def _resident(
        self, split: str, keys: list[tuple[torch.Tensor, Any]], *, contiguous: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, t = self._splits[split]
        # The epoch's indices go to the device in one pinned, non-blocking copy (no sync, and no
        # copy per step); augmentation parameters follow per batch.
        on_device: Sequence[torch.Tensor] = ()
        if not contiguous and keys:
            flat = torch.cat([idx for idx, _ in keys])
            on_device = _to_device(flat, self.device).split([len(idx) for idx, _ in keys])
        for b, (idx, params) in enumerate(keys):
            if contiguous:
                lo = int(idx[0])
                xb, tb = x[lo : lo + len(idx)], t[lo : lo + len(idx)]
            else:
                xb, tb = x[on_device[b]], t[on_device[b]]
            if params is not None:
                xb = augment_mod.apply(xb, params.to(self.device))
            yield xb, tb

    def _augmentation(
        self, split: str, epoch: int, stream: int, batch: int, n: int, cutout: int
    ) -> augment_mod.Params | None:
        """The augmentation of a global training batch of ``n`` images, or None for none."""
        shape = self.task.input_shape
        crop = self.augment != "off"
        if len(shape) != 3 or not (crop or cutout > 0):
            return None
        g = torch.Generator().manual_seed(
            zlib.crc32(f"{self.seed}/{epoch}/{stream}/{split}/{batch}/augment".encode())
        )
        return augment_mod.draw(
            n,
            shape[1],
            shape[2],
            flip=self.augment == "standard",
            cutout=cutout,
            generator=g,
            pad=augment_mod.crop_pad(shape[1], shape[2]) if crop else 0,
        )

    # ---- computing ---------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; full precision elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def place(self, module: _ModuleT) -> _ModuleT:
        """Move a module to the device (channels_last where it has convolutions).

        Under ``torchrun`` every rank then holds rank 0's parameters and buffers. With
        ``compile``, the module is compiled in place (its class and ``state_dict`` keys stay
        as they are); the compile time is estimated from the first updates and logged.
        """
        module = module.to(self.device)
        if any(isinstance(m, nn.Conv2d) for m in module.modules()):
            module = module.to(memory_format=torch.channels_last)
        ddp.broadcast_module(module)
        if self.compile is not None and has_forward(module):
            module.compile(backend=self.compile)
            if self._compile_clock is None:
                self._compile_clock = _CompileClock(self)
        return module

    def loss(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.objective.loss(out, t)

    def check_finite(self, loss: torch.Tensor, where: str) -> None:
        """Stop on a NaN/inf loss, before the epoch's checkpoint is written.

        On the CPU the check is immediate. On accelerators a flag accumulates on the device and
        is read once per epoch, so the hot loop has no host-device sync.
        """
        bad = ~torch.isfinite(loss.detach()).all()
        if not self.lazy_sync:
            if bool(bad):
                raise NonFiniteLoss(
                    f"loss became {float(loss.detach())} in {where}; "
                    f"{self._kept}; try a lower learning rate"
                )
        else:
            self._bad = bad if self._bad is None else self._bad | bad
            self._bad_where = self._bad_where or where

    def _raise_if_bad(self) -> None:
        if self.lazy_sync and ddp.is_distributed():
            # Every rank stops together, whichever rank's shard went bad.
            self._bad = ddp.any_rank(
                self._bad
                if self._bad is not None
                else torch.zeros((), dtype=torch.bool, device=self.device)
            )
        if self._bad is not None and bool(self._bad):
            where = self._bad_where or "another process's shard"
            raise NonFiniteLoss(
                f"loss became NaN or inf in the epoch ending at {where}; "
                f"{self._kept}; try a lower learning rate"
            )
        self._bad, self._bad_where = None, ""

    def update(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.Tensor] | None = None,
        *,
        clip: bool = True,
    ) -> torch.Tensor | None:
        """Backward, average gradients over the ranks (under ``torchrun``), clip the gradient
        norm of ``params``, step.

        Returns the gradient norm clipping measured (a 0-dim tensor on the parameters' device,
        read by no one here, so no host-device sync), or None when nothing was clipped; see
        :meth:`clip_factor`.
        """
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if ddp.is_distributed():
            ddp.average_gradients(p for group in optimizer.param_groups for p in group["params"])
        norm = None
        if clip and self.grad_clip > 0 and params:
            norm = nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()
        if self._compile_clock is not None:
            self._compile_clock.tick()
        return norm

    def clip_factor(self, norm: torch.Tensor | None) -> torch.Tensor | float:
        """The factor :meth:`update` scaled the gradients by, from the norm it returned."""
        if norm is None:
            return 1.0
        # clip_grad_norm_'s own factor: max_norm / (norm + 1e-6), at most 1.
        return torch.clamp(self.grad_clip / (norm + 1e-6), max=1.0)

    @torch.no_grad()
    def evaluate(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        split: str,
        module: nn.Module | None = None,
    ) -> dict[str, float]:
        """Metrics of ``forward`` on ``split`` (``module`` is switched to eval mode meanwhile).

        Under ``torchrun`` every rank evaluates the whole split, after averaging ``module``'s
        BatchNorm statistics over the ranks, so every rank gets the same metrics.
        """
        was_training = module.training if module is not None else False
        if module is not None:
            ddp.sync_buffers(module)
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
        """An accumulator of training metrics; under ``torchrun`` it reports all ranks' shards."""
        return _AllRanksMetrics(self.objective)

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
        self._kept = "no checkpoint was written"
        if self.run is not None and ckpt is not None:
            _load_checkpoint(self.run.checkpoint_path(phase), ckpt, state, phase)
            start = int(ckpt["epoch"])
            self._kept = f"the last good checkpoint ({phase} epoch {start}) is kept"
            if start < n:
                self.log("resume", phase=phase, epoch=start)
        for epoch in range(start, n):
            yield epoch
            self._raise_if_bad()
            if ddp.is_distributed():
                for obj in state.values():
                    if isinstance(obj, nn.Module):
                        ddp.sync_buffers(obj)  # every rank ends the epoch in the checkpointed state
                self._align_rng(phase, epoch)
            if self.run is not None:
                saved = {name: obj.state_dict() for name, obj in state.items()}
                bad = non_finite(saved)
                if bad is not None:
                    raise NonFiniteLoss(
                        f"NaN or inf in {bad} at the end of {phase} epoch "
                        f"{epoch + 1}, not checkpointed; {self._kept}; try a "
                        f"lower learning rate"
                    )
                self.run.save_checkpoint(
                    phase, {"epoch": epoch + 1, "epochs": n, "state": saved, "rng": get_rng_state()}
                )
                self._kept = f"the last good checkpoint ({phase} epoch {epoch + 1}) is kept"

    def _align_rng(self, phase: str, epoch: int) -> None:
        """Check that every rank's random generators are in the same state; if not, take rank
        0's and say so.

        Ranks draw the same samples (Gumbel noise, random paths) only while they consume the same
        randomness; a plugin that draws per-rank randomness would break that silently.
        """
        digests = ddp.gather_object(rng_digest())
        if len(set(digests)) > 1:
            set_rng_state(ddp.broadcast_object(get_rng_state()))
            self.log("rng_resync", phase=phase, epoch=epoch + 1)
            if ddp.rank() == 0:
                print(
                    f"nasplug: warning: the processes' random generators diverged during "
                    f"{phase} epoch {epoch + 1} (random samples were not shared); realigned "
                    f"to rank 0",
                    file=sys.stderr,
                )

    def log(self, event: str, **fields: Any) -> None:
        if self.run is not None:
            self.run.log(event, **fields)
        if self.sink is not None:
            self.sink(event, fields)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def progress(self, iterable: Any, total: int, desc: str) -> Any:
        if self.quiet:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(
            iterable,
            total=total,
            desc=desc,
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5,
        )

    # ---- training a discrete network --------------------------------------------------------
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
        """Train a discrete network from scratch with SGD + cosine; evaluate after every epoch.

        ``report(epoch, metrics)`` is called after each epoch (Optuna pruning raises from it).
        Models with a ``drop_path_prob`` attribute get it ramped linearly to ``drop_path``; models
        that set ``aux_logits`` during training get the auxiliary loss weighted by ``aux_weight``.
        Training batches of images are augmented as the trainer's ``augment`` says, plus cutout
        of a ``cutout`` square (None: half the image side unless ``augment`` is off; 0: none).
        Returns the per-epoch history.
        """
        cut = self.cutout_size(cutout)
        model = self.place(model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        memo = Memo(history=[])
        steps = self.steps(train_split, batch_size)
        t0 = time.time()
        for epoch in self.epochs(
            epochs, {"model": model, "opt": opt, "sched": sched, "memo": memo}, phase
        ):
            if hasattr(model, "drop_path_prob"):
                prob = drop_path * epoch / max(epochs, 1)
                model.drop_path_prob = prob  # type: ignore[assignment]  # torch hints Tensor | Module; any value is set
            model.train()
            train_m = self.metrics()
            batches = self.batches(train_split, batch_size, epoch=epoch, cutout=cut)
            for x, t in self.progress(batches, steps, f"{phase} {epoch + 1}/{epochs}"):
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
            train = train_m.compute()
            evaluated = self.evaluate(model, eval_split, module=model)
            rec = {
                "epoch": epoch + 1,
                "train": train,
                eval_split: evaluated,
                "seconds": time.time() - t0,
            }
            memo["history"].append(rec)
            self.log("train_epoch", phase=phase, **rec)
            self.say(f"{phase} epoch {epoch + 1}/{epochs}: " + _fmt(evaluated))
            if report is not None:
                report(epoch, evaluated)
        return list(memo["history"])


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _one_of(option: str, value: Any, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise ValueError(f"{option}={value!r} is not accepted; accepted: {', '.join(accepted)}")
    return value


class _AllRanksMetrics(Metrics):
    """Metrics whose ``compute`` first sums every rank's accumulators (a no-op in one process),
    so that every rank reports the metrics of the whole global batches."""

    _reduced = False

    def compute(self) -> dict[str, float]:
        if ddp.is_distributed() and not self._reduced:
            self._reduced = True
            ddp.sum_tensors([self.sums[k] for k in sorted(self.sums)])
            self.n = sum(ddp.gather_object(self.n))
            if self._scores:  # equal shards: every rank holds as many rows
                self._scores = [torch.cat(ddp.gather_tensor(torch.cat(self._scores)))]
                self._labels = [torch.cat(ddp.gather_tensor(torch.cat(self._labels)))]
        return super().compute()


_CHECKPOINT_KEYS = {"epoch": int, "state": dict, "rng": dict}


def _load_checkpoint(path: Any, ckpt: Any, state: Mapping[str, Any], phase: str) -> None:
    """Restore ``state`` and the generators from ``ckpt``, or raise one line of RunError."""
    lacks = [
        k
        for k, t in _CHECKPOINT_KEYS.items()
        if not isinstance(ckpt, dict)
        or not isinstance(ckpt.get(k), t)
        or isinstance(ckpt.get(k), bool)
    ]
    if lacks:
        raise RunError(
            f"checkpoint {path} is not a nasplug checkpoint (it lacks "
            f"{', '.join(repr(k) for k in lacks)}; accepted: a dict with epoch, state "
            f"and rng); delete it to redo phase {phase!r} from its start"
        )
    bad = non_finite(ckpt["state"])
    if bad is not None:
        raise RunError(
            f"checkpoint {path} holds NaN or inf in {bad}; delete it to redo its "
            f"phase from the start"
        )
    for name, obj in state.items():
        if name in ckpt["state"]:
            try:
                obj.load_state_dict(ckpt["state"][name])
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
                raise RunError(
                    f"checkpoint {path} does not fit this run's {name!r} (were "
                    f"config.json or a plugin changed since it was written?): "
                    f"{one_line(e)}"
                ) from e
    try:
        set_rng_state(ckpt["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        raise RunError(
            f"checkpoint {path} holds a damaged random state ({type(e).__name__}); "
            f"delete it to redo its phase from the start"
        ) from e


def non_finite(state: Any) -> str | None:
    """The name of the first NaN or inf in a checkpoint's state (floating tensors, and numbers
    stored under a key naming a loss), or None when all are finite.

    One host-device sync per device, however many tensors.
    """
    tensors: list[tuple[str, torch.Tensor]] = []
    for name, v in _leaves(state, ""):
        if isinstance(v, float):
            if not math.isfinite(v):
                return name
        elif v.is_floating_point() or v.is_complex():
            tensors.append((name, v))
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, t in tensors:
        by_device.setdefault(t.device, []).append((name, t))
    for group in by_device.values():
        ok = torch.stack([torch.isfinite(t).all() for _, t in group])
        if not bool(ok.all()):
            return group[int((~ok).nonzero()[0])][0]
    return None


def _leaves(state: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(state, torch.Tensor):
        yield where or "a tensor", state
    elif isinstance(state, Mapping):
        for k, v in state.items():
            name = f"{where}.{k}" if where else str(k)
            if isinstance(v, float) and "loss" in str(k):
                yield name, v
            else:
                yield from _leaves(v, name)
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from _leaves(v, f"{where}[{i}]")


class _CompileClock:
    """Estimates the compile time of modules compiled by :meth:`Trainer.place`.

    The first ``FIRST`` updates after placing compile the graphs (forward and backward of both
    half-steps of a search, an evaluation, and the recompilations that follow the first changes
    of the mixing weights); the ``LATER`` updates after them run compiled. Compile time = the
    time of the first updates minus as many updates at the later pace. Recompilations after
    that (a new set of skipped candidates) are not counted.
    """

    FIRST, LATER = 6, 2

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.marks = [time.perf_counter()]

    def tick(self) -> None:
        total = self.FIRST + self.LATER
        if len(self.marks) > total:
            return
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)  # only for the first few updates
        self.marks.append(time.perf_counter())
        if len(self.marks) == total + 1:
            first = self.marks[self.FIRST] - self.marks[0]
            pace = (self.marks[total] - self.marks[self.FIRST]) / self.LATER
            seconds = first - self.FIRST * pace
            self.trainer.log(
                "compile",
                backend=self.trainer.compile,
                seconds=seconds,
                first_updates_seconds=first,
                update_seconds=pace,
            )
            self.trainer.say(
                f"torch.compile ({self.trainer.compile}): about {seconds:.1f}s "
                f"compiling (first {self.FIRST} updates {first:.2f}s, then "
                f"{pace:.3f}s per update)"
            )


def _fmt(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
