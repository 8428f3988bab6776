"""The Swapping Autoencoder's generator: the structure code is its spatial input, the texture code
modulates every convolution."""

from __future__ import annotations

import torch
from torch import nn

from swapbench.nn.layers import EqualConv2d, StyledResBlock, ToRGB, channel_table
from swapbench.registry import GENERATORS


@GENERATORS.register("swap_ae", description="SAE generator: modulated residual blocks from the structure code up, ToRGB skips.")
class SwapGenerator(nn.Module):
    """1x1 conv lifts the structure code to the trunk width; ``generator_blocks`` modulated residual
    blocks work at the code's resolution; upsampling modulated residual blocks double the side up
    to the image, each with a ToRGB output summed StyleGAN2-style (skip architecture).

    Output is an image in roughly [-1, 1] (not clamped, as in StyleGAN2).
    """

    def __init__(self, resolution: int, channels: int, max_channels: int, structure_channels: int,
                 structure_downsample: int, texture_dim: int, generator_blocks: int = 2):
        super().__init__()
        ch = channel_table(resolution, channels, max_channels)
        res = resolution // structure_downsample
        self.stem = EqualConv2d(structure_channels, ch[res], 1)
        self.blocks = nn.ModuleList(StyledResBlock(ch[res], ch[res], texture_dim) for _ in range(generator_blocks))
        self.to_rgb_first = ToRGB(ch[res], texture_dim)
        self.up_blocks = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        while res < resolution:
            self.up_blocks.append(StyledResBlock(ch[res], ch[res * 2], texture_dim, upsample=True))
            self.to_rgbs.append(ToRGB(ch[res * 2], texture_dim))
            res *= 2

    def forward(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        x = self.stem(structure)
        for block in self.blocks:
            x = block(x, texture)
        rgb = self.to_rgb_first(x, texture)
        for block, to_rgb in zip(self.up_blocks, self.to_rgbs):
            x = block(x, texture)
            rgb = to_rgb(x, texture, skip=rgb)
        return rgb
