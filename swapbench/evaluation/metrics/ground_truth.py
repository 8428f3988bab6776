"""Disentanglement against the truth: only a dataset with known factors (``synthetic``) can say what
G(s(A), t(B)) should be, namely render(layout(A), style(B))."""

from __future__ import annotations

from swapbench.evaluation.metrics.reconstruction import psnr
from swapbench.registry import METRICS


@METRICS.register("gt_swap_lpips", direction="down", needs=("swap",),
                  scores="swaps", group="truth",
                  description="Synthetic data only: mean LPIPS (VGG16) of each swap vs render(layout(A_i), style(B_i)).")
def gt_swap_lpips(ctx) -> dict[str, float]:
    gt = ctx.gt_swaps
    if gt is None:
        return {}
    return ctx.mean_score("gt_swap_lpips", ctx.lpips_distance("vgg", ctx.swaps, gt))


@METRICS.register("gt_swap_psnr", direction="up", needs=("swap",),
                  scores="swaps", group="truth",
                  description="Synthetic data only: mean PSNR (dB) of each swap vs render(layout(A_i), style(B_i)).")
def gt_swap_psnr(ctx) -> dict[str, float]:
    gt = ctx.gt_swaps
    if gt is None:
        return {}
    return ctx.mean_score("gt_swap_psnr", psnr(ctx.swaps, gt))
