"""recipes/sweeps/quality_per_cpu.yaml (issue 18): every variant resolves on swap_ae_synthetic and
changes only what its name says, plus train.images where its cost per image differs."""

from __future__ import annotations

from swapbench.experiments.sweep import load_sweep
from swapbench.recipe import load_recipe


def test_every_variant_resolves_and_changes_only_its_settings():
    spec, jobs, _ = load_sweep("quality_per_cpu")
    assert spec.base == "swap_ae_synthetic" and spec.seeds == [0] and len(jobs) == 21
    base = load_recipe("swap_ae_synthetic").flat()
    for job in jobs:
        flat = job.recipe.flat()
        changed = {k for k in flat if flat[k] != base[k]} - {"name"}
        declared = {o.split("=", 1)[0] for o in job.overrides}
        assert changed <= declared, (job.variant, changed - declared)
        assert job.recipe.data.dataset == "synthetic" and job.recipe.train.images >= 9000
    images = {j.variant: j.recipe.train.images for j in jobs}
    # the variants whose networks and work per image are the base's keep its budget
    for same in ("base", "lr_0.001", "lr_0.004", "no_ema", "ema_0.99", "cooccur_x2", "swap_gan_x2"):
        assert images[same] == 36000, same
    assert images["width_8"] > images["base"] > images["width_32"] and images["alternate"] > images["base"]


def test_the_quickstart_size_screening_sweep_changes_one_thing_per_variant():
    spec, jobs, _ = load_sweep("quality_per_cpu_small")
    assert spec.base == "synthetic_quickstart" and len(jobs) == 20
    base = load_recipe("synthetic_quickstart").flat()
    for job in jobs:
        flat = job.recipe.flat()
        changed = {k for k in flat if flat[k] != base[k]} - {"name"}
        assert changed == {o.split("=", 1)[0] for o in job.overrides} - {"seed"}, job.variant
    assert {j.recipe.data.resolution for j in jobs} == {32}
    _, combos, _ = load_sweep("quality_per_cpu_small_combo")
    assert {j.variant: (j.recipe.model.structure_downsample, j.recipe.loss.cooccur, j.recipe.train.images)
            for j in combos} == {"combo": (4, 2.0, 8000), "combo_budget_400": (4, 2.0, 32000)}
