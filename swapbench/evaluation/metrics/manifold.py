"""Precision, recall, density and coverage of the swaps against the held-out reference set, on the
same Inception pool features as swap FID/KID (clean resize).

- precision and recall: Kynkaanniemi et al. 2019, k = 3 nearest neighbours (their default): the
  share of swaps inside the reference manifold (balls to each reference image's 3rd neighbour), and
  the share of reference images inside the swaps' manifold;
- density and coverage: Naeem et al. 2020, k = 5 (their default): how many reference balls hold each
  swap on average (divided by k), and the share of reference images whose ball holds at least one swap.

Distances and k-NN radii come from the ``prdc`` package (Naeem et al.'s own code). Each score is the
mean of a per-item value: per swap (precision, density) or per reference image (recall, coverage),
so its interval is a bootstrap over those items (over their source photographs where crops share
one); the means are exactly ``prdc.compute_prdc``'s.
Realism alone rewards copying (copy A and copy B are real images): read these next to the texture and
structure scores and the controls.
"""

from __future__ import annotations

import numpy as np

from swapbench.registry import METRICS

PR_K = 3  # Kynkaanniemi et al.
DC_K = 5  # Naeem et al.


def manifold_items(real: np.ndarray, fake: np.ndarray, k_pr: int = PR_K, k_dc: int = DC_K) -> dict[str, np.ndarray]:
    """Per-item indicators whose means are precision, recall (k_pr), density and coverage (k_dc)."""
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    real = np.asarray(real, dtype=np.float32)
    fake = np.asarray(fake, dtype=np.float32)
    d = compute_pairwise_distance(real, fake)  # (n_real, n_fake)
    real_pr = compute_nearest_neighbour_distances(real, k_pr)[:, None]
    fake_pr = compute_nearest_neighbour_distances(fake, k_pr)[None, :]
    real_dc = compute_nearest_neighbour_distances(real, k_dc)[:, None]
    return {"precision": (d < real_pr).any(axis=0).astype(float),
            "recall": (d < fake_pr).any(axis=1).astype(float),
            "density": (d < real_dc).sum(axis=0) / k_dc,
            "coverage": (d.min(axis=1) < real_dc[:, 0]).astype(float)}


def _scores(ctx, part: str) -> dict[str, float]:
    name = f"swap_{part}"
    k = PR_K if part in ("precision", "recall") else DC_K
    real = ctx.reference_features if len(ctx.reference) > DC_K + 1 else None
    if real is None or len(ctx.pairs) > len(set(ctx.pairs)) or len(ctx.pairs) <= PR_K + 1:
        ctx.notes[name] = (f"needs more than {DC_K + 1} reference images and more than {PR_K + 1} distinct swaps (each "
                           f"set's k-th neighbour besides itself); got {len(ctx.reference)} and {len(set(ctx.pairs))}")
        return {name: float("nan")}
    if "_manifold_items" not in ctx.__dict__:  # one distance matrix for the four scores (dropped with the swaps)
        ctx.__dict__["_manifold_items"] = manifold_items(real, ctx.swap_features)
    items = ctx.__dict__["_manifold_items"]
    over = "reference" if part in ("recall", "coverage") else "pairs"  # per reference image, or per swap
    return {**ctx.mean_score(name, items[part], over=over), f"{name}_k": k, f"{name}_real_n": len(real)}


@METRICS.register("swap_precision", direction="up", needs=("swap",),
                  scores="swaps", group="manifold",
                  description="Share of swaps inside the held-out reference set's manifold (Kynkaanniemi et al. 2019, "
                              "k=3, Inception pool features).")
def swap_precision(ctx) -> dict[str, float]:
    return _scores(ctx, "precision")


@METRICS.register("swap_recall", direction="up", needs=("swap",),
                  scores="swaps", group="manifold",
                  description="Share of held-out reference images inside the swaps' manifold (Kynkaanniemi et al. "
                              "2019, k=3).")
def swap_recall(ctx) -> dict[str, float]:
    return _scores(ctx, "recall")


@METRICS.register("swap_density", direction="up", needs=("swap",),
                  scores="swaps", group="manifold",
                  description="Reference k-NN balls holding each swap, over k (Naeem et al. 2020, k=5); 1 on average "
                              "for samples of the reference distribution.")
def swap_density(ctx) -> dict[str, float]:
    return _scores(ctx, "density")


@METRICS.register("swap_coverage", direction="up", needs=("swap",),
                  scores="swaps", group="manifold",
                  description="Share of held-out reference images whose k-NN ball holds a swap (Naeem et al. 2020, k=5).")
def swap_coverage(ctx) -> dict[str, float]:
    return _scores(ctx, "coverage")
