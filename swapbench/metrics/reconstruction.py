"""Reconstruction scores: x vs G(E(x)) over the test split."""

from __future__ import annotations

import torch

from swapbench.registry import METRICS


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [-1, 1], measured on [0, 1] with peak 1 (inputs clamped)."""
    a01 = (a.clamp(-1, 1) + 1) / 2
    b01 = (b.clamp(-1, 1) + 1) / 2
    mse = (a01 - b01).square().flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@METRICS.register("recon_l1", description="Mean absolute error of G(E(x)) vs x on [-1, 1], test split.")
def recon_l1(ctx) -> dict[str, float]:
    err = (ctx.reconstructions.clamp(-1, 1) - ctx.images).abs().mean()
    return {"recon_l1": err.item(), "recon_l1_n": ctx.n}


@METRICS.register("recon_psnr", description="Mean per-image PSNR (dB, peak 1 on [0, 1]) of G(E(x)) vs x, test split.")
def recon_psnr(ctx) -> dict[str, float]:
    return {"recon_psnr": psnr(ctx.reconstructions, ctx.images).mean().item(), "recon_psnr_n": ctx.n}


@METRICS.register("recon_lpips_alex", description="Mean LPIPS (AlexNet) of G(E(x)) vs x, test split.")
def recon_lpips_alex(ctx) -> dict[str, float]:
    return {"recon_lpips_alex": ctx.lpips_distance("alex", ctx.reconstructions, ctx.images).mean().item(),
            "recon_lpips_alex_n": ctx.n}


@METRICS.register("recon_lpips_vgg", description="Mean LPIPS (VGG16) of G(E(x)) vs x, test split.")
def recon_lpips_vgg(ctx) -> dict[str, float]:
    return {"recon_lpips_vgg": ctx.lpips_distance("vgg", ctx.reconstructions, ctx.images).mean().item(),
            "recon_lpips_vgg_n": ctx.n}
