"""Hand-designed baselines, trained the same way as searched networks (``nasplug train --baseline``).

``resnet`` is sized for the input: the CIFAR ResNet-20 of He et al. (2016) for images (three
stages of basic blocks, 16/32/64 channels), and a residual MLP for vectors.
"""

from __future__ import annotations

import torch
from torch import nn

from nasplug.core.types import Task

__all__ = ["BASELINES", "ResNet", "ResidualMLP", "baseline"]

BASELINES: tuple[str, ...] = ("resnet",)


def baseline(
    name: str, task: Task, *, channels: int | None = None, layers: int | None = None
) -> nn.Module:
    """The baseline ``name`` for ``task``.

    Args:
        channels: width of the first stage (images, default 16) or of the MLP (default 128).
        layers: residual blocks per stage (images, default 3: ResNet-20) or in the MLP
            (default 3).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; accepted: {', '.join(BASELINES)}")
    if (channels is not None and channels < 1) or (layers is not None and layers < 1):
        raise ValueError("baseline channels and layers must be positive")
    if len(task.input_shape) == 3:
        return ResNet(task.input_shape[0], task.outputs, width=channels or 16, blocks=layers or 3)
    if len(task.input_shape) == 1:
        return ResidualMLP(
            task.input_shape[0], task.outputs, width=channels or 128, blocks=layers or 3
        )
    raise ValueError(
        f"no {name} baseline for input shape {tuple(task.input_shape)}; "
        f"accepted: images (C, H, W) or vectors (D,)"
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm, added to a (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: a 3x3 stem, three stages (the last two halve the resolution), pooling.

    With ``blocks=3`` it has 6 * 3 + 2 = 20 layers (ResNet-20); any image size works.
    """

    def __init__(self, in_channels: int, outputs: int, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        c = width
        for stage in range(3):
            c_out = width * 2**stage
            for b in range(blocks):
                layers.append(BasicBlock(c, c_out, 2 if stage > 0 and b == 0 else 1))
                c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class ResidualMLP(nn.Module):
    """A linear embedding, pre-norm residual blocks of two dense layers, and a linear head.

    LayerNorm rather than BatchNorm: tabular batches can be tiny, even a single row.
    """

    def __init__(self, in_features: int, outputs: int, width: int = 128, blocks: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
            )
            for _ in range(blocks)
        )
        self.head = nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)
