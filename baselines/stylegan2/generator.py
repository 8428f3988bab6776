"""StyleGAN2's generator (Karras et al. 2020) built from swapbench's layers.

mapping: z -> pixel norm -> ``mapping_layers`` equalised linear layers (learning rate x0.01) -> w,
with a running mean of w for truncation. synthesis: a learned 4x4 constant, then per resolution an
upsampling styled conv and a styled conv (each with a per-pixel noise input) and a ToRGB output
summed over resolutions (the skip architecture). Every styled layer reads its own w from a W+
tensor (N, num_ws, w_dim), so W, W+ and style mixing are all just different W+ tensors.

Layer k of W+: 0 is the 4x4 conv, 1 the 4x4 ToRGB; level i (8 px, 16 px, ...) uses 1 + 2i (upsampling
conv), 2 + 2i (conv) and 3 + 2i (its ToRGB, shared with the next level's first conv in the
reference implementation's counting), so num_ws = 2 + 2 x levels (10 at 64 px, 14 at 256 px).
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.stylegan2.settings import StyleGAN2Config
from swapbench.models.build import model_settings
from swapbench.nn.layers import EqualLinear, StyledConv, ToRGB, channel_table
from swapbench.registry import GENERATORS, MODELS


class MappingNetwork(nn.Module):
    def __init__(self, w_dim: int, layers: int, lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.net = nn.Sequential(*(EqualLinear(w_dim, w_dim, lr_mul=lr_mul, activate=True) for _ in range(layers)))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.w_avg_beta = w_avg_beta

    def forward(self, z: torch.Tensor, truncation: float = 1.0, track_w_avg: bool = False) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        w = self.net(z)
        if track_w_avg:
            self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation != 1.0:
            w = self.w_avg.lerp(w, truncation)
        return w


@GENERATORS.register("stylegan2", settings=StyleGAN2Config,
                     description="StyleGAN2 generator (baselines/): mapping network, constant input, noise, skip ToRGBs.")
class StyleGAN2Generator(nn.Module):
    def __init__(self, resolution: int, channels: int, max_channels: int, w_dim: int = 512, mapping_layers: int = 8,
                 mapping_lr_mul: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        ch = channel_table(resolution, channels, max_channels, min_resolution=4)
        self.resolution, self.w_dim = resolution, w_dim
        self.mapping = MappingNetwork(w_dim, mapping_layers, mapping_lr_mul, w_avg_beta)
        self.const = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv4 = StyledConv(ch[4], ch[4], 3, w_dim, noise=True)
        self.rgb4 = ToRGB(ch[4], w_dim)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noise_sides = [4]
        res = 4
        while res < resolution:
            self.convs.append(StyledConv(ch[res], ch[res * 2], 3, w_dim, upsample=True, noise=True))
            self.convs.append(StyledConv(ch[res * 2], ch[res * 2], 3, w_dim, noise=True))
            self.to_rgbs.append(ToRGB(ch[res * 2], w_dim))
            self.noise_sides += [res * 2, res * 2]
            res *= 2
        self.num_ws = 2 + 2 * len(self.to_rgbs)
        # fixed noise maps for deterministic synthesis ('const' mode), part of the state dict
        g = torch.Generator().manual_seed(0)
        for i, side in enumerate(self.noise_sides):
            self.register_buffer(f"noise_const_{i}", torch.randn(1, 1, side, side, generator=g))

    def const_noise(self) -> list[torch.Tensor]:
        return [getattr(self, f"noise_const_{i}") for i in range(len(self.noise_sides))]

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """(N, w_dim) w -> (N, num_ws, w_dim) W+ with the same w at every layer."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesis(self, ws: torch.Tensor, noise: list[torch.Tensor] | str = "random") -> torch.Tensor:
        """Image in about [-1, 1] from W+ ``ws``; ``noise`` is a list of maps (one per noise side, batch
        N or 1), or 'random' (fresh draws), 'const' (the stored maps) or 'none' (zeros)."""
        if isinstance(noise, str):
            if noise not in ("random", "const", "none"):
                raise ValueError(f"noise must be a list of maps or 'random', 'const', 'none', not {noise!r}")
            noise = (self.const_noise() if noise == "const"
                     else [None] * len(self.noise_sides) if noise == "random"
                     else [torch.zeros_like(n) for n in self.const_noise()])
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.conv4(x, ws[:, 0], noise[0])
        rgb = self.rgb4(x, ws[:, 1])
        for i, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * i](x, ws[:, 1 + 2 * i], noise[1 + 2 * i])
            x = self.convs[2 * i + 1](x, ws[:, 2 + 2 * i], noise[2 + 2 * i])
            rgb = to_rgb(x, ws[:, 3 + 2 * i], skip=rgb)
        return rgb

    def forward(self, z: torch.Tensor, truncation: float = 1.0, noise: list[torch.Tensor] | str = "random") -> torch.Tensor:
        return self.synthesis(self.broadcast(self.mapping(z, truncation)), noise)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation: float = 1.0, batch_size: int = 32) -> torch.Tensor:
        """``n`` images from seeded z and the stored noise maps (the same ``seed`` gives the same images)."""
        device = self.const.device
        z = torch.randn(n, self.w_dim, generator=torch.Generator().manual_seed(seed))
        return torch.cat([self(z[i : i + batch_size].to(device), truncation, noise="const").float().cpu()
                          for i in range(0, n, batch_size)])


def style_mix(ws_a: torch.Tensor, ws_b: torch.Tensor, crossover: int) -> torch.Tensor:
    """W+ with layers [0, crossover) from A (coarse: layout, pose) and [crossover, num_ws) from B (fine: texture, colour)."""
    if not 1 <= crossover < ws_a.shape[1]:
        raise ValueError(f"crossover {crossover} must lie in [1, {ws_a.shape[1] - 1}] for {ws_a.shape[1]} layers")
    return torch.cat([ws_a[:, :crossover], ws_b[:, crossover:]], dim=1)


def default_crossover(num_ws: int, crossover: int | None) -> int:
    """The recipe's crossover layer, or half the layers when it gives none."""
    return num_ws // 2 if crossover is None else crossover


@MODELS.register("stylegan2", checkpoint_key="generator",
                 description="StyleGAN2's generator (mapping and synthesis networks); its EMA copy is scored.")
def build_generator(recipe) -> nn.Module:
    """The recipe's StyleGAN2-style generator (``model.generator``) with its ``stylegan2`` settings."""
    return GENERATORS.build_from(recipe.model.generator, model_settings(recipe), recipe.sections())
