"""Building blocks shared by every swapbench network (and by baselines/).

StyleGAN2's layers in plain PyTorch: equalised learning rate (weights drawn from N(0, 1) and scaled
at run time by He's constant), leaky ReLU with a sqrt(2) gain, modulated convolution with
demodulation, styled convolutions, ToRGB skip outputs and residual blocks.

Two choices differ from the StyleGAN2 reference for the sake of the CPU, both standard:
- resampling is a 2x2 average pool (down) and bilinear interpolation (up) instead of the [1,3,3,1]
  FIR blur, whose one-channel convolutions run far below the convolution peak on CPUs;
- modulated convolutions scale activations rather than weights (StyleGAN2-ADA's
  ``fused_modconv=False`` path): x * s -> shared conv -> * d is the same function as a grouped
  conv with per-sample demodulated weights, but runs as one ordinary convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def leaky_relu_gain(x: torch.Tensor, bias: torch.Tensor | None = None, slope: float = 0.2) -> torch.Tensor:
    """Bias, leaky ReLU and StyleGAN2's sqrt(2) gain that keeps activations at unit variance."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, slope) * SQRT2


def channel_table(resolution: int, channels: int, max_channels: int, min_resolution: int = 1) -> dict[int, int]:
    """Width per feature-map side: ``channels`` at ``resolution``, doubling per halving, capped.

    The same table serves 32 px on a laptop and 512 px on a GPU: depth follows from the number of
    halvings, width from the base width.
    """
    table, res = {}, resolution
    while res >= min_resolution:
        table[res] = min(max_channels, channels * (resolution // res))
        res //= 2
    return table


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate and optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        out = F.linear(x, self.weight * self.scale, bias)
        return leaky_relu_gain(out) if self.activate else out

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, activate={self.activate}"


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate; 'same' padding by zeros or reflection, or none."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 padding: str = "zeros", bias: bool = True):
        super().__init__()
        if padding not in ("zeros", "reflect", "valid"):
            raise ValueError(f"padding must be 'zeros', 'reflect' or 'valid', got {padding!r}")
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.stride = stride
        self.padding = padding
        self.pad = 0 if padding == "valid" else kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.pad
        if self.padding == "reflect" and pad:
            x = F.pad(x, [pad] * 4, mode="reflect")
            pad = 0
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=pad)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i} -> {o}, k={k}, stride={self.stride}, padding={self.padding}"


class ConvLayer(nn.Module):
    """[2x average-pool] -> equalised conv -> [bias + leaky ReLU gain].

    Pooling before the convolution makes a downsampling layer cost a quarter of a full-resolution
    convolution, like StyleGAN2's blur + stride-2 convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, downsample: bool = False,
                 activate: bool = True, bias: bool = True, padding: str = "zeros"):
        super().__init__()
        self.downsample = downsample
        self.activate = activate
        self.conv = EqualConv2d(in_ch, out_ch, kernel_size, padding=padding, bias=bias and not activate)
        self.act_bias = nn.Parameter(torch.zeros(out_ch)) if (activate and bias) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            x = downsample2x(x)
        x = self.conv(x)
        return leaky_relu_gain(x, self.act_bias) if self.activate else x


class ResBlock(nn.Module):
    """Residual block of the encoder and discriminators: two 3x3 convs and a 1x1 skip, halving the side."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = True, padding: str = "zeros"):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, padding=padding)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=downsample, padding=padding)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=downsample, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution: per-sample input scaling by an affine map of the style,
    then (optionally) demodulation so each output channel has unit expected variance."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.affine = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate = demodulate
        self.upsample = upsample
        self.pad = kernel_size // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)  # (N, in)
        w = self.weight * self.scale
        if self.upsample:
            x = upsample2x(x)
        out = F.conv2d(x * s[:, :, None, None], w, padding=self.pad)
        if self.demodulate:
            # d[n, o] = 1 / sqrt(sum_{i,k} (w[o, i, k] * s[n, i])^2 + eps)
            d = torch.rsqrt(s.square() @ w.square().sum(dim=(2, 3)).t() + 1e-8)
            out = out * d[:, :, None, None]
        return out

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i} -> {o}, k={k}, demodulate={self.demodulate}, upsample={self.upsample}"


class StyledConv(nn.Module):
    """Modulated conv -> [+ per-pixel noise x learned strength] -> bias -> leaky ReLU gain.

    With ``noise=True`` (StyleGAN2's noise inputs; the Swapping Autoencoder has none) ``forward``
    takes an explicit (N or 1, 1, H, W) noise map, or draws a fresh one when given None.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 noise: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros(())) if noise else None

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, style)
        if self.noise_strength is not None:
            if noise is None:
                noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        return leaky_relu_gain(x, self.bias)


class StyledResBlock(nn.Module):
    """Residual block of the generator: two styled convs (the first may upsample) and a 1x1 skip."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.conv1 = StyledConv(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.conv2 = StyledConv(out_ch, out_ch, 3, style_dim)
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False) if (in_ch != out_ch or upsample) else None

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.conv1(x, style), style)
        skip = upsample2x(x) if self.upsample else x
        if self.skip is not None:
            skip = self.skip(skip)
        return (h + skip) / SQRT2


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation, added to the upsampled RGB of the level below."""

    def __init__(self, in_ch: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias.view(1, 3, 1, 1)
        if skip is not None:
            out = out + upsample2x(skip)
        return out


class MinibatchStdDev(nn.Module):
    """Appends the mean standard deviation over groups of samples as one extra feature map."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        y = x.view(g, n // g, c, h, w)
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (n // g,)
        y = y.view(1, n // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, y], dim=1)
