"""The launcher recipes build the authors' networks, and their checkpoints convert into swapbench's.

``fixtures/authors_networks.json`` holds, per launcher of the authors' code, the parameter count of
E, G, D and Dpatch and the state-dict key -> shape list their ``save`` writes; both were recorded
by instantiating their SwappingAutoencoderModel on the CPU with each launcher's options (how:
fixtures/README.md). The counts below are those numbers, pinned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from swapbench.errors import UserError
from swapbench.model_report import network_report
from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator, load_autoencoder
from swapbench.official import convert_state, official_key
from swapbench.recipe import load_recipe

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "authors_networks.json").read_text())["launchers"]

# measured from the authors' code (fixtures/README.md); E, G, D, Dpatch
AUTHORS_PARAMS = {
    "church_256": (30_584_872, 25_064_743, 28_859_521, 24_522_145),
    "bedroom_256": (30_584_872, 25_064_743, 28_859_521, 24_522_145),
    "ffhq_512": (30_584_872, 25_064_743, 28_978_241, 24_522_145),
    "ffhq_1024": (18_501_329, 19_913_160, 27_172_897, 24_529_169),
    "mountain_512": (30_584_872, 25_064_743, 28_978_241, 24_522_145),
}


def _meta_networks(recipe):
    with torch.device("meta"):
        return {"autoencoder": build_autoencoder(recipe), "discriminator": build_discriminator(recipe),
                "cooccur": build_cooccur_discriminator(recipe)}


@pytest.mark.parametrize("launcher", sorted(AUTHORS_PARAMS))
def test_launcher_recipes_have_the_authors_parameter_counts(launcher):
    assert tuple(FIXTURE[launcher]["params"][n] for n in ("E", "G", "D", "Dpatch")) == AUTHORS_PARAMS[launcher]
    nets = network_report(load_recipe(launcher))["networks"]
    counts = tuple(nets[n]["params"] for n in ("encoder", "generator", "discriminator", "patch_discriminator"))
    assert counts == AUTHORS_PARAMS[launcher]


@pytest.mark.parametrize("launcher", sorted(AUTHORS_PARAMS))
def test_every_authors_key_maps_to_one_swapbench_parameter(launcher):
    recipe = load_recipe(launcher)
    nets = _meta_networks(recipe)
    theirs = {k: torch.empty(shape, device="meta") for k, shape in FIXTURE[launcher]["state_dict"].items()}
    converted = convert_state(theirs, nets, recipe)
    for name, net in nets.items():
        assert set(converted[name]) == set(net.state_dict())
    mapped = {official_key(f"{n}.{k}", recipe) for n, net in nets.items() for k in net.state_dict()}
    assert len(mapped) == sum(len(net.state_dict()) for net in nets.values())  # one-to-one


def test_model_command_prints_counts_and_code_shapes(tmp_path):
    result = run_cli("model", "church_256", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["structure_code"] == [8, 16, 16] and report["texture_code"] == [2048]
    assert report["networks"]["patch_discriminator"]["feature_dim"] == 1536
    assert report["networks"]["encoder"]["params"] == AUTHORS_PARAMS["church_256"][0]
    assert all(row["gflop"] > 0 for row in report["networks"].values())
    table = run_cli("model", "ffhq_1024", cwd=tmp_path)
    assert table.returncode == 0 and "18,501,329" in table.stdout and "[1536]" in table.stdout


def _random_official(launcher: str, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in FIXTURE[launcher]["state_dict"].items():
        if key == "num_discriminator_iters":
            state[key] = torch.tensor([1234])
        else:
            state[key] = torch.randn(shape, generator=g) * 0.5
    return state


@pytest.mark.parametrize("launcher, forward", [("church_256", True), ("ffhq_512", False)])
def test_import_official_round_trip(tmp_path, launcher, forward):
    """ffhq_512's encoder and generator are church_256's (only D differs), so only church runs them."""
    official = _random_official(launcher, seed=0)
    src = tmp_path / "latest_checkpoint.pth"
    torch.save(official, src)
    out = tmp_path / f"{launcher}.safetensors"
    result = run_cli("import-official", str(src), "--recipe", launcher, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["imported_from"]["discriminator_iterations"] == 1234 and len(meta["sha256"]) == 64

    model, recipe, _ = load_autoencoder(out)
    assert recipe.name == launcher
    # every value arrived where the key rules put it
    params = dict(model.named_parameters())
    for name in ("encoder.trunk.2.conv2.conv.weight", "generator.up_blocks.3.conv1.conv.weight",
                 "generator.blocks.0.conv1.noise_strength", "generator.to_rgb.bias"):
        theirs = official[official_key(f"autoencoder.{name}", recipe)]
        assert torch.equal(params[name].detach(), theirs.reshape(params[name].shape))
    if not forward:
        return
    # deterministic outputs that do not depend on the batch (eval mode uses fixed noise maps); 112 px is
    # the smallest input whose 7x7 structure code the texture branch's two unpadded convs accept
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        s, t = model.encode(x)
        y = model.decode(s, t)
        assert torch.equal(model.decode(s, t), y)
        assert torch.allclose(model.decode(s[1:], t[1:]), y[1:], atol=1e-5)
    assert torch.isfinite(y).all() and y.shape == x.shape
    assert torch.allclose(s.square().sum(1), torch.ones(1), atol=1e-4)
    assert torch.allclose(t.norm(dim=1), torch.ones(2), atol=1e-5)


def _tiny_official(launcher):
    return {k: torch.empty(shape, device="meta") for k, shape in FIXTURE[launcher]["state_dict"].items()}


def test_wrong_shape_missing_key_and_extra_key_are_one_line_errors():
    recipe = load_recipe("church_256")
    nets = _meta_networks(recipe)
    wrong = _tiny_official("church_256")
    wrong["G.ToRGB.conv.weight"] = torch.empty(1, 3, 64, 1, 1, device="meta")
    with pytest.raises(UserError, match=r"G\.ToRGB\.conv\.weight has shape \[1, 3, 64, 1, 1\] but .*\[3, 128, 1, 1\]"):
        convert_state(wrong, nets, recipe)
    missing = _tiny_official("church_256")
    del missing["E.ToGlobalCode.0.bias"]
    with pytest.raises(UserError, match=r"lacks 1 key\(s\).*E\.ToGlobalCode\.0\.bias"):
        convert_state(missing, nets, recipe)
    extra = _tiny_official("church_256")
    extra["G.ToRGB.extra"] = torch.empty(3, device="meta")
    with pytest.raises(UserError, match=r"has 1 key\(s\) the recipe's networks do not have: G\.ToRGB\.extra"):
        convert_state(extra, nets, recipe)
    # an ffhq_1024 checkpoint given the church recipe names the keys that differ
    with pytest.raises(UserError, match="lacks .* key"):
        convert_state(_tiny_official("ffhq_1024"), nets, recipe)


def test_import_official_refuses_through_the_cli(tmp_path):
    src = tmp_path / "partial.pth"
    torch.save({"E.FromRGB.Conv.weight": torch.zeros(32, 3, 1, 1)}, src)
    out = tmp_path / "out.safetensors"
    result = run_cli("import-official", str(src), "--recipe", "church_256", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "lacks 222 key(s)" in lines[0]
    assert "D.stylegan2_D.convs.0.Act.bias" in lines[0]
    assert not out.exists() and not out.with_suffix(".json").exists()
    # a recipe that is not the authors' architecture
    result = run_cli("import-official", str(src), "--recipe", "swap_ae", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2 and "model.widths='uniform'" in result.stderr
    # a file that is not a state dict readable with weights_only=True
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    result = run_cli("import-official", str(tmp_path / "bad.pth"), "--recipe", "church_256", "--out", str(out),
                     cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert "torch.load(weights_only=True)" in result.stderr


def test_checkpoints_from_before_the_parity_networks_are_refused(tmp_path, tiny):
    from swapbench.checkpoint import save_checkpoint
    from swapbench.models.build import load_model, recipe_of_checkpoint

    old = tiny.to_dict()  # as stored then: the flat model.* layout, without the settings of the parity networks
    for key in ("widths", "resample"):
        old["model"].pop(key)
    old["model"]["generator_blocks"] = old["generator"]["blocks"]
    for section in ("encoder", "generator", "discriminator", "timm"):
        del old[section]
    path = save_checkpoint(tmp_path / "old.safetensors", {"autoencoder": {"x": torch.zeros(1)}}, {"recipe": old})
    with pytest.raises(UserError, match="predates swapbench's paper-parity networks.*retrain"):
        load_model(path)
    result = run_cli("evaluate", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "predates" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # a StyleGAN2 baseline checkpoint of that time keeps its (unchanged) networks
    old["model"].update(family="stylegan2", generator="stylegan2", cooccur_discriminator=None)
    old["loss"].update(cooccur=0, patch_r1=0)
    recipe = recipe_of_checkpoint({"recipe": old}, path)
    assert (recipe.model.widths, recipe.model.resample, recipe.discriminator.mbstd) == ("uniform", "average", 4)
