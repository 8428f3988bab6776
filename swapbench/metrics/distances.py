"""Frechet and kernel distances on features, through clean-fid's own code, and the cache of
real-image features."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from typing import Any, Callable

import numpy as np
import torch
from scipy.linalg import LinAlgWarning

from swapbench.cache import load_cached, save_cached
from swapbench.weights import home

log = logging.getLogger(__name__)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID-style Frechet distance between Gaussians fitted to two feature sets (rows are samples).

    Computed by clean-fid's ``frechet_distance`` (scipy's sqrtm). With fewer samples than dimensions
    both covariances are singular, and sqrtm can return a large imaginary part, which clean-fid
    rejects; then the same quantity is computed exactly from the samples: for covariances
    A^T A / (n - 1) and B^T B / (m - 1), tr sqrt(S_a S_b) is the nuclear norm of A B^T divided by
    sqrt((n - 1)(m - 1)), because the nonzero eigenvalues of S_a S_b are the squared singular values
    of that n x m matrix.
    """
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    mu_a, mu_b = feats_a.mean(axis=0), feats_b.mean(axis=0)
    sigma_a, sigma_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    try:
        with warnings.catch_warnings():  # "Matrix is singular": expected whenever N < dimensions
            warnings.simplefilter("ignore", LinAlgWarning)
            return float(cleanfid_frechet(mu_a, sigma_a, mu_b, sigma_b))
    except ValueError as exc:  # "Imaginary component ..." from a singular product
        if min(len(feats_a), len(feats_b)) > feats_a.shape[1]:
            raise
        log.info("clean-fid's sqrtm failed (%s); using the exact sample-space form", exc)
        return frechet_distance_low_rank(feats_a, feats_b)


def frechet_distance_low_rank(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """The Frechet distance through the n x m sample-space matrix (exact, for few samples)."""
    a = feats_a - feats_a.mean(axis=0)
    b = feats_b - feats_b.mean(axis=0)
    na, nb = len(a) - 1, len(b) - 1
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = feats_a.mean(axis=0) - feats_b.mean(axis=0)
    return float(diff @ diff + (a * a).sum() / na + (b * b).sum() / nb - 2 * trace_sqrt)


def kernel_distance(feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float | None]:
    """KID (unbiased MMD^2 with clean-fid's cubic kernel) as (mean, std over subsets).

    clean-fid's ``kernel_distance`` returns the mean over ``num_subsets`` random subsets; calling it
    once per subset on the same seeded random stream gives exactly that mean and also the spread.
    When both sets are no larger than ``max_subset_size`` every "subset" is a whole set, the spread
    is zero by construction and says nothing, so the std is None. numpy's global random state is
    restored afterwards.
    """
    from cleanfid.fid import kernel_distance as cleanfid_kid

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        values = [cleanfid_kid(feats_a, feats_b, num_subsets=1, max_subset_size=max_subset_size)
                  for _ in range(num_subsets)]
    finally:
        np.random.set_state(state)
    whole_sets = max(len(feats_a), len(feats_b)) <= max_subset_size
    return float(np.mean(values)), None if whole_sets else float(np.std(values))


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
