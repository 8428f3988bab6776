"""Realism of swaps: FID and KID against held-out real images (never a swap source), the authors'
protocol (FID against the swaps' own structure images, pytorch-fid's resize), and SIFID against each
texture source. Realism alone rewards copying (a copied image is real): read these next to texture
transfer, structure preservation and the controls."""

from __future__ import annotations

import logging

from swapbench.evaluation.metrics.distances import (
    frechet_distance,
    frechet_on_subsets,
    kernel_distance,
    kid_on_subsets,
    sifid_pair,
)
from swapbench.evaluation.metrics.inception import conv4_samples
from swapbench.evaluation.metrics.intervals import with_jackknife_interval
from swapbench.registry import METRICS

log = logging.getLogger(__name__)
SIFID_DIMENSIONS = 192  # channels of Inception's conv_4


def _reference_or_note(ctx, name: str):
    ref = ctx.reference_features if len(ctx.reference) >= 2 else None
    if ref is None:
        ctx.notes[name] = (f"no reference set: the test split has {len(ctx.reference)} image(s) beyond the "
                           f"{ctx.n} swap sources; raise eval.reference_images or give the test split more images")
    return ref


def _against_reference(ctx, name: str, distance, on_subsets) -> dict[str, float]:
    """Score ``name``: ``distance`` of the swaps' Inception features from the held-out reference set's, with
    its jackknife interval (``on_subsets``: the same distance on the leave-one-group-out subsets) and the
    reference size; NaN with a note when there is no reference set."""
    ref = _reference_or_note(ctx, name)
    if ref is None:
        return {name: float("nan")}
    n = len(ctx.pairs)
    leave_out = on_subsets(ctx.swap_features, ref, ctx.jackknife_subsets(n))
    return {**with_jackknife_interval(name, distance(ctx.swap_features, ref), leave_out, n), f"{name}_real_n": len(ref)}


@METRICS.register("swap_fid", direction="down", needs=("swap",),
                  scores="swaps", group="realism",
                  description="FID of the swaps G(s(A_i), t(B_i)) vs held-out real test images that are never a swap source "
                              "(clean-fid, Inception pool).")
def swap_fid(ctx) -> dict[str, float]:
    return _against_reference(ctx, "swap_fid", frechet_distance, frechet_on_subsets)


@METRICS.register("swap_kid", direction="down", needs=("swap",),
                  scores="swaps", group="realism",
                  description="KID (unbiased, clean-fid's subsets) of the swaps vs the held-out real test images.")
def swap_kid(ctx) -> dict[str, float]:
    return _against_reference(ctx, "swap_kid", kernel_distance, kid_on_subsets)


@METRICS.register("swap_fid_vs_structure", direction="down", needs=("swap",),
                  scores="swaps", group="realism",
                  description="The authors' protocol: FID of the swaps vs their own structure images A_i, pytorch-fid's resize "
                              "(clean-fid legacy_pytorch).")
def swap_fid_vs_structure(ctx) -> dict[str, float]:
    structure = ctx.real_features_legacy[ctx.structure_indices]
    n = len(ctx.pairs)
    leave_out = frechet_on_subsets(ctx.swap_features_legacy, structure, ctx.jackknife_subsets(n), paired=True)
    return with_jackknife_interval("swap_fid_vs_structure", frechet_distance(ctx.swap_features_legacy, structure), leave_out, n)


@METRICS.register("sifid", direction="down", needs=("swap",),
                  scores="swaps", group="texture",
                  description="Mean over pairs of the Frechet distance of Inception conv_4 samples, swap vs its texture source "
                              "B_i; only where the map has more positions than its 192 dimensions (>= 71 px), else NaN.")
def sifid(ctx) -> dict[str, float]:
    side = ctx.images.shape[-1]
    samples = conv4_samples(side)
    if samples <= SIFID_DIMENSIONS:
        if "sifid" not in ctx.notes:
            log.warning("sifid is not comparable at %d px (%d samples in %d dimensions); logged as NaN",
                        side, samples, SIFID_DIMENSIONS)
        ctx.notes["sifid"] = (f"not comparable at {side} px: Inception's conv_4 map has {samples} positions per image "
                              f"in {SIFID_DIMENSIONS} dimensions (singular covariances); SIFID needs more samples than "
                              f"dimensions (images of at least 71 px; prefer >= 128 px)")
        return {"sifid": float("nan"), "sifid_samples": samples}
    swaps = ctx.inception.conv4(ctx.swaps)
    textures = ctx.inception.conv4(ctx.images[ctx.texture_indices])
    return {**ctx.mean_score("sifid", [sifid_pair(s, t) for s, t in zip(swaps, textures)]), "sifid_samples": samples}
