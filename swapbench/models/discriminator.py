"""StyleGAN2's residual image discriminator, as the Swapping Autoencoder's authors use it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import nn

from swapbench.models.widths import paper_discriminator_widths, table_side, uniform_widths
from swapbench.nn.layers import ConvLayer, EqualLinear, MinibatchStdDev, ResBlock
from swapbench.recipe import COUNT_LIMIT, Section
from swapbench.registry import DISCRIMINATORS


class DiscriminatorConfig(Section):
    """Settings of image discriminator 'stylegan2' (recipe section ``discriminator``), for every family that
    uses it."""

    capacity: float = Field(
        1.0, ge=1 / 16, le=64, description="Image discriminator width multiplier (authors' netD_scale_capacity; StyleGAN2's "
        "channel multiplier is 2 x this) (model.widths=paper); at least 1/16, so the first layer keeps a channel at "
        "2048 px, and at most 64."
    )
    mbstd: int = Field(
        0, ge=0, le=COUNT_LIMIT, description="Minibatch standard-deviation group size of the image discriminator; 0: "
        "none (authors)."
    )


@DISCRIMINATORS.register("stylegan2", settings=DiscriminatorConfig, section="discriminator",
                         description="StyleGAN2 residual discriminator (authors' widths; minibatch stddev optional).")
class Discriminator(nn.Module):
    """1x1 stem, residual blocks halving the side down to 4x4 (of the nearest power-of-two size: a
    768 px input ends at 3x3, as in the authors' code), [minibatch stddev], a 3x3 conv and two
    linear layers to one logit per image.

    ``widths="paper"``: StyleGAN2's table with channel multiplier 2 x ``capacity`` (128
    channels at 256 px, 512 from 32 px down); ``"uniform"``: ``channel_table(channels, max_channels)``.
    ``mbstd`` (the group size) 0 leaves the minibatch-stddev feature out (the authors' choice).
    """

    def __init__(self, resolution: int, channels: int = 32, max_channels: int = 512, mbstd: int = 0,
                 widths: str = "paper", capacity: float = 1.0, resample: str = "fir"):
        super().__init__()
        side = table_side(resolution)
        if widths == "paper":
            ch = paper_discriminator_widths(resolution, capacity)
        else:
            ch = uniform_widths(side, channels, max_channels, min_resolution=4)
        self.stem = ConvLayer(3, ch[side], 1)
        blocks = []
        while side > 4:
            blocks.append(ResBlock(ch[side], ch[side // 2], resample=resample))
            side //= 2
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStdDev(mbstd) if mbstd else None
        self.final_conv = ConvLayer(ch[4] + (1 if mbstd else 0), ch[4], 3)
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
