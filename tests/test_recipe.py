from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swapbench.errors import UserError
from swapbench.recipe import Recipe, describe_fields, list_recipes, load_recipe


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_are_the_papers():
    r = Recipe()
    assert (r.optim.lr, r.optim.betas) == (0.002, (0.0, 0.99))
    assert (r.loss.r1, r.loss.r1_interval, r.loss.patch_r1, r.loss.cooccur) == (10.0, 16, 1.0, 1.0)
    assert (r.loss.g_recon, r.loss.g_swap, r.loss.d_real, r.loss.d_recon, r.loss.d_swap) == (0.5, 1.0, 1.0, 0.5, 0.5)
    assert (r.cooccur.crop_min, r.cooccur.crop_max, r.cooccur.n_crops) == (0.125, 0.25, 8)
    assert (r.model.texture_dim, r.model.structure_channels, r.model.structure_downsample) == (2048, 8, 16)
    assert r.loss.recon_lpips == 0
    # the authors' networks at their 256 px size (issue 13)
    assert (r.data.resolution, r.cooccur.patch_size) == (256, 128)
    assert (r.model.widths, r.model.resample, r.encoder.padding, r.encoder.texture_convs) == ("paper", "fir", "reflect", 2)
    assert (r.generator.noise, r.generator.rgb_every_scale, r.discriminator.mbstd) == (True, False, 0)
    assert (r.cooccur.capacity, r.cooccur.max_channels, r.cooccur.head) == (4.0, 384, [2048, 2048, 1024])
    assert (r.encoder.capacity, r.generator.capacity, r.discriminator.capacity) == (1.0, 1.0, 1.0)


def test_every_setting_has_a_description():
    rows = describe_fields()
    assert len(rows) > 40
    assert all(desc for _, _, desc in rows), [k for k, _, d in rows if not d]


def test_every_number_setting_says_which_numbers_it_takes_and_every_float_is_finite():
    from swapbench.recipe import allowed_numbers

    takes = {key: allowed_numbers(key) for key, _, _ in describe_fields()}
    assert takes["optim.lr"] == "finite, 0 < x <= 1" and takes["model.texture_dim"] == "1 <= x <= 65,536"
    assert takes["seed"] == "-4,294,967,295 <= x <= 4,294,967,295" and takes["name"] == ""
    floats = [key for key, default, _ in describe_fields() if isinstance(default, float)]
    assert len(floats) > 30 and all(takes[key].startswith("finite") for key in floats), floats
    for key in floats:  # the schema refuses infinity and NaN in each of them, component sections included
        for bad in (".inf", "-.inf", ".nan"):
            with pytest.raises(UserError, match=f"{key}: Input should be a finite number"):
                load_recipe("small", [f"{key}={bad}"])


def test_yaml_only_overrides_and_name_defaults_to_file(tmp_path):
    r = load_recipe(write(tmp_path, "mine.yaml", {"model": {"texture_dim": 64}}))
    assert r.name == "mine"
    assert r.model.texture_dim == 64
    assert r.model.structure_channels == 8  # untouched default


def test_extends_merges_parent_then_child(tmp_path):
    write(tmp_path, "base.yaml", {"description": "base", "model": {"texture_dim": 64, "channels": 8}})
    r = load_recipe(write(tmp_path, "child.yaml", {"extends": "base.yaml", "model": {"channels": 4}}))
    assert (r.model.texture_dim, r.model.channels) == (64, 4)
    assert r.name == "child" and r.description == ""  # names are not inherited


def test_shipped_ablation_extends_swap_ae():
    base, abl = load_recipe("swap_ae"), load_recipe("ablation_no_cooc")
    assert abl.model.cooccur_discriminator is None and abl.loss.cooccur == 0 and abl.loss.patch_r1 == 0
    diff = {k for k, v in abl.flat().items() if base.flat()[k] != v}
    assert diff == {"name", "description", "model.cooccur_discriminator", "loss.cooccur", "loss.patch_r1"}


