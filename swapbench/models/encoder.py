"""The Swapping Autoencoder's encoder: one image in, a spatial structure code and a texture vector
out, both L2-normalised (Park et al. 2020, Fig. 18; the authors' ``StyleGAN2ResnetEncoder``)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from swapbench.models.widths import paper_encoder_widths, uniform_widths
from swapbench.nn.layers import ConvLayer, EqualLinear, ResBlock
from swapbench.recipe import Section
from swapbench.registry import ENCODERS

ENCODER_BLUR = (1, 2, 1)  # the authors' light anti-aliasing kernel of the encoder trunk


def normalize_code(code: torch.Tensor) -> torch.Tensor:
    """Scale each sample's code to unit L2 norm over its channels (per position for a spatial code)."""
    return code * torch.rsqrt(code.square().sum(dim=1, keepdim=True) + 1e-8)


class EncoderConfig(Section):
    """Settings of encoder 'swap_ae' (recipe section ``encoder``); other encoders ignore them."""

    capacity: float = Field(
        1.0, ge=1 / 32, le=64, description="Encoder width multiplier (authors' netE_scale_capacity): round(32 x this) at full "
        "resolution, doubling per downsampling, capped at model.texture_dim (model.widths=paper); at least 1/32, so the "
        "first layer keeps a channel, and at most 64."
    )
    padding: Literal["reflect", "zeros"] = Field(
        "reflect", description="Padding of the encoder trunk's 3x3 convolutions: reflection (authors) or zeros."
    )
    texture_convs: int = Field(
        2, ge=0, le=16, description="Unpadded stride-2 3x3 convolutions of the encoder's texture branch before its global "
        "mean (authors' netE_num_downsampling_gl); each needs a map of at least 3 px."
    )


def encoder_widths(resolution: int, steps: int, texture_convs: int, texture_dim: int, widths: str,
                   channels: int, max_channels: int, capacity: float) -> list[int]:
    """Widths of the stem and after each of the ``steps`` trunk and ``texture_convs`` texture halvings."""
    if widths == "paper":
        return paper_encoder_widths(steps + texture_convs, capacity, texture_dim)
    table = uniform_widths(resolution, channels, max_channels)
    trunk = [table[resolution >> i] for i in range(steps + 1)]
    for _ in range(texture_convs):  # the texture branch keeps doubling, capped at the trunk's cap
        trunk.append(min(trunk[-1] * 2, max(max_channels, trunk[steps])))
    return trunk


@ENCODERS.register("swap_ae", settings=EncoderConfig, section="encoder",
                   description="SAE encoder: blurred reflection-padded residual trunk, "
                               "structure and texture branches, unit-norm codes.")
class SwapEncoder(nn.Module):
    """A 1x1 stem and residual blocks halving the side ``log2(structure_downsample)`` times, then

    - a structure branch of two 1x1 convs giving ``structure_channels`` maps at that resolution, and
    - a texture branch of ``texture_convs`` unpadded stride-2 3x3 convs, a global mean and a linear
      layer giving a ``texture_dim`` vector.

    Both codes are L2-normalised (over channels, per position for the structure code). Images are
    expected in [-1, 1] and may be any size divisible by ``structure_downsample``.
    """

    def __init__(self, resolution: int, structure_channels: int, structure_downsample: int, texture_dim: int,
                 widths: str = "paper", channels: int = 32, max_channels: int = 512, capacity: float = 1.0,
                 resample: str = "fir", padding: str = "reflect", texture_convs: int = 2):
        super().__init__()
        steps = structure_downsample.bit_length() - 1
        ch = encoder_widths(resolution, steps, texture_convs, texture_dim, widths, channels, max_channels,
                            capacity)
        self.stem = ConvLayer(3, ch[0], 1)
        self.trunk = nn.Sequential(*(
            ResBlock(ch[i], ch[i + 1], padding=padding, resample=resample, blur=ENCODER_BLUR)
            for i in range(steps)
        ))
        self.structure_head = nn.Sequential(
            ConvLayer(ch[steps], ch[steps], 1),
            ConvLayer(ch[steps], structure_channels, 1, activate=False),
        )
        self.texture_head = nn.Sequential(*(
            ConvLayer(ch[i], ch[i + 1], 3, downsample=True, padding="valid", resample="fir", blur=(1,))
            for i in range(steps, steps + texture_convs)
        ))
        self.texture_out = EqualLinear(ch[-1], texture_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(self.stem(image))
        structure = self.structure_head(features)
        texture = self.texture_out(self.texture_head(features).mean(dim=(2, 3)))
        return normalize_code(structure), normalize_code(texture)
