"""95 % intervals: every score is logged as ``<name>``, ``<name>_ci_low``, ``<name>_ci_high`` (and ``<name>_n``).

Two methods, each where it is valid:

- **Means over rows** (LPIPS, PSNR, per-pair distances, their ratios): the percentile bootstrap.
  Resamples are rows drawn with replacement (pairs for swap scores, images for reconstruction) from a
  fixed seed (``eval.bootstrap_seed``), ``eval.bootstrap_samples`` of them; the interval is the 2.5th
  and 97.5th percentile of the score over the resamples.
- **Distances between feature sets** (FID, KID): the delete-a-group jackknife. A bootstrap resample
  drawn with replacement repeats about a third of its rows, and a repeated row shrinks a fitted
  covariance and enters KID's within-set kernel sum, so every resampled FID and KID is biased upward
  and the percentile interval can miss the estimate altogether (seen here: FID 316.7, bootstrap
  interval [317.8, 340.4]). Instead the rows are split at random (``eval.bootstrap_seed``) into
  :data:`JACKKNIFE_GROUPS` groups, the distance is recomputed with each group left out (no row
  repeated), and the interval is ``estimate +- t(g-1) x SE`` with the jackknife standard error
  ``SE^2 = (g-1)/g x sum_i (d_(i) - mean d_(.))^2``. It describes the sampling variability of the
  estimate at this N. FID's own upward bias at small N is not inside it: compare FIDs only at equal N.

Both resample the features, never rerun the network.

**Clusters.** Where several scored images are crops of one source photograph (dataset ``photos``, whose
test split is crops of four photographs), crops are not independent draws, and resampling them as if they
were gives intervals far too narrow. There the unit resampled is the source (the dataset's
``source_ids``): the bootstrap draws sources with replacement and weighs each row by how often its
sources were drawn (a pair (A_i, B_i) by the product of its two sources' counts: the pigeonhole bootstrap
for a crossed design), and the jackknife leaves out one source at a time (every row that uses it).
Such a score also logs ``<name>_n_sources``. Data whose images are each their own source (synthetic,
folders) keep the row bootstrap.
"""

from __future__ import annotations

import numpy as np
import torch

LEVEL = 0.95
# Groups of the delete-a-group jackknife (distances between feature sets): each recomputation leaves
# out 1/20 of the rows; 20 recomputations of FID or KID cost far less than a bootstrap's hundreds.
JACKKNIFE_GROUPS = 20


def bootstrap_indices(n: int, count: int, seed: int) -> np.ndarray:
    """(count, n) row indices in [0, n), drawn with replacement."""
    return np.random.RandomState(seed).randint(0, n, size=(count, n)) if n else np.zeros((count, 0), dtype=int)


def jackknife_subsets(n: int, seed: int, groups: int = JACKKNIFE_GROUPS) -> list[np.ndarray]:
    """The kept rows of each delete-a-group recomputation: ``range(n)`` split at random (``seed``) into
    ``min(groups, n)`` groups of near-equal size; subset i is every row not in group i, in order. Below 3
    rows there is none: a kept subset needs 2 rows for a covariance."""
    groups = min(groups, n)
    if n < 3 or groups < 2:
        return []
    label = np.empty(n, dtype=int)
    label[np.random.RandomState(seed).permutation(n)] = np.arange(n) % groups
    return [np.flatnonzero(label != g) for g in range(groups)]


def jackknife_interval(value: float, leave_out: np.ndarray) -> tuple[float, float]:
    """``value +- t(g-1, 97.5 %) x SE`` with the jackknife standard error of the ``g`` leave-a-group-out
    values."""
    from scipy.stats import t

    leave_out = np.asarray(leave_out, dtype=np.float64)
    g = len(leave_out)
    if g < 2 or not np.isfinite(leave_out).all() or not np.isfinite(value):
        return float("nan"), float("nan")
    se = np.sqrt((g - 1) / g * ((leave_out - leave_out.mean()) ** 2).sum())
    half = float(t.ppf(1 - (1 - LEVEL) / 2, g - 1) * se)
    return float(value) - half, float(value) + half