def test_extends_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", {"extends": "b.yaml"})
    write(tmp_path, "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(UserError, match="cycle: a.yaml -> b.yaml -> a.yaml"):
        load_recipe(tmp_path / "a.yaml")


def test_set_overrides_are_typed(tmp_path):
    r = load_recipe(write(tmp_path, "r.yaml", {}), ["model.texture_dim=64", "optim.betas=[0.5, 0.9]",
                                                   "model.cooccur_discriminator=null", "loss.cooccur=0",
                                                   "loss.patch_r1=0", "tracking.run_name=try 1"])
    assert r.model.texture_dim == 64
    assert r.optim.betas == (0.5, 0.9)
    assert r.model.cooccur_discriminator is None
    assert r.tracking.run_name == "try 1"


@pytest.mark.parametrize("data, overrides, message", [
    ({"model": {"texure_dim": 3}}, [], "unknown key 'model.texure_dim' (did you mean 'model.texture_dim'?)"),
    ({"modle": {}}, [], "unknown key 'modle' (did you mean 'model'?)"),
    ({}, ["train.imags=5"], "unknown key 'train.imags' (did you mean 'train.images'?)"),
    ({}, ["model.texture_dim"], "must look like key=value"),
    ({"model": 3}, [], "'model' is a section"),
    ({"model": {"texture_dim": -1}}, [], "model.texture_dim: Input should be greater than or equal to 1"),
    ({"train": {"batch_size": 1}}, [], "train.batch_size"),
])
def test_bad_keys_and_values_are_one_line_errors(tmp_path, data, overrides, message):
    with pytest.raises(UserError) as exc:
        load_recipe(write(tmp_path, "r.yaml", data), overrides)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("overrides, message", [
    (["cooccur.patch_size=128"], "cooccur.patch_size=128 is larger than data.resolution=64"),
    (["model.structure_downsample=3"], "model.structure_downsample=3 must be a power of two"),
    (["model.structure_downsample=64"], "structure code of at least 2x2"),
    (["data.resolution=40"], "model.structure_downsample=16 must be a power of two that divides data.resolution=40"),
    (["encoder.texture_convs=2"], "encoder.texture_convs=2 needs a structure code of at least 7 px"),
    (["model.cooccur_discriminator=null"], "loss.cooccur=1.0 needs the co-occurrence discriminator"),
    (["model.cooccur_discriminator=null", "loss.cooccur=0"], "loss.patch_r1=1.0 needs the co-occurrence"),
    (["cooccur.crop_min=0.5", "cooccur.crop_max=0.25"], "cooccur.crop_min=0.5 is larger than cooccur.crop_max=0.25"),
    (["data.scale=[0.8, 0.2]"], "data.scale=[0.8, 0.2] must satisfy"),
    (["eval.grid_size=9", "data.test_images=4"], "eval.grid_size=9 needs at least"),
])
def test_cross_field_checks(tmp_path, overrides, message):
    path = write(tmp_path, "r.yaml", {"data": {"resolution": 64}, "cooccur": {"patch_size": 16},
                                      "encoder": {"texture_convs": 1}})
    load_recipe(path)  # the base is valid
    with pytest.raises(UserError) as exc:
        load_recipe(path, overrides)
    assert message in str(exc.value)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(write(tmp_path, "bad.yaml", "model: {texture_dim: [1, 2\n"))
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_recipe(write(tmp_path, "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(UserError, match="recipe 'swap_aee' not found \\(did you mean 'swap_ae'\\?\\)"):
        load_recipe("swap_aee")


def test_every_shipped_recipe_validates():
    names = list_recipes()
    assert {"quickstart", "swap_ae", "swap_ae_256", "ablation_no_cooc"} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert r.name == name.split("/")[-1]


def test_every_shipped_sweep_expands_into_valid_recipes():
    """Each file in recipes/sweeps/ loads and every variant x seed of it is a valid recipe (a sweep whose grid
    reaches an impossible setting fails here, not hours into a run)."""
    from swapbench.experiments.sweep import load_sweep

    sweeps = sorted((Path(__file__).parents[1] / "recipes" / "sweeps").glob("*.yaml"))
    assert len(sweeps) >= 20
    for path in sweeps:
        spec, jobs, _ = load_sweep(path)
        assert jobs, f"{path.name} expands into no runs"


def test_gpu_recipe_has_the_paper_settings():
    r = load_recipe("swap_ae_256")
    assert r.data.resolution == 256 and r.model.structure_channels == 8 and r.model.structure_downsample == 16
    assert r.model.texture_dim == 2048 and r.optim.lr == 0.002 and r.optim.betas == (0.0, 0.99)
    assert (r.loss.r1, r.loss.r1_interval, r.loss.patch_r1) == (10, 16, 1)
    assert r.train.batch_size == 16 and r.train.images == 25_000_000


def test_flat_params_and_hash():
    r = load_recipe("quickstart")
    flat = r.flat()
    assert flat["model.texture_dim"] == r.model.texture_dim and flat["optim.betas"] == [0.0, 0.99]
    assert r.hash() == load_recipe("quickstart").hash()
    assert r.hash() != load_recipe("quickstart", ["seed=1"]).hash()


def test_recipes_are_found_in_an_installed_package_without_a_checkout(tmp_path, monkeypatch):
    import swapbench.recipe as recipe_module

    installed = tmp_path / "site-packages" / "swapbench" / "_recipes"
    (installed / "sweeps").mkdir(parents=True)
    (installed / "mine.yaml").write_text("description: shipped\nmodel: {texture_dim: 32}\n")
    (installed / "sweeps" / "grid.yaml").write_text("description: nested\n")
    monkeypatch.setattr(recipe_module, "CHECKOUT_RECIPES", tmp_path / "no-checkout")
    monkeypatch.setattr(recipe_module, "INSTALLED_RECIPES", installed)
    monkeypatch.chdir(tmp_path)
    assert set(list_recipes()) == {"mine"}
    assert set(list_recipes(sweeps=True)) == {"sweeps/grid"}
    assert load_recipe("mine").model.texture_dim == 32


def test_with_test_images_rescales_the_scored_set_and_keeps_the_rest():
    base = load_recipe("quickstart")
    small = base.with_test_images(3)
    assert (small.data.test_images, small.eval.swap_pairs, small.eval.grid_size) == (3, 3, 3)
    assert small.model == base.model and small.train == base.train and small.data.resolution == base.data.resolution
    assert base.data.test_images != 3  # the original is left as it was


def test_adding_a_setting_at_its_neutral_value_keeps_every_hash():
    """Recipe.hash keys sweeps, resume checks and zoo manifests: settings added later (HASH_NEUTRAL)
    stay out of it at their neutral value, so the small recipe (the quickstart before issue 18) hashes as the
    quickstart did before train.cpu_minutes existed, and each shipped zoo model's recipe.yaml still has the
    hash its manifest records."""
    import json
    from pathlib import Path

    from swapbench.recipe import HASH_NEUTRAL, load_recipe, recipe_from_dict

    small = load_recipe("small")
    assert small.hash().startswith("c7080cd0a4b5") and small.train.cpu_minutes is None
    assert "train.cpu_minutes" in HASH_NEUTRAL
    assert recipe_from_dict(small.to_dict(), ["train.cpu_minutes=5"]).hash() != small.hash()
    zoo = Path(__file__).resolve().parent.parent / "zoo"
    manifests = sorted(zoo.glob("*/manifest.json"))
    assert manifests  # the checkout ships its reference models
    for manifest in manifests:
        recorded = json.loads(manifest.read_text())["recipe_hash"]
        assert load_recipe(manifest.parent / "recipe.yaml").hash() == recorded, manifest.parent.name


def test_the_quickstart_is_the_small_recipe_with_a_warm_up_and_one_score_less():
    """quickstart.yaml extends small.yaml (the quickstart before issue 18) with the settings its comment
    names and nothing else; it scores everything registered but the authors' FID against the structure
    images."""
    small, quick = load_recipe("small").flat(), load_recipe("quickstart").flat()
    changed = {k for k in small.keys() | quick.keys() if small.get(k) != quick.get(k)} - {"name", "description"}
    assert changed == {"model.structure_downsample", "model.structure_channels", "loss.recon_lpips",
                       "loss.recon_lpips_net", "loss.recon_warmup_images", "train.images", "eval.skip_metrics",
                       "data.augment"}
    assert 0 < quick["loss.recon_warmup_images"] < quick["train.images"]  # the full objective gets the rest
    assert quick["eval.metrics"] == "all" and quick["eval.skip_metrics"] == ["swap_fid_vs_structure"]


def test_skip_metrics_needs_metrics_all_and_registered_names():
    assert load_recipe("small", ["eval.skip_metrics=[swap_fid_vs_structure]"]).eval.skip_metrics == ["swap_fid_vs_structure"]
    with pytest.raises(UserError, match="applies to eval.metrics 'all' only"):
        load_recipe("small", ["eval.metrics=[recon_psnr]", "eval.skip_metrics=[swap_fid]"])
    with pytest.raises(UserError, match="swap_fdi"):
        load_recipe("small", ["eval.skip_metrics=[swap_fdi]"])
    assert load_recipe("small", ["eval.skip_metrics=[]"]).hash() == load_recipe("small").hash()
    # a set: order and repeats do not change the recipe or its hash
    two = load_recipe("small", ["eval.skip_metrics=[swap_kid, swap_fid, swap_kid]"])
    assert two.eval.skip_metrics == ["swap_fid", "swap_kid"]
    assert two.hash() == load_recipe("small", ["eval.skip_metrics=[swap_fid, swap_kid]"]).hash()
