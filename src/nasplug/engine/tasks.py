"""Loss and metrics per task kind, accumulated on the device (one host transfer per evaluation)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nasplug.core.types import Task
from nasplug.engine import stats

__all__ = ["Metrics", "Objective"]


class Objective:
    """The loss and target handling of a task, fitted on the train split.

    Regression targets are standardised with the train split's mean and std for training;
    metrics are reported in the original units.
    """

    def __init__(self, task: Task, y_train: torch.Tensor) -> None:
        self.task = task
        self.y_mean: torch.Tensor | None = None
        self.y_std: torch.Tensor | None = None
        if task.kind == "regression":
            y = y_train.float().reshape(len(y_train), -1)
            self.y_mean = y.mean(0)
            self.y_std = y.std(0).clamp_min(1e-8)

    def to(self, device: torch.device) -> Objective:
        if self.y_mean is not None and self.y_std is not None:
            self.y_mean, self.y_std = self.y_mean.to(device), self.y_std.to(device)
        return self

    def target_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The train split's target mean and std, by which regression targets are standardised."""
        if self.y_mean is None or self.y_std is None:
            raise ValueError(
                f"a {self.task.kind} task has no target scale; only regression has one"
            )
        return self.y_mean, self.y_std

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets as the loss wants them (standardised for regression)."""
        if self.task.kind == "regression":
            mean, std = self.target_scale()
            return (y.float().reshape(len(y), -1) - mean) / std
        if self.task.kind == "multilabel":
            return y.float()
        return y.long()

    def loss(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Loss of outputs against prepared targets (see :meth:`targets`)."""
        out = out.float()
        if self.task.kind == "classification":
            return F.cross_entropy(out, t)
        if self.task.kind == "regression":
            return F.mse_loss(out, t)
        return F.binary_cross_entropy_with_logits(out, t)

    def metrics(self) -> Metrics:
        return Metrics(self)


class Metrics:
    """Accumulates a task's metrics over batches without host-device syncs until ``compute``."""

    def __init__(self, objective: Objective) -> None:
        self.obj = objective
        self.kind = objective.task.kind
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    @torch.no_grad()
    def update(self, out: torch.Tensor, t: torch.Tensor) -> None:
        """Add a batch of outputs and prepared targets."""
        out = out.float()
        n = len(t)
        self.n += n
        self._add("loss", self.obj.loss(out, t).detach() * n)
        if self.kind == "classification":
            self._add("correct", (out.argmax(1) == t).sum())
        elif self.kind == "regression":
            # Sums of standardised values keep float32 accurate; R2 is unchanged by the affine
            # map and the squared error is scaled back to original units in compute().
            self._add("sse", ((out - t) ** 2).sum(0))
            self._add("sy", t.sum(0))
            self._add("syy", (t * t).sum(0))
        else:
            self._add("exact", ((out > 0) == (t > 0.5)).all(1).sum())
            self._scores.append(out.detach())
            self._labels.append(t.detach())

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            return {}
        s = {k: v.double().cpu() for k, v in self.sums.items()}
        n = self.n
        res = {"loss": float(s["loss"]) / n}
        if self.kind == "classification":
            res["accuracy"] = float(s["correct"]) / n
        elif self.kind == "regression":
            sst = s["syy"] - s["sy"] ** 2 / n
            r2 = 1 - s["sse"] / sst.clamp_min(1e-12)
            res["r2"] = float(r2.mean())
            sse = s["sse"] * self.obj.target_scale()[1].double().cpu() ** 2
            res["rmse"] = math.sqrt(float(sse.sum()) / (n * len(sse)))
        else:
            res["bce"] = res["loss"]
            res["exact_match"] = float(s["exact"]) / n
            res["auroc"] = _mean_auroc(torch.cat(self._scores).cpu(), torch.cat(self._labels).cpu())
        return res


def _mean_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over labels of the ROC AUC (rank statistic, ties averaged); labels with one class skipped."""
    aucs = []
    for j in range(labels.shape[1]):
        y = labels[:, j] > 0.5
        pos, neg = int(y.sum()), int((~y).sum())
        if pos == 0 or neg == 0:
            continue
        ranks = torch.tensor(stats.ranks(scores[:, j].tolist()), dtype=torch.float64)
        aucs.append((float(ranks[y].sum()) - pos * (pos + 1) / 2) / (pos * neg))
    return sum(aucs) / len(aucs) if aucs else float("nan")