def with_jackknife_interval(name: str, value: float, leave_out: np.ndarray, n: int) -> dict[str, float]:
    """The distance, its jackknife interval (none without leave-out values) and its N."""
    out = {name: float(value), f"{name}_n": n}
    if len(leave_out):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = jackknife_interval(value, leave_out)
    return out


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def with_interval(name: str, value: float, resampled: np.ndarray | None, n: int) -> dict[str, float]:
    """The score, its interval from the resampled values (none when there are no resamples) and its N."""
    out = {name: float(value), f"{name}_n": n}
    if resampled is not None and len(resampled):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = percentile_interval(resampled)
    return out


def mean_with_interval(name: str, per_item: torch.Tensor | np.ndarray, resamples: np.ndarray) -> dict[str, float]:
    values = per_item.double().numpy() if isinstance(per_item, torch.Tensor) else np.asarray(per_item, dtype=np.float64)
    return with_interval(name, values.mean(), values[resamples].mean(axis=1) if resamples.size else None, len(values))


def ratio_with_interval(name: str, numerator: np.ndarray, denominator: np.ndarray, resamples: np.ndarray) -> dict[str, float]:
    """1 - mean(numerator) / mean(denominator), the pair resampled jointly."""
    num, den = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    value = 1 - num.mean() / den.mean()
    boot = 1 - num[resamples].mean(axis=1) / den[resamples].mean(axis=1) if resamples.size else None
    return with_interval(name, value, boot, len(num))


# -- clustered rows: resample sources, not rows -------------------------------------------------

def cluster_bootstrap_weights(clusters: list[tuple[str, ...]], count: int, seed: int) -> np.ndarray:
    """(count, rows) weights of a bootstrap over sources: each resample draws the distinct sources with
    replacement, and a row weighs the product of the draw counts of its sources (one source for an image,
    two for a pair). A resample may leave every row at weight 0 (its mean is then NaN and dropped)."""
    names = sorted({s for row in clusters for s in row})
    index = {s: i for i, s in enumerate(names)}
    draws = np.random.RandomState(seed).randint(0, len(names), size=(count, len(names)))
    counts = np.stack([np.bincount(d, minlength=len(names)) for d in draws]) if count else np.zeros((0, len(names)))
    weights = np.ones((count, len(clusters)))
    for j in range(max((len(r) for r in clusters), default=0)):
        weights *= counts[:, [index[row[j]] for row in clusters]]
    return weights


def cluster_jackknife_subsets(clusters: list[tuple[str, ...]]) -> list[np.ndarray]:
    """The kept rows of each delete-a-source recomputation: for every source, the rows that do not use it.
    None below 3 sources, or where leaving a source out would leave fewer than 2 rows."""
    names = sorted({s for row in clusters for s in row})
    if len(names) < 3:
        return []
    subsets = [np.flatnonzero([name not in row for row in clusters]) for name in names]
    return subsets if all(len(k) >= 2 for k in subsets) else []


def weighted_mean_with_interval(name: str, per_item: torch.Tensor | np.ndarray, weights: np.ndarray,
                                sources: int) -> dict[str, float]:
    """The plain mean, its interval from weighted resamples (:func:`cluster_bootstrap_weights`), N rows and
    N sources."""
    values = per_item.double().numpy() if isinstance(per_item, torch.Tensor) else np.asarray(per_item, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = weights @ values / weights.sum(axis=1) if weights.size else None
    return {**with_interval(name, values.mean(), boot, len(values)), f"{name}_n_sources": sources}


def weighted_ratio_with_interval(name: str, numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray,
                                 sources: int) -> dict[str, float]:
    """1 - mean(numerator) / mean(denominator), resampled by source weights."""
    num, den = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = 1 - (weights @ num) / (weights @ den) if weights.size else None
    return {**with_interval(name, 1 - num.mean() / den.mean(), boot, len(num)), f"{name}_n_sources": sources}
