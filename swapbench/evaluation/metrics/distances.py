"""Frechet and kernel distances on features, their values on row subsets (for the jackknife
intervals of :mod:`swapbench.evaluation.metrics.intervals`), and the cache of real-image
features.

One exact Frechet computation for every N. FID = |mu_a - mu_b|^2 + tr S_a + tr S_b - 2 tr sqrt(S_a S_b),
and tr sqrt(S_a S_b) is the nuclear norm of L_a^T L_b for any factors S = L L^T (the eigenvalues of
S_a S_b are the squared singular values of L_a^T L_b). Each covariance is factored once:

- below the feature dimension (n <= d) by its own centred samples, L = X_c^T / sqrt(n - 1) (d x n),
  the sample-space form: exact, where sqrtm of a singular product is not;
- otherwise by Cholesky (an eigendecomposition when the covariance is not positive definite), and
  when both sets are that large tr sqrt(S_a S_b) = sum of sqrt(eigenvalues of L_a^T S_b L_a), a
  symmetric eigenvalue problem without eigenvectors (no scipy sqrtm).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from swapbench.cache import load_cached, save_cached
from swapbench.weights import home


@dataclass(frozen=True)
class Gaussian:
    """The Gaussian fitted to a feature set: mean, trace of the covariance, and a factor L of the
    covariance (cov = L L^T), sample-space (d x n) below the dimension, else d x d."""

    mean: np.ndarray
    trace: float
    factor: np.ndarray
    sample_space: bool

    @property
    def cov(self) -> np.ndarray:
        return self.factor @ self.factor.T


def fit_gaussian(feats: np.ndarray) -> Gaussian:
    feats = np.asarray(feats, dtype=np.float64)
    n, d = feats.shape
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {n}")
    mean = feats.mean(axis=0)
    centred = feats - mean
    if n <= d:
        factor = centred.T / np.sqrt(n - 1)
        return Gaussian(mean, float((factor * factor).sum()), factor, True)
    cov = centred.T @ centred / (n - 1)
    try:
        factor = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:  # positive semi-definite only (e.g. duplicated or constant features)
        w, u = np.linalg.eigh(cov)
        factor = u * np.sqrt(np.clip(w, 0, None))
    return Gaussian(mean, float(np.trace(cov)), factor, False)


def trace_sqrt_product(a: Gaussian, b: Gaussian) -> float:
    """tr sqrt(S_a S_b), exactly, through the two factors."""
    if a.sample_space or b.sample_space:
        return float(np.linalg.svd(a.factor.T @ b.factor, compute_uv=False).sum())
    m = a.factor.T @ b.cov @ a.factor
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_from_gaussians(a: Gaussian, b: Gaussian) -> float:
    diff = a.mean - b.mean
    return float(diff @ diff + a.trace + b.trace - 2 * trace_sqrt_product(a, b))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID-style Frechet distance between Gaussians fitted to two feature sets (rows are samples)."""
    return frechet_from_gaussians(fit_gaussian(feats_a), fit_gaussian(feats_b))


def frechet_on_subsets(feats_a: np.ndarray, feats_b: np.ndarray, subsets: list[np.ndarray],
                       paired: bool = False) -> np.ndarray:
    """Frechet distances of the rows ``subsets[k]`` of ``feats_a`` (the jackknife's kept rows); with
    ``paired`` the same rows of ``feats_b`` are taken too (a swap and its own source), else ``feats_b``
    stays whole (a fixed reference set), fitted once."""
    if paired:
        return np.array([frechet_distance(feats_a[i], feats_b[i]) for i in subsets])
    b = fit_gaussian(feats_b)
    feats_a = np.asarray(feats_a, dtype=np.float64)
    d = feats_a.shape[1]
    # below the dimension: project every row on b's factor once, then each subset is a small SVD
    projected = feats_a @ b.factor if any(len(i) <= d for i in subsets) else None
    sq_norms = (feats_a * feats_a).sum(axis=1)
    out = np.empty(len(subsets))
    for k, i in enumerate(subsets):
        n = len(i)
        if n > d:
            out[k] = frechet_from_gaussians(fit_gaussian(feats_a[i]), b)
            continue
        mean = feats_a[i].mean(axis=0)
        trace = (sq_norms[i].sum() - n * mean @ mean) / (n - 1)
        p = projected[i]
        cross = np.linalg.svd((p - p.mean(axis=0)) / np.sqrt(n - 1), compute_uv=False).sum()
        diff = mean - b.mean
        out[k] = diff @ diff + trace + b.trace - 2 * cross
    return out


