"""Reconstruction scores: x vs G(E(x)) over the test split, each with its bootstrap interval over images."""

from __future__ import annotations

import logging

import torch

from swapbench.registry import METRICS

log = logging.getLogger(__name__)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], measured on [0, 1] with peak 1 (inputs clamped)."""
    a01 = (a.clamp(-1, 1) + 1) / 2
    b01 = (b.clamp(-1, 1) + 1) / 2
    mse = (a01 - b01).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def thumbnail(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``images`` area-downsampled by ``factor`` and bicubic-upsampled back to their size, clamped to [-1, 1]
    (the ``thumbnail_4x`` reconstruction control)."""
    small = torch.nn.functional.interpolate(images, scale_factor=1 / factor, mode="area")
    return torch.nn.functional.interpolate(small, size=images.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)


@METRICS.register("recon_l1", direction="down", needs=("reconstruct",),
                  scores="reconstructions", group="reconstruction",
                  description="Mean absolute error of G(E(x)) vs x on [-1, 1], test split.")
def recon_l1(ctx) -> dict[str, float]:
    return ctx.mean_score("recon_l1", (ctx.reconstructions.clamp(-1, 1) - ctx.images).abs().flatten(1).mean(1), over="images")


@METRICS.register("recon_psnr", direction="up", needs=("reconstruct",),
                  scores="reconstructions", group="reconstruction",
                  description="Mean per-image PSNR (dB, peak 1 on [0, 1]) of G(E(x)) vs x, test split.")
def recon_psnr(ctx) -> dict[str, float]:
    return ctx.mean_score("recon_psnr", psnr(ctx.reconstructions, ctx.images), over="images")


def _recon_lpips(ctx, net: str) -> dict[str, float]:
    from swapbench.nn.lpips import MIN_SIDE

    side = ctx.images.shape[-1]
    if side < MIN_SIDE[net]:
        log.warning("recon_lpips_%s is not defined at %d px (the %s backbone needs at least %d px); not logged",
                    net, side, net, MIN_SIDE[net])
        return {}
    return ctx.mean_score(f"recon_lpips_{net}", ctx.lpips_distance(net, ctx.reconstructions, ctx.images), over="images")


@METRICS.register("recon_lpips_alex", direction="down", needs=("reconstruct",),
                  scores="reconstructions", group="reconstruction",
                  description="Mean LPIPS (AlexNet) of G(E(x)) vs x, test split (>= 31 px).")
def recon_lpips_alex(ctx) -> dict[str, float]:
    return _recon_lpips(ctx, "alex")


@METRICS.register("recon_lpips_vgg", direction="down", needs=("reconstruct",),
                  scores="reconstructions", group="reconstruction",
                  description="Mean LPIPS (VGG16) of G(E(x)) vs x, test split.")
def recon_lpips_vgg(ctx) -> dict[str, float]:
    return _recon_lpips(ctx, "vgg")
