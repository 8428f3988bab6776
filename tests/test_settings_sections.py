"""One way to pass a setting (issue 33): each network reads the section it declares when it registers
(encoder 'swap_ae': ``encoder``, generator 'swap_ae': ``generator``, discriminator 'stylegan2':
``discriminator``, discriminator 'cooccur': ``cooccur``, encoder 'timm': ``timm``); ``model.*`` keeps the
component names and the sizes several networks share. The settings that moved keep every recipe's hash,
an old key in a recipe or ``--set`` is a one-line error naming the new key, and stored recipes (checkpoints,
zoo models, MLflow runs) in the old layout are read with their keys moved."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import PAPER_ARCHITECTURE, TINY, invoke_cli, nested

from swapbench.errors import UserError
from swapbench.recipe import RENAMED_KEYS, Recipe, deep_merge, family_check, list_recipes, load_recipe, read_by, recipe_from_dict

ROOT = Path(__file__).resolve().parent.parent

# Recipe.hash() of every shipped recipe (first 16 hex digits), computed on main at e7902e0, before the
# settings moved: sweep keys, resume checks and zoo manifests rely on them staying the same.
HASHES_BEFORE_THE_MOVE = {
    "ablation_lpips_recon": "dbd596105285c60b", "ablation_no_cooc": "377ed297bb745b99",
    "ablation_no_cooc_256": "6c3f2f0fe40683b2", "ablation_no_recon_gan": "ddcc123e5ba4916e",
    "ablation_no_swap": "5c8a2e71139cdcdd", "ablation_no_swap_256": "326c61e25cacfe20",
    "bedroom_256": "b0d6b9b8e4d9bf20", "church_256": "e211ff9cba5e3ee4", "encoder_timm": "e3edf2309a54c694",
    "ffhq_1024": "68614ff3105d1e27", "ffhq_512": "c4316ae9745887aa", "mountain_512": "25bd5350b927da5e",
    "quickstart": "39afe998dd42bc4c", "reference_photos": "bd98cc6447b06903",
    "reference_stylegan2": "0ca5070a6cf318ea", "reference_synthetic": "03f681ee5f12c61c",
    "sg2_encoder": "cd6afdee2733b634", "small": "c7080cd0a4b59857", "stylegan2": "0a0d00cd07fdf280",
    "stylegan2_256": "8f7b521504ab788e", "swap_ae": "23737894f09cff24", "swap_ae_256": "b9ed2be0da3707f0",
    "swap_ae_synthetic": "a1d96cf5c8ef0923", "swaps_stylegan2_photos": "f9ad3d80187224d5",
    "swaps_stylegan2_synthetic": "cfa67fe0be101c6f", "synthetic_quickstart": "9136972b27bdb7a1",
    "texdim_2048": "6f5aada18f29422d", "texdim_256": "23737894f09cff24", "texdim_64": "c7202660677928f3",
    "texdim_8": "75e170a7b8e46582",
    # added after the move, at its first run (c0720582, record results/runs/stylegan2_quickstart.json)
    "stylegan2_quickstart": "d39da11071dbcaf5",
}
# sha256 (first 16 hex digits) of the JSON list of the sorted sweep keys of every run of the sweeps whose
# variants set a moved setting, computed on main at e7902e0 (sweep.py: a finished run with the same key is
# not run again, so a changed key would rerun the whole sweep)
SWEEP_KEYS_BEFORE_THE_MOVE = {
    "quality_per_cpu_small_patterns": "4255d0fc0e6d4ac3", "quality_per_cpu_small_positional": "b4e05233c6417490",
    "reference_lpips_recon": "7b8a16aaa208a360", "reference_synthetic_positional": "24226e24bf5c69d2",
}


def test_every_shipped_recipe_keeps_its_hash():
    assert set(list_recipes()) == set(HASHES_BEFORE_THE_MOVE)  # a new recipe: add its hash here
    changed = {name: load_recipe(name).hash()[:16] for name in HASHES_BEFORE_THE_MOVE}
    changed = {name: h for name, h in changed.items() if h != HASHES_BEFORE_THE_MOVE[name]}
    assert not changed


def test_sweeps_that_set_moved_settings_keep_their_run_keys():
    from swapbench.experiments.sweep import load_sweep

    for name, expected in SWEEP_KEYS_BEFORE_THE_MOVE.items():
        assert any(new in (ROOT / "recipes/sweeps" / f"{name}.yaml").read_text() for new in RENAMED_KEYS.values())
        _, jobs, _ = load_sweep(name)
        assert hashlib.sha256(json.dumps(sorted(j.key for j in jobs)).encode()).hexdigest()[:16] == expected, name


def test_each_network_reads_its_own_section():
    from swapbench.models.build import (
        SHARED_SIZES,
        build_autoencoder,
        build_cooccur_discriminator,
        build_discriminator,
        model_settings,
    )

    base = recipe_from_dict(deep_merge(TINY, nested({**PAPER_ARCHITECTURE, "encoder.texture_convs": 0})))
    assert set(model_settings(base)) == {"resolution", *SHARED_SIZES}

    def sizes(recipe):
        ae = build_autoencoder(recipe)
        nets = {"E": ae.encoder, "G": ae.generator, "D": build_discriminator(recipe),
                "Dc": build_cooccur_discriminator(recipe)}
        return {k: sum(p.numel() for p in net.parameters()) for k, net in nets.items()}

    before = sizes(base)
    for key, value, network in [("encoder.capacity", 0.125, "E"), ("generator.capacity", 0.5, "G"),
                                ("discriminator.capacity", 0.25, "D"), ("cooccur.capacity", 2.0, "Dc")]:
        after = sizes(recipe_from_dict(base.to_dict(), [f"{key}={value}"]))
        assert {k for k in before if after[k] != before[k]} == {network}, key
    assert read_by("encoder.capacity") == "encoder 'swap_ae'" and read_by("timm.backbone") == "encoder 'timm'"
    assert read_by("generator.fourier") == "generator 'swap_ae'"
    assert read_by("discriminator.mbstd") == "discriminator 'stylegan2'"
    assert read_by("cooccur.n_crops") == "discriminator 'cooccur', trainer 'swap_ae'"
    assert read_by("model.texture_dim") == "swapbench"


def test_a_moved_setting_in_a_recipe_or_set_is_a_one_line_error_naming_its_new_key(tmp_path):
    from swapbench.experiments.sweep import load_sweep

    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "texture_convs": 1}}))
    with pytest.raises(UserError) as from_file:
        load_recipe(old)
    assert str(from_file.value) == ("recipe old.yaml: model.texture_convs is now encoder.texture_convs "
                                    "(read by encoder 'swap_ae'); rename it")
    with pytest.raises(UserError, match=r"^--set model.discriminator_mbstd=4: model.discriminator_mbstd is now "
                                        r"discriminator.mbstd \(read by discriminator 'stylegan2'\); rename it$"):
        load_recipe("small", ["model.discriminator_mbstd=4"])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": "small", "variants": {"old": ["model.generator_fourier=4"]}}))
    with pytest.raises(UserError, match=r"^--set model.generator_fourier=4: model.generator_fourier is now "
                                        r"generator.fourier \(read by generator 'swap_ae'\); rename it$"):
        load_sweep(sweep)
    status, _, err = invoke_cli(["recipes", "show", str(old)])  # the command line: one line, exit status 2
    assert status == 2 and err == f"error: {from_file.value}\n"
    # every old key has a new home that a recipe accepts
    for new in RENAMED_KEYS.values():
        section, leaf = new.split(".")
        assert leaf in type(getattr(Recipe(), section)).model_fields, new


def test_stored_recipes_in_the_old_layout_are_read_with_their_keys_moved():
    """A zoo model's checkpoint header holds its recipe as swapbench wrote it then (every moved setting
    under model.*): it loads, its settings land in their sections, and its hash is the manifest's."""
    from swapbench.checkpoint import load_checkpoint
    from swapbench.models.build import recipe_of_checkpoint

    folder = ROOT / "zoo" / "reference_photos"
    _, meta = load_checkpoint(folder / "model.safetensors")
    stored = meta["recipe"]
    assert {"encoder_padding", "generator_noise", "discriminator_mbstd", "backbone"} <= set(stored["model"])
    recipe = recipe_of_checkpoint(meta, folder / "model.safetensors")
    assert recipe.hash() == json.loads((folder / "manifest.json").read_text())["recipe_hash"]
    assert (recipe.encoder.padding, recipe.generator.noise, recipe.discriminator.mbstd) == (
        stored["model"]["encoder_padding"], stored["model"]["generator_noise"], stored["model"]["discriminator_mbstd"])
    assert recipe.timm.backbone == stored["model"]["backbone"] and "encoder_padding" not in recipe.to_dict()["model"]
    # the same recipe in today's layout is the same recipe
    assert recipe == load_recipe(folder / "recipe.yaml")