def _cubic_gram(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


def _kid_grams(feats_a: np.ndarray, feats_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cubic kernel matrices KID's subsets index: (a, a), (b, b) and (a, b)."""
    return _cubic_gram(feats_a, feats_a), _cubic_gram(feats_b, feats_b), _cubic_gram(feats_a, feats_b)


def kernel_distance(feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID as clean-fid's ``kernel_distance`` defines it (unbiased MMD^2, cubic kernel, mean over
    ``num_subsets`` random subsets of min(n_a, n_b, max_subset_size) rows of each set), with the
    subsets drawn from a numpy stream seeded by ``seed`` in clean-fid's order; the kernel matrices
    are computed once and the subsets index them."""
    return float(np.mean(kid_subset_values(feats_a, feats_b, num_subsets, max_subset_size, seed)))


def kid_subset_values(feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100,
                      max_subset_size: int = 1000, seed: int = 0) -> list[float]:
    """The KID estimate of each subset (their mean is :func:`kernel_distance`)."""
    return _kid_subsets(feats_a, feats_b, np.arange(len(feats_a)), num_subsets, max_subset_size, seed)


def _kid_subsets(feats_a, feats_b, rows_a, num_subsets, max_subset_size, seed, grams=None):
    k_aa, k_bb, k_ab = grams or _kid_grams(feats_a, feats_b)
    m = min(len(rows_a), len(feats_b), max_subset_size)
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(num_subsets):
        x = rng.choice(len(feats_b), m, replace=False)  # clean-fid draws the second set's rows first
        y = rows_a[rng.choice(len(rows_a), m, replace=False)]
        a = k_bb[np.ix_(x, x)] + k_aa[np.ix_(y, y)]
        t = (a.sum() - np.diag(a).sum()) / (m - 1) - k_ab[np.ix_(y, x)].sum() * 2 / m
        values.append(t / m)
    return values


def kid_on_subsets(feats_a: np.ndarray, feats_b: np.ndarray, subsets: list[np.ndarray], num_subsets: int = 10,
                   max_subset_size: int = 1000, seed: int = 0) -> np.ndarray:
    """KID of the rows ``subsets[k]`` of ``feats_a`` against the whole of ``feats_b`` (kernel matrices
    computed once; ``num_subsets`` of clean-fid's random subsets each, from the same ``seed`` for every
    k, so the draws of ``feats_b``'s rows are shared and their noise cancels in the differences)."""
    grams = _kid_grams(feats_a, feats_b)
    return np.array([np.mean(_kid_subsets(feats_a, feats_b, np.asarray(i), num_subsets, max_subset_size, seed, grams))
                     for i in subsets])


def sifid_pair(map_a: torch.Tensor, map_b: torch.Tensor) -> float:
    """Frechet distance between the spatial feature samples of two (C, h, w) maps (SinGAN's SIFID)."""
    a = map_a.flatten(1).t().numpy()  # (h * w, C): one sample per position
    b = map_b.flatten(1).t().numpy()
    return frechet_distance(a, b)


def cached_features(key: dict[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Features for ``key`` from ``$SWAPBENCH_HOME/stats``, computed and stored on a miss.

    The key names everything the features depend on (data, split, resolution, N, extractor hash);
    it is hashed into the file name and stored in the file's header.
    """
    text = json.dumps(key, sort_keys=True)
    path = home() / "stats" / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.safetensors"
    cached = load_cached(path)  # None when absent or damaged (its contents are hashed)
    if cached is not None:
        return cached["features"].numpy()
    feats = compute()
    save_cached(path, {"features": torch.from_numpy(np.ascontiguousarray(feats))}, {"key": text})
    return feats
