"""StyleGAN2's residual image discriminator, as the Swapping Autoencoder's authors use it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from swapbench.models.widths import paper_discriminator_widths, table_side, uniform_widths
from swapbench.nn.layers import ConvLayer, EqualLinear, MinibatchStdDev, ResBlock
from swapbench.registry import DISCRIMINATORS


@DISCRIMINATORS.register("stylegan2",
                         description="StyleGAN2 residual discriminator (authors' widths; minibatch stddev optional).")
class Discriminator(nn.Module):
    """1x1 stem, residual blocks halving the side down to 4x4 (of the nearest power-of-two size: a
    768 px input ends at 3x3, as in the authors' code), [minibatch stddev], a 3x3 conv and two
    linear layers to one logit per image.

    ``widths="paper"``: StyleGAN2's table with channel multiplier 2 x ``discriminator_capacity`` (128
    channels at 256 px, 512 from 32 px down); ``"uniform"``: ``channel_table(channels, max_channels)``.
    ``mbstd_group`` 0 leaves the minibatch-stddev feature out (the authors' choice).
    """

    def __init__(self, resolution: int, channels: int = 32, max_channels: int = 512, mbstd_group: int = 0,
                 widths: str = "paper", discriminator_capacity: float = 1.0, resample: str = "fir"):
        super().__init__()
        side = table_side(resolution)
        if widths == "paper":
            ch = paper_discriminator_widths(resolution, discriminator_capacity)
        else:
            ch = uniform_widths(side, channels, max_channels, min_resolution=4)
        self.stem = ConvLayer(3, ch[side], 1)
        blocks = []
        while side > 4:
            blocks.append(ResBlock(ch[side], ch[side // 2], resample=resample))
            side //= 2
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStdDev(mbstd_group) if mbstd_group else None
        self.final_conv = ConvLayer(ch[4] + (1 if mbstd_group else 0), ch[4], 3)
        final_side = 4 * resolution // table_side(resolution)
        self.head = nn.Sequential(nn.Flatten(), EqualLinear(ch[4] * final_side ** 2, ch[4], activate=True),
                                  EqualLinear(ch[4], 1))

    #: ``forward`` takes ``parts``: several batches judged in one call give each batch the logits that a
    #: call of its own would (the only cross-sample layer, minibatch stddev, keeps to each part).
    judges_parts = True

    def forward(self, image: torch.Tensor, parts: Sequence[int] | None = None) -> torch.Tensor:
        """One logit per image; ``parts``: sizes of the batches concatenated in ``image``."""
        x = self.blocks(self.stem(image))
        if self.mbstd is not None:
            x = self.mbstd(x, parts)
        return self.head(self.final_conv(x)).squeeze(1)
