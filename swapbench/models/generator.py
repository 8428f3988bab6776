"""The Swapping Autoencoder's generator: the structure code, modulated by the texture code, is its
spatial input; the texture code modulates every convolution (Park et al. 2020, Fig. 18; the
authors' ``StyleGAN2ResnetGenerator``)."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from swapbench.models.encoder import normalize_code
from swapbench.models.widths import paper_generator_width, uniform_widths
from swapbench.nn.layers import EqualLinear, ModulatedConv2d, StyledResBlock, ToRGB, upsample2x
from swapbench.recipe import COUNT_LIMIT, Section
from swapbench.registry import GENERATORS


class GeneratorConfig(Section):
    """Settings of generator 'swap_ae' (recipe section ``generator``); other generators ignore them."""

    blocks: int = Field(
        2, ge=0, le=COUNT_LIMIT, description="Modulated residual blocks at the structure code's resolution."
    )
    capacity: float = Field(
        1.0, ge=1 / 128, le=64, description="Generator width multiplier (authors' netG_scale_capacity): 128 at the image, "
        "doubling per halving up to 512, times this (model.widths=paper); at least 1/128, so the last layer keeps a "
        "channel, and at most 64."
    )
    noise: bool = Field(
        True, description="Per-pixel noise inputs in the generator's styled convolutions (authors: on); eval mode "
        "uses fixed seeded noise maps so scores and edits are deterministic."
    )
    rgb_every_scale: bool = Field(
        False, description="A ToRGB at every generator scale summed StyleGAN2-style (CPU variant) instead of the "
        "authors' single final ToRGB."
    )
    fourier: int = Field(
        0, ge=0, le=COUNT_LIMIT, description="Fixed sinusoids of image position (this many orientation x frequency pairs, "
        "sine and cosine each) added at every generator scale through a texture-modulated 1x1 convolution, so a texture "
        "code can draw periodic patterns anywhere; 0: none (the authors' generator; swapbench's addition)."
    )


class InputModulation(nn.Module):
    """x * scale(texture) + bias(texture), per channel of the structure code (the authors'
    ``GeneratorModulation``)."""

    def __init__(self, texture_dim: int, channels: int):
        super().__init__()
        self.scale = EqualLinear(texture_dim, channels)
        self.bias = EqualLinear(texture_dim, channels)

    def forward(self, x: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        return x * self.scale(texture)[:, :, None, None] + self.bias(texture)[:, :, None, None]


class PositionalPatterns(nn.Module):
    """Fixed sinusoids of image position, added to the generator's features at every scale through a
    texture-modulated 1x1 convolution per scale (swapbench's ``generator.fourier``, not the
    authors'): with them the texture code can select and weigh periodic patterns, which a convolution
    stack on a coarse structure code otherwise has to invent from the zero padding alone.

    ``pairs`` (orientation, frequency) pairs: frequencies spaced geometrically from 1 to
    ``max_cycles`` cycles per image side, orientations along the golden-angle sequence over [0, pi);
    each gives sin and cos of 2 pi f (x cos a + y sin a) on the pixel-centre grid of [0, 1]^2, so every
    scale sees the same patterns at its own sampling."""

    def __init__(self, pairs: int, widths: list[int], texture_dim: int, max_cycles: float):
        super().__init__()
        k = torch.arange(pairs, dtype=torch.float64)
        cycles = max_cycles ** (k / max(pairs - 1, 1))
        angle = (k * math.pi * (3 - math.sqrt(5))) % math.pi
        self.register_buffer("frequencies", torch.stack([cycles * angle.cos(), cycles * angle.sin()], 1).float(),
                             persistent=False)  # (pairs, 2) cycles per side along x and y
        self.convs = nn.ModuleList(ModulatedConv2d(2 * pairs, w, 1, texture_dim, demodulation="weight")
                                   for w in widths)
        self._maps: dict[tuple[int, torch.device], torch.Tensor] = {}

    def patterns(self, side: int) -> torch.Tensor:
        """(1, 2 * pairs, side, side): the sines, then the cosines."""
        t = (torch.arange(side, dtype=torch.float32, device=self.frequencies.device) + 0.5) / side
        phase = 2 * math.pi * (self.frequencies[:, 0, None, None] * t.view(1, 1, -1)
                               + self.frequencies[:, 1, None, None] * t.view(1, -1, 1))
        return torch.cat([phase.sin(), phase.cos()]).unsqueeze(0)

    def forward(self, scale: int, x: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        # the maps are constants of (side, device): computed once per scale, not at every forward
        key = (x.shape[-1], self.frequencies.device)
        if key not in self._maps:
            self._maps[key] = self.patterns(x.shape[-1])
        p = self._maps[key].expand(x.shape[0], -1, -1, -1)
        return x + self.convs[scale](p, texture)


def generator_widths(resolution: int, upsamplings: int, widths: str, channels: int, max_channels: int,
                     capacity: float) -> list[int]:
    """Width at the structure code (index 0) and after each upsampling (index 1 ... upsamplings)."""
    if widths == "paper":
        return [paper_generator_width(upsamplings - j, capacity) for j in range(upsamplings + 1)]
    table = uniform_widths(resolution, channels, max_channels)
    return [table[resolution >> (upsamplings - j)] for j in range(upsamplings + 1)]


@GENERATORS.register("swap_ae", settings=GeneratorConfig, section="generator",
                     description="SAE generator: texture-modulated structure input, "
                                 "modulated residual blocks, noise, one final ToRGB.")
class SwapGenerator(nn.Module):
    """Both codes are L2-normalised again; the texture code scales and shifts the structure code;
    ``blocks`` modulated residual blocks at the code's resolution widen it gradually; one
    upsampling modulated residual block per halving of the encoder brings it to the image size; a
    final modulated 1x1 ToRGB gives the image (roughly in [-1, 1], not clamped).

    ``rgb_every_scale`` adds a ToRGB after every block, summed StyleGAN2-style (the CPU variant).
    """

    def __init__(self, resolution: int, structure_channels: int, structure_downsample: int, texture_dim: int,
                 blocks: int = 2, widths: str = "paper", channels: int = 32, max_channels: int = 512,
                 capacity: float = 1.0, resample: str = "fir", noise: bool = True,
                 rgb_every_scale: bool = False, fourier: int = 0):
        super().__init__()
        upsamplings = structure_downsample.bit_length() - 1
        ch = generator_widths(resolution, upsamplings, widths, channels, max_channels, capacity)
        block = dict(noise=noise, demodulation="weight", resample=resample, fixed_eval_noise=True)
        self.input_modulation = InputModulation(texture_dim, structure_channels)
        self.blocks = nn.ModuleList()
        width = structure_channels
        for i in range(blocks):  # widen gradually to the code-resolution width
            out = max(structure_channels, round((i + 1) / blocks * ch[0]))
            self.blocks.append(StyledResBlock(width, out, texture_dim, **block))
            width = out
        self.up_blocks = nn.ModuleList()
        for j in range(upsamplings):
            self.up_blocks.append(StyledResBlock(width, ch[j + 1], texture_dim, upsample=True, **block))
            width = ch[j + 1]
        self.rgb_every_scale = rgb_every_scale
        block_widths = [b.conv2.conv.weight.shape[0] for b in [*self.blocks, *self.up_blocks]]  # each block's output
        self.positional = None
        if fourier > 0:
            self.positional = PositionalPatterns(fourier, block_widths, texture_dim, max_cycles=resolution / 4)
        self.to_rgb = ToRGB(width, texture_dim)
        if rgb_every_scale:
            self.to_rgbs = nn.ModuleList(ToRGB(w, texture_dim) for w in block_widths[:-1])

    def forward(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        structure, texture = normalize_code(structure), normalize_code(texture)
        x = self.input_modulation(structure, texture)
        if not self.rgb_every_scale:
            for i, block in enumerate([*self.blocks, *self.up_blocks]):
                x = self._positional(i, block(x, texture), texture)
            return self.to_rgb(x, texture)
        blocks = [*self.blocks, *self.up_blocks]
        rgb = None
        for i, (block, to_rgb) in enumerate(zip(blocks, [*self.to_rgbs, self.to_rgb])):
            x = self._positional(i, block(x, texture), texture)
            if rgb is not None and rgb.shape[-1] != x.shape[-1]:
                rgb = upsample2x(rgb)
            rgb = to_rgb(x, texture) if rgb is None else to_rgb(x, texture) + rgb
        return rgb

    def _positional(self, i: int, x: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        return x if self.positional is None else self.positional(i, x, texture)
