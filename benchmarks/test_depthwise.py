"""A 5x5 depthwise convolution on 4x4 maps, forward and backward: ``DepthwiseConv2d`` against
``nn.Conv2d``.

These are the polyphase components of an 8x8 map in ``dil_conv_5x5`` (the last stage of the
default supernet), at the batch the phases give: 4 x 16 and 4 x 64, C=64, channels_last::

    python -m pytest benchmarks/test_depthwise.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import pytest
import torch

from nasplug_builtins.spaces.cell.fast import DepthwiseConv2d

CHANNELS, SIZE, KERNEL = 64, 4, 5


@pytest.mark.parametrize("conv", ["DepthwiseConv2d", "nn.Conv2d"])
@pytest.mark.parametrize("batch", [64, 256])
def test_depthwise_small_map_forward_backward(benchmark, batch, conv):
    benchmark.group = f"5x5 depthwise on {SIZE}x{SIZE} maps, batch {batch}"
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cls = DepthwiseConv2d if conv == "DepthwiseConv2d" else torch.nn.Conv2d
    layer = cls(CHANNELS, CHANNELS, KERNEL, padding=KERNEL // 2, groups=CHANNELS, bias=False)
    layer = layer.to(memory_format=torch.channels_last)
    x = torch.randn(batch, CHANNELS, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad_out = torch.randn_like(x)

    def step() -> None:
        layer(x).backward(grad_out)
        layer.weight.grad = x.grad = None

    benchmark.pedantic(step, warmup_rounds=3, rounds=30)