def test_run_params_logged_before_the_move_compare_under_todays_keys():
    import pandas as pd

    from swapbench.experiments.figures import curve_x
    from swapbench.experiments.leaderboard import current_param_columns
    from swapbench.experiments.records import records_frame
    from swapbench.recipe import migrate_flat

    assert migrate_flat({"model.texture_convs": 1, "model.texture_dim": 8}) == {"encoder.texture_convs": 1,
                                                                              "model.texture_dim": 8}
    frame = records_frame([{"run_id": "a", "status": "FINISHED", "params": {"model.generator_fourier": "16"}}])
    assert "params.generator.fourier" in frame and "params.model.generator_fourier" not in frame
    mixed = current_param_columns(pd.DataFrame({"params.model.generator_fourier": ["16", None],
                                                "params.generator.fourier": [None, "8"]}))
    assert list(mixed.columns) == ["params.generator.fourier"] and list(mixed["params.generator.fourier"]) == ["16", "8"]
    assert list(curve_x(mixed, "generator.fourier")) == [16, 8]
    with pytest.raises(UserError, match=r"^the setting model.generator_fourier is now generator.fourier; name it so"):
        curve_x(mixed, "model.generator_fourier")


def test_a_family_registers_its_cross_checks_with_its_trainer():
    from swapbench.registry import TRAINERS
    from swapbench.training.swap_ae_checks import check_swap_ae
    from swapbench.training.trainer import Trainer

    assert family_check("swap_ae") is check_swap_ae

    def no_odd_texture_dim(recipe):
        if recipe.model.texture_dim % 2:
            raise ValueError(f"model.texture_dim={recipe.model.texture_dim} must be even for family 'checked'")

    class CheckedTrainer(Trainer):
        pass

    TRAINERS.add("checked", CheckedTrainer, check=no_odd_texture_dim)
    try:
        family = {**TINY, "model": {**TINY["model"], "family": "checked"}}
        assert recipe_from_dict(family).model.family == "checked"
        with pytest.raises(UserError, match=r"^recipe: model.texture_dim=7 must be even for family 'checked'$"):
            recipe_from_dict(family, ["model.texture_dim=7"])
        recipe_from_dict({**TINY, "model": {**TINY["model"], "texture_dim": 7}})  # swap_ae does not check that
        # a family with checks of its own checks its image sizes; one without needs a power-of-two side
        assert recipe_from_dict(family, ["data.resolution=24"]).data.resolution == 24
        TRAINERS.add("unchecked", CheckedTrainer)
        with pytest.raises(UserError, match=r"data.resolution=24 must be a power of two"):
            recipe_from_dict({**family, "model": {**family["model"], "family": "unchecked"}}, ["data.resolution=24"])
    finally:
        TRAINERS.remove("checked")
        TRAINERS.remove("unchecked")
    with pytest.raises(ValueError, match="check must be a function of the recipe"):
        TRAINERS.add("checked", CheckedTrainer, check="no_odd_texture_dim")
