"""The parts of a swap a model can get right separately, each against the renderer's truth (synthetic
data only; DESIGN.md, "A protocol that can tell").

gt_swap_lpips asks a model for B's exact patterns at the right phase, which a small model does not
render (not even one trained on the true swap itself). These three scores take the swap apart, using
what the renderer knows: A_i's region masks (``gt_regions``, edges left out) and the true swap
T_i = render(layout(A_i), style(B_i)).

- ``gt_layout`` (up): how much of the output's colour variance A's regions explain (the correlation ratio
  R^2 of the pixels' RGB values on A's region labels), as a share of how much they explain of the true
  swap: mean_i R^2(y_i) / mean_i R^2(T_i). 1 = as well as the truth; an output with A's regions and no
  pattern scores above 1; one laid out as B scores far below. Colour-blind: any colours in A's layout pass.
- ``gt_colour_error`` (down): per region of A, the RGB distance (0..1 per channel) between the output's
  mean colour there and the true swap's, weighted by region area; mean over pairs. Pattern-blind: a flat
  region of the right mean colour passes.
- ``gt_pattern`` (up): per region of A, the within-region autocovariance of the output's RGB residual
  (output minus its region mean) at a few lags up to 4 px (pattern contrast, frequency and orientation;
  blind to phase), against the true swap's: 1 - mean_i sum_r w_r |C_r(y_i) - C_r(T_i)| / mean_i sum_r w_r
  |C_r(T_i)|. 1 = B's pattern statistics in every region; 0 = none (a flat output).

A part passes at :data:`PASS` (thresholds set between the true swap and the control that must fail it,
see tests/test_protocol.py): copy A fails colours, copy B layout, truth_flat patterns, the pixel blend all
three, and the true swap passes all three.
"""

from __future__ import annotations

import torch

from swapbench.registry import METRICS

# lags (dy, dx) of the within-region autocovariance of gt_pattern, up to 4 px in 8 directions' halves
LAGS = ((0, 0), (1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 2), (2, -2), (3, 0), (0, 3), (4, 0), (0, 4))
# a part passes when its score is at least (up) or at most (down) this
PASS = {"gt_layout": 0.9, "gt_colour_error": 0.05, "gt_pattern": 0.5}
PART_SCORES = tuple(PASS)


def passes(name: str, value: float) -> bool:
    """Whether a part score ``name`` of value ``value`` passes (:data:`PASS`)."""
    return value >= PASS[name] if METRICS.direction(name) == "up" else value <= PASS[name]


def _unit(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(-1, 1) + 1) / 2


def region_means(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, R, 3) mean colour in [0, 1] of each image within each region mask (0 where a region is empty)."""
    area = masks.sum((2, 3)).clamp(min=1)
    return torch.einsum("nrhw,nchw->nrc", masks, _unit(images)) / area[..., None]


def region_r2(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) share of the pixels' RGB variance (within the masks) that the region labels explain."""
    y = _unit(images)
    inside = masks.sum(1, keepdim=True)
    fit = torch.einsum("nrhw,nrc->nchw", masks, region_means(images, masks))
    mean = (y * inside).sum((2, 3), keepdim=True) / inside.sum((2, 3), keepdim=True).clamp(min=1)
    total = ((y - mean).square() * inside).sum((1, 2, 3))
    residual = ((y - fit).square() * inside).sum((1, 2, 3))
    return torch.where(total > 1e-10, 1 - residual / total.clamp(min=1e-10), torch.zeros_like(total))


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by (dy, dx) pixels along its last two dimensions, zeros shifted in."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = \
        x[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    return out


def region_autocovariance(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N, R, len(LAGS)) autocovariance of the RGB residual from the region mean, summed over channels,
    over the pixel pairs with both pixels inside the region."""
    z = (_unit(images).unsqueeze(1) - region_means(images, masks)[..., None, None]) * masks.unsqueeze(2)
    out = []
    for dy, dx in LAGS:
        both = masks * _shift(masks, dy, dx)
        out.append((z * _shift(z, dy, dx) * both.unsqueeze(2)).sum((2, 3, 4)) / both.sum((2, 3)).clamp(min=1))
    return torch.stack(out, -1)


def _area_weights(masks: torch.Tensor) -> torch.Tensor:
    area = masks.sum((2, 3))
    return area / area.sum(1, keepdim=True).clamp(min=1)


@METRICS.register("gt_layout", direction="up", needs=("swap",),
                  scores="swaps", group="truth_parts",
                  description="Synthetic data only: share of the swap's colour variance that A_i's regions explain, relative "
                              "to the true swap's (1 = as the truth; colour-blind). Passes at >= 0.9.")
def gt_layout(ctx) -> dict[str, float]:
    if ctx.gt_swaps is None:
        return {}
    masks = ctx.gt_regions
    truth, swap = region_r2(ctx.gt_swaps, masks).double().numpy(), region_r2(ctx.swaps, masks).double().numpy()
    return ctx.ratio_score("gt_layout", truth - swap, truth)  # 1 - mean(T - y) / mean(T) = mean(y) / mean(T)


@METRICS.register("gt_colour_error", direction="down", needs=("swap",),
                  scores="swaps", group="truth_parts",
                  description="Synthetic data only: area-weighted RGB distance (0..1 channels) between the swap's and the "
                              "true swap's mean colour in each of A_i's regions (pattern-blind). Passes at <= 0.05.")
def gt_colour_error(ctx) -> dict[str, float]:
    if ctx.gt_swaps is None:
        return {}
    masks = ctx.gt_regions
    diff = (region_means(ctx.swaps, masks) - region_means(ctx.gt_swaps, masks)).norm(dim=2)
    return ctx.mean_score("gt_colour_error", (diff * _area_weights(masks)).sum(1))


@METRICS.register("gt_pattern", direction="up", needs=("swap",),
                  scores="swaps", group="truth_parts",
                  description="Synthetic data only: 1 - relative distance of the within-region autocovariances (lags up to "
                              "4 px) of the swap from the true swap's, in each of A_i's regions (phase-blind; 1 = B's "
                              "pattern statistics, 0 = flat). Passes at >= 0.5.")
def gt_pattern(ctx) -> dict[str, float]:
    if ctx.gt_swaps is None:
        return {}
    masks = ctx.gt_regions
    weights = _area_weights(masks)
    truth = region_autocovariance(ctx.gt_swaps, masks)
    swap = region_autocovariance(ctx.swaps, masks)
    num = ((swap - truth).norm(dim=-1) * weights).sum(1).double().numpy()
    den = (truth.norm(dim=-1) * weights).sum(1).double().numpy()
    return ctx.ratio_score("gt_pattern", num, den)
