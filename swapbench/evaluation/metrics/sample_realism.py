"""Realism of unconditional samples (generators such as the StyleGAN2 baseline): FID and KID of
``data.test_images`` samples, from seeds fixed by ``eval.pairs_seed``, against the real test images."""

from __future__ import annotations

from swapbench.evaluation.metrics.distances import frechet_distance, frechet_on_subsets, kernel_distance, kid_on_subsets
from swapbench.evaluation.metrics.intervals import with_jackknife_interval
from swapbench.registry import METRICS


@METRICS.register("sample_fid", direction="down", needs=("sample",),
                  scores="samples", group="samples",
                  description="FID of N generated samples (fixed seeds) vs the N real test images (clean-fid, Inception pool).")
def sample_fid(ctx) -> dict[str, float]:
    leave_out = frechet_on_subsets(ctx.sample_features, ctx.real_features, ctx.jackknife_subsets(ctx.n, over="samples"))
    return with_jackknife_interval("sample_fid", frechet_distance(ctx.sample_features, ctx.real_features), leave_out, ctx.n)


@METRICS.register("sample_kid", direction="down", needs=("sample",),
                  scores="samples", group="samples",
                  description="KID (unbiased) of N generated samples vs the N real test images.")
def sample_kid(ctx) -> dict[str, float]:
    leave_out = kid_on_subsets(ctx.sample_features, ctx.real_features, ctx.jackknife_subsets(ctx.n, over="samples"))
    return with_jackknife_interval("sample_kid", kernel_distance(ctx.sample_features, ctx.real_features), leave_out, ctx.n)
