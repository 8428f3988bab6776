"""Building blocks shared by every swapbench network (and by baselines/).

StyleGAN2's layers in plain PyTorch: equalised learning rate (weights drawn from N(0, 1) and scaled
at run time by He's constant), leaky ReLU with a sqrt(2) gain, modulated convolution with
demodulation, styled convolutions, ToRGB skip outputs and residual blocks.

Resampling comes in two kinds, chosen per layer with ``resample``:
- ``"fir"``: StyleGAN2's and the Swapping Autoencoder's FIR filters: a blur by a binomial kernel
  ([1, 2, 1] or [1, 3, 3, 1]) around a stride-2 convolution (down) or after a stride-2 transposed
  convolution (up), written here as plain depthwise convolutions;
- ``"average"``: a 2x2 average pool (down) and bilinear interpolation (up), cheaper on CPUs where the
  one-channel blur convolutions run far below the convolution peak. The layers' default, so the
  StyleGAN2 baselines keep their networks; the Swapping Autoencoder's components pass their setting.

Modulated convolutions scale activations rather than weights (StyleGAN2-ADA's ``fused_modconv=False``
path): x * s -> shared conv -> * d is the same function as a grouped conv with per-sample demodulated
weights, but runs as one ordinary convolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


RESAMPLE_KINDS = ("fir", "average")


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def binomial_kernel(taps: tuple[int, ...], gain: float = 1.0) -> torch.Tensor:
    """Separable 2-D FIR kernel: the outer product of ``taps`` with itself, summing to ``gain``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = k[:, None] * k[None, :]
    return k2 / k2.sum() * gain


class Blur(nn.Module):
    """Per-channel convolution with a fixed FIR kernel after padding (before, after) on both axes.

    The kernel is a non-persistent buffer: it follows the module's device and dtype but is not part
    of the state dict (it is a constant of the architecture, not a weight)."""

    def __init__(self, taps: tuple[int, ...], pad: tuple[int, int], gain: float = 1.0, padding: str = "zeros"):
        super().__init__()
        self.register_buffer("kernel", binomial_kernel(taps, gain), persistent=False)
        self.pad = pad
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if any(self.pad):
            before, after = self.pad
            x = F.pad(x, [before, after, before, after], mode="reflect" if self.padding == "reflect" else "constant")
        weight = self.kernel.flip(0, 1).to(x.dtype).expand(c, 1, *self.kernel.shape)
        return F.conv2d(x, weight, groups=c)

    def extra_repr(self) -> str:
        return f"kernel={tuple(self.kernel.shape)}, pad={self.pad}, padding={self.padding}"


def check_resample(resample: str) -> None:
    if resample not in RESAMPLE_KINDS:
        raise ValueError(f"resample must be one of {RESAMPLE_KINDS}, got {resample!r}")


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
    """[downsampling] -> equalised conv -> [bias + leaky ReLU gain].

    Downsampling by ``resample="average"`` pools 2x2 before a 'same' convolution (a quarter of the
    full-resolution cost); by ``resample="fir"`` it blurs with ``blur`` taps (padded by ``padding``,
    StyleGAN2's padding rule) and convolves with stride 2 without padding. ``padding="valid"``
    without downsampling is an unpadded convolution; with ``downsample`` and ``blur=(1,)`` it is the
    Swapping Autoencoder's unpadded stride-2 convolution of its texture branch.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, downsample: bool = False,
                 activate: bool = True, bias: bool = True, padding: str = "zeros", resample: str = "average",
                 blur: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        check_resample(resample)
        self.downsample = downsample
        self.activate = activate
        self.resample = resample
        self.blur = None
        stride, conv_padding = 1, padding
        if downsample and resample == "fir":
            total = 0 if padding == "valid" else len(blur) - 2 + kernel_size - 1
            if total or len(blur) > 1:
                self.blur = Blur(blur, ((total + 1) // 2, total // 2), padding=padding)
            stride, conv_padding = 2, "valid"
        self.conv = EqualConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=conv_padding,
                                bias=bias and not activate)
        self.act_bias = nn.Parameter(torch.zeros(out_ch)) if (activate and bias) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample and self.resample == "average":
            x = downsample2x(x)
        if self.blur is not None:
            x = self.blur(x)
        x = self.conv(x)
        return leaky_relu_gain(x, self.act_bias) if self.activate else x


class ResBlock(nn.Module):
    """Residual block of the encoder and discriminators: two 3x3 convs and a 1x1 skip, halving the
    side unless ``downsample`` is off. ``padding`` pads the 3x3 convs (and their blur); the skip's
    blur always pads with zeros, as in the authors' code."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = True, padding: str = "zeros",
                 resample: str = "average", blur: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, padding=padding, resample=resample, blur=blur)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=downsample, padding=padding, resample=resample, blur=blur)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=downsample, activate=False, bias=False,
                              resample=resample, blur=blur)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution: per-sample input scaling by an affine map of the style,
    then (optionally) demodulation so each output channel has unit expected variance.

    ``demodulation="style"`` is StyleGAN2's: d[n, o] = 1 / ||w[o] * s[n]||. ``demodulation="weight"``
    is the Swapping Autoencoder's (its ``new_demodulation``): the style is scaled to unit root mean
    square and each filter to unit norm, d[o] = 1 / ||w[o]||, so one weight serves the whole batch.
    ``upsample`` doubles the side first: bilinear (``resample="average"``) or, with ``"fir"``, a
    stride-2 transposed convolution followed by a [1, 3, 3, 1] blur (StyleGAN2's).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, demodulation: str = "style",
                 resample: str = "average"):
        super().__init__()
        if demodulation not in ("style", "weight"):
            raise ValueError(f"demodulation must be 'style' or 'weight', got {demodulation!r}")
        check_resample(resample)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.affine = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate = demodulate
        self.demodulation = demodulation
        self.upsample = upsample
        self.resample = resample
        self.pad = kernel_size // 2
        self.blur = None
        if upsample and resample == "fir":
            p = 4 - 2 - (kernel_size - 1)  # StyleGAN2's padding of the blur after a transposed conv
            self.blur = Blur((1, 3, 3, 1), ((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.blur is not None:
            return self.blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2))
        if self.upsample:
            x = upsample2x(x)
        return F.conv2d(x, w, padding=self.pad)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)  # (N, in)
        w = self.weight * self.scale
        if self.demodulation == "weight":
            if self.demodulate:
                s = s * torch.rsqrt(s.square().mean(dim=1, keepdim=True) + 1e-8)
                w = w * torch.rsqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            return self._conv(x * s[:, :, None, None], w)
        out = self._conv(x * s[:, :, None, None], w)
        if self.demodulate:
            # d[n, o] = 1 / sqrt(sum_{i,k} (w[o, i, k] * s[n, i])^2 + eps)
            d = torch.rsqrt(s.square() @ w.square().sum(dim=(2, 3)).t() + 1e-8)
            out = out * d[:, :, None, None]
        return out

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return (f"{i} -> {o}, k={k}, demodulate={self.demodulate}, demodulation={self.demodulation}, "
                f"upsample={self.upsample}, resample={self.resample}")


