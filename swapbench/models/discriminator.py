"""StyleGAN2's residual image discriminator."""

from __future__ import annotations

import torch
from torch import nn

from swapbench.nn.layers import ConvLayer, EqualLinear, MinibatchStdDev, ResBlock, channel_table
from swapbench.registry import DISCRIMINATORS


@DISCRIMINATORS.register("stylegan2", description="StyleGAN2 residual discriminator with minibatch stddev.")
class Discriminator(nn.Module):
    """1x1 stem, residual blocks halving the side down to 4x4, minibatch stddev, a 3x3 conv and two
    linear layers to one logit per image."""

    def __init__(self, resolution: int, channels: int, max_channels: int, mbstd_group: int = 4):
        super().__init__()
        ch = channel_table(resolution, channels, max_channels, min_resolution=4)
        self.stem = ConvLayer(3, ch[resolution], 1)
        blocks, res = [], resolution
        while res > 4:
            blocks.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.head = nn.Sequential(nn.Flatten(), EqualLinear(ch[4] * 16, ch[4], activate=True), EqualLinear(ch[4], 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(image))
        x = self.final_conv(self.mbstd(x))
        return self.head(x).squeeze(1)
