"""The Swapping Autoencoder's encoder: one image in, a spatial structure code and a texture vector out."""

from __future__ import annotations

import math

import torch
from torch import nn

from swapbench.nn.layers import ConvLayer, EqualLinear, ResBlock, channel_table
from swapbench.registry import ENCODERS


@ENCODERS.register("swap_ae", description="SAE encoder: residual trunk, 1x1 structure head, pooled texture head.")
class SwapEncoder(nn.Module):
    """Shared residual trunk down to 1/``structure_downsample`` of the image side, then

    - a structure head of two 1x1 convs giving ``structure_channels`` maps at that resolution, and
    - a texture head of (up to two, as the map size allows) downsampling 3x3 convs with reflection padding, global average
      pooling and a linear layer giving a ``texture_dim`` vector.

    Images are expected in [-1, 1].
    """

    def __init__(self, resolution: int, channels: int, max_channels: int, structure_channels: int,
                 structure_downsample: int, texture_dim: int):
        super().__init__()
        ch = channel_table(resolution, channels, max_channels)
        code_res = resolution // structure_downsample
        self.stem = ConvLayer(3, ch[resolution], 1)
        blocks, res = [], resolution
        while res > code_res:
            blocks.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.trunk = nn.Sequential(*blocks)
        trunk_ch = ch[code_res]
        self.structure_head = nn.Sequential(
            ConvLayer(trunk_ch, trunk_ch, 1),
            ConvLayer(trunk_ch, structure_channels, 1, activate=False),
        )
        texture_layers, tex_ch = [], trunk_ch
        # each layer pools then convolves; reflection padding needs a map of at least 2x2 after pooling
        for _ in range(min(2, int(math.log2(code_res)) - 1)):
            out_ch = min(tex_ch * 2, max(max_channels, trunk_ch))
            texture_layers.append(ConvLayer(tex_ch, out_ch, 3, downsample=True, padding="reflect"))
            tex_ch = out_ch
        self.texture_head = nn.Sequential(*texture_layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.texture_out = EqualLinear(tex_ch, texture_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(self.stem(image))
        structure = self.structure_head(features)
        texture = self.texture_out(self.texture_head(features))
        return structure, texture
