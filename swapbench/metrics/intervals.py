"""Bootstrap 95 % intervals: every score is logged as ``<name>``, ``<name>_ci_low``, ``<name>_ci_high``.

Resamples are rows drawn with replacement (pairs for swap scores, images for reconstruction) from a
fixed seed (``eval.bootstrap_seed``), ``eval.bootstrap_samples`` of them; the interval is the 2.5th and
97.5th percentile of the score over the resamples (the percentile bootstrap). Distances between feature
sets (FID, KID) resample the features, never rerun the network.
"""

from __future__ import annotations

import numpy as np
import torch

LEVEL = 0.95


def bootstrap_indices(n: int, count: int, seed: int) -> np.ndarray:
    """(count, n) row indices in [0, n), drawn with replacement."""
    return np.random.RandomState(seed).randint(0, n, size=(count, n)) if n else np.zeros((count, 0), dtype=int)


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
