"""Realism of swaps: FID and KID against real test images, SIFID against each texture source."""

from __future__ import annotations

import logging

from swapbench.metrics.distances import frechet_distance, kernel_distance, sifid_pair
from swapbench.metrics.inception import conv4_samples
from swapbench.metrics import needs
from swapbench.registry import METRICS

log = logging.getLogger(__name__)


@METRICS.register("swap_fid", description="FID of the swaps G(s(A_i), t(B_i)) vs the real test images (clean-fid, Inception pool).")
@needs("swap")
def swap_fid(ctx) -> dict[str, float]:
    return {"swap_fid": frechet_distance(ctx.swap_features, ctx.real_features),
            "swap_fid_n": len(ctx.pairs), "swap_fid_real_n": ctx.n}


@METRICS.register("swap_kid", description="KID (unbiased) of the swaps vs the real test images; std over 100 subsets when N > 1000.")
@needs("swap")
def swap_kid(ctx) -> dict[str, float]:
    mean, std = kernel_distance(ctx.swap_features, ctx.real_features)
    scores = {"swap_kid": mean, "swap_kid_n": len(ctx.pairs), "swap_kid_real_n": ctx.n}
    if std is not None:  # with N <= 1000 every subset is the whole set: no spread to report
        scores["swap_kid_std"] = std
    return scores


@METRICS.register("swap_fid_vs_structure", description="The official code's variant: FID of the swaps vs their structure sources A_i.")
@needs("swap")
def swap_fid_vs_structure(ctx) -> dict[str, float]:
    structure_feats = ctx.real_features[ctx.structure_indices]
    return {"swap_fid_vs_structure": frechet_distance(ctx.swap_features, structure_feats),
            "swap_fid_vs_structure_n": len(ctx.pairs)}


@METRICS.register("sifid", description="Mean over pairs of the Frechet distance of Inception conv_4 samples, swap vs its texture source B_i.")
@needs("swap")
def sifid(ctx) -> dict[str, float]:
    samples = conv4_samples(ctx.images.shape[-1])
    if samples < 2:
        log.warning("SIFID is not defined at %d px: Inception's conv_4 map has %d positions (a covariance needs "
                    "at least 2; the map exists from 32 px on); no sifid is logged", ctx.images.shape[-1], samples)
        return {"sifid_samples": samples}
    if samples <= 192:
        log.warning("SIFID at %d px has %d spatial samples per image in 192 dimensions: both covariances are "
                    "singular and the score is fragile; prefer 128 px or more for SIFID tables",
                    ctx.images.shape[-1], samples)
    swaps = ctx.inception.conv4(ctx.swaps)
    textures = ctx.inception.conv4(ctx.images[ctx.texture_indices])
    values = [sifid_pair(s, t) for s, t in zip(swaps, textures)]
    return {"sifid": float(sum(values) / len(values)), "sifid_n": len(values), "sifid_samples": samples}