class StyledConv(nn.Module):
    """Modulated conv -> [+ per-pixel noise x learned strength] -> bias -> leaky ReLU gain.

    With ``noise=True`` (StyleGAN2's and the Swapping Autoencoder's noise inputs) ``forward`` takes
    an explicit (N or 1, 1, H, W) noise map; given None it draws a fresh one per sample, except in
    eval mode with ``fixed_eval_noise``: then one seeded map per size is shared by the batch, so that
    scoring and editing are deterministic and an image's output does not depend on its neighbours.
    """

    EVAL_NOISE_SEED = 1234

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 noise: bool = False, demodulation: str = "style", resample: str = "average",
                 fixed_eval_noise: bool = False):
        super().__init__()
        self.fixed_eval_noise = fixed_eval_noise
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample,
                                    demodulation=demodulation, resample=resample)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros(())) if noise else None

    def _default_noise(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.fixed_eval_noise:
            return torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        gen = torch.Generator(device="cpu").manual_seed(self.EVAL_NOISE_SEED + x.shape[2] * 4099 + x.shape[3])
        return torch.randn(1, 1, *x.shape[2:], generator=gen).to(device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, style)
        if self.noise_strength is not None:
            if noise is None:
                noise = self._default_noise(x)
            x = x + noise * self.noise_strength
        return leaky_relu_gain(x, self.bias)


class StyledResBlock(nn.Module):
    """Residual block of the Swapping Autoencoder's generator: two styled 3x3 convs (the first may
    upsample) beside a skip path. Without upsampling the skip is a bias-free 1x1 conv where the width
    changes; with upsampling it is a 1x1 conv with bias and leaky ReLU where the width changes,
    then bilinear doubling (the authors' ``UpsamplingResnetBlock``)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False, noise: bool = False,
                 demodulation: str = "weight", resample: str = "fir", fixed_eval_noise: bool = True):
        super().__init__()
        self.upsample = upsample
        common = dict(noise=noise, demodulation=demodulation, resample=resample, fixed_eval_noise=fixed_eval_noise)
        self.conv1 = StyledConv(in_ch, out_ch, 3, style_dim, upsample=upsample, **common)
        self.conv2 = StyledConv(out_ch, out_ch, 3, style_dim, **common)
        if in_ch == out_ch:
            self.skip = None
        elif upsample:
            self.skip = ConvLayer(in_ch, out_ch, 1)
        else:
            self.skip = ConvLayer(in_ch, out_ch, 1, activate=False, bias=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.conv1(x, style), style)
        skip = self.skip(x) if self.skip is not None else x
        if self.upsample:
            skip = upsample2x(skip)
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
    """Appends the mean standard deviation over groups of samples as one extra feature map.

    ``parts`` (sizes summing to the batch) keeps the statistics inside each part, as if every part
    were its own forward call: a discriminator judging real and generated images in one batched
    pass must not let one side's samples into the other's groups."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor, parts: Sequence[int] | None = None) -> torch.Tensor:
        parts = list(parts) if parts else [x.shape[0]]
        if len(set(parts)) > 1:  # unequal parts: one call each
            return torch.cat([self(p) for p in x.split(parts)])
        stats = self._stddev(x.view(len(parts), parts[0], *x.shape[1:]))  # equal parts: one vectorised pass
        return torch.cat([x, stats.flatten(0, 1)], dim=1)

    def _stddev(self, x: torch.Tensor) -> torch.Tensor:
        """(k, n, c, h, w) -> (k, n, 1, h, w): sample i of a part is grouped with the samples i + j n/g
        (g the largest divisor of n up to ``group_size``), the feature is the group's mean std."""
        k, n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        y = x.view(k, g, n // g, c, h, w)
        y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (k, n // g)
        return y.view(k, 1, n // g, 1, 1, 1).expand(-1, g, -1, 1, h, w).reshape(k, n, 1, h, w)
