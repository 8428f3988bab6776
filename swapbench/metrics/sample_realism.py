"""Realism of unconditional samples (generators such as the StyleGAN2 baseline): FID and KID of
``data.test_images`` samples, from seeds fixed by ``eval.pairs_seed``, against the real test images."""

from __future__ import annotations

from swapbench.metrics import needs
from swapbench.metrics.distances import frechet_distance, kernel_distance
from swapbench.registry import METRICS


@METRICS.register("sample_fid", description="FID of N generated samples (fixed seeds) vs the N real test images (clean-fid, Inception pool).")
@needs("sample")
def sample_fid(ctx) -> dict[str, float]:
    return {"sample_fid": frechet_distance(ctx.sample_features, ctx.real_features), "sample_fid_n": ctx.n}


@METRICS.register("sample_kid", description="KID (unbiased) of N generated samples vs the N real test images.")
@needs("sample")
def sample_kid(ctx) -> dict[str, float]:
    mean, std = kernel_distance(ctx.sample_features, ctx.real_features)
    scores = {"sample_kid": mean, "sample_kid_n": ctx.n}
    if std is not None:
        scores["sample_kid_std"] = std
    return scores
