"""Embedding rows: seconds per image at batch 1 of ``sae`` and each inversion method, by the timing
rules and code of ``swapbench project`` (:func:`swapbench.experiments.projection.invert_all` and
:func:`swapbench.experiments.projection.search_flops`), with the FLOP ratio beside the time ratio.

Without trained runs, each method gets a freshly built (untrained) model of the recipe its family
trains with: the time of a fixed number of steps does not depend on the weights, the reconstruction
quality does (it is not part of this table; ``swapbench project`` scores it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from swapbench.experiments.runs import TrainedRun
from swapbench.inversion import bench_methods, inversion_settings, speed_reference
from swapbench.recipe import BenchConfig, load_recipe

EMBED_COLUMNS = ("method", "steps", "images", "seconds_per_image", "gflop_per_image", "time_vs_sae",
                 "flops_vs_sae", "model")


def _fresh_method(name: str, settings: Any, device: torch.device, threads: int):
    from swapbench.registry import INVERSIONS, MODELS

    cls = INVERSIONS.get(name)
    recipe = load_recipe(MODELS.fresh_recipe(cls.needs), [f"train.threads={threads}"])
    model = MODELS.get(recipe.model.family)(recipe)
    return cls(model, settings, device), recipe, f"fresh (untrained) {recipe.name}"


def embed_rows(settings: BenchConfig, device: torch.device, threads: int,
               runs: dict[str, TrainedRun] | None = None) -> list[dict[str, Any]]:
    """Every method of ``embed_methods`` ('all': :func:`swapbench.inversion.bench_methods`) on the same test
    images (``runs``: trained runs by family, as ``swapbench project`` takes them; a family without one gets
    a fresh model)."""
    from swapbench.data import build_dataset, test_images
    from swapbench.experiments.projection import check_same_data, invert_all, load_method, search_flops
    from swapbench.registry import INVERSIONS

    runs = runs or {}
    inversion = inversion_settings(**{k: v for k, v in {"steps": settings.embed_steps,
                                                        "refine_steps": settings.embed_refine_steps}.items() if v})
    loaded = {}
    methods = bench_methods() if settings.embed_methods == "all" else settings.embed_methods
    for name in methods:
        if INVERSIONS.get(name).needs in runs:
            method, recipe, ref = load_method(name, runs, inversion, device)
            loaded[name] = (method, recipe, f"run {ref}")
        else:
            loaded[name] = _fresh_method(name, inversion, device, threads)
    recipe = check_same_data({m: r for m, (_, r, _) in loaded.items()})
    n = settings.embed_images
    recipe = recipe.with_test_images(max(n, 2))
    images = test_images(recipe, build_dataset(recipe, "test"))[:n]

    rows = []
    for name, (method, _, model) in loaded.items():
        torch.manual_seed(recipe.seed)
        result = invert_all(method, name, images)
        flops = search_flops(method, images[:1])
        rows.append({"method": name, "steps": result.steps, "images": n,  # steps None: one forward pass
                     "seconds_per_image": float(np.median(result.seconds)), "gflop_per_image": flops / 1e9,
                     "model": model})
    sae = next((r for r in rows if r["method"] == speed_reference()), None)
    for row in rows:
        row["time_vs_sae"] = row["seconds_per_image"] / sae["seconds_per_image"] if sae else None
        row["flops_vs_sae"] = (row["gflop_per_image"] / sae["gflop_per_image"]
                               if sae and sae["gflop_per_image"] else None)
    return [{c: row.get(c) for c in EMBED_COLUMNS} for row in rows]
