import math

import pytest
import torch

from nasplug.core.types import Task
from nasplug.engine.tasks import Objective

sk = pytest.importorskip("sklearn.metrics")


def test_regression_metrics_in_original_units_match_sklearn():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(200, 2, generator=g) * torch.tensor([50.0, 0.1]) + torch.tensor([100.0, -3.0])
    pred = y + torch.randn(200, 2, generator=g) * torch.tensor([10.0, 0.05])
    obj = Objective(Task("regression", (5,), 2), y[:120])
    m = obj.metrics()
    for i in range(0, 200, 64):  # batches, accumulated without host syncs
        t = obj.targets(y[i : i + 64])
        m.update((pred[i : i + 64] - obj.y_mean) / obj.y_std, t)
    res = m.compute()
    assert res["r2"] == pytest.approx(sk.r2_score(y.numpy(), pred.numpy()), rel=1e-5)
    assert res["rmse"] == pytest.approx(
        math.sqrt(sk.mean_squared_error(y.numpy(), pred.numpy())), rel=1e-5
    )


def test_multilabel_metrics_match_sklearn():
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(300, 4, generator=g) > 0.6).float()
    scores = y * 1.5 + torch.randn(300, 4, generator=g)
    obj = Objective(Task("multilabel", (8,), 4), y)
    m = obj.metrics()
    m.update(scores[:150], obj.targets(y[:150]))
    m.update(scores[150:], obj.targets(y[150:]))
    res = m.compute()
    assert res["auroc"] == pytest.approx(
        sk.roc_auc_score(y.numpy(), scores.numpy(), average="macro"), rel=1e-6
    )
    bce = torch.nn.functional.binary_cross_entropy_with_logits(scores, y).item()
    assert res["bce"] == pytest.approx(bce, rel=1e-5)
    assert res["exact_match"] == pytest.approx(
        ((scores > 0) == (y > 0.5)).all(1).float().mean().item()
    )


def test_classification_accuracy():
    obj = Objective(Task("classification", (3,), 3), torch.tensor([0, 1, 2]))
    m = obj.metrics()
    m.update(
        torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]]),
        torch.tensor([0, 1, 2, 2]),
    )
    assert m.compute()["accuracy"] == 0.75
