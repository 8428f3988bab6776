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
