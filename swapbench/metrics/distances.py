"""Frechet and kernel distances on features, through clean-fid's own code, and the cache of
real-image features."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from swapbench.weights import home


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID-style Frechet distance between Gaussians fitted to two feature sets (rows are samples)."""
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    mu_a, mu_b = feats_a.mean(axis=0), feats_b.mean(axis=0)
    sigma_a, sigma_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    return float(cleanfid_frechet(mu_a, sigma_a, mu_b, sigma_b))


def kernel_distance(feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (unbiased MMD^2 with clean-fid's cubic kernel) as (mean, std over subsets).

    clean-fid's ``kernel_distance`` returns the mean over ``num_subsets`` random subsets; calling it
    once per subset on the same seeded random stream gives exactly that mean and also the spread.
    numpy's global random state is restored afterwards.
    """
    from cleanfid.fid import kernel_distance as cleanfid_kid

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        values = [cleanfid_kid(feats_a, feats_b, num_subsets=1, max_subset_size=max_subset_size)
                  for _ in range(num_subsets)]
    finally:
        np.random.set_state(state)
    return float(np.mean(values)), float(np.std(values))


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
    if path.is_file():
        return load_file(str(path))["features"].numpy()
    feats = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    save_file({"features": torch.from_numpy(np.ascontiguousarray(feats))}, str(tmp), metadata={"key": text})
    tmp.replace(path)
    return feats
