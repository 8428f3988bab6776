"""Swap methods (issue 32): each moves its output toward what it optimises, each keeps A when A is
swapped with itself, and `swapbench swaps` scores and times them on the same pairs with the controls."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import TINY, run_cli
from PIL import Image

from baselines.inversion.settings import InversionConfig
from baselines.stylegan2.generator import StyleGAN2Generator
from baselines.swaps.gatys import GatysSwap, gram
from baselines.swaps.mixing import StyleMixSwap
from baselines.swaps.settings import GatysConfig, StrotssConfig
from baselines.swaps.strotss import StrotssSwap, laplacian_pyramid
from swapbench.registry import SWAPS
from swapbench.swaps import settings_of

FEW_LAYERS = ["relu1_1", "relu2_1", "relu3_1"]  # a 451-d hypercolumn keeps the STROTSS tests to seconds


def smooth_image(seed: int, side: int = 32, cells: int = 4) -> torch.Tensor:
    """A [-1, 1] image of random colours bilinearly spread over a cells x cells grid, with a fine stripe
    pattern of a random direction: layout and colours and texture all differ between seeds."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(1, 3, cells, cells, generator=g) * 2 - 1, size=side, mode="bilinear")
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    angle = float(torch.rand((), generator=g)) * np.pi
    stripes = torch.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 1.3)
    return (0.7 * x + 0.3 * stripes).clamp(-1, 1)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean())


def test_the_four_methods_are_registered():
    assert {"sae", "gatys", "strotss", "sg2_mix"} <= set(SWAPS.names())
    assert settings_of("gatys") == ("gatys", GatysConfig) and settings_of("sg2_mix") == ("inversion", InversionConfig)


def test_swap_settings_leave_every_recipe_hash_alone():
    import json
    from pathlib import Path

    from swapbench.recipe import load_recipe

    zoo = Path(__file__).resolve().parent.parent / "zoo" / "reference_photos_warmup"
    recipe = load_recipe(zoo / "recipe.yaml")
    assert "gatys" not in recipe.to_dict() and "strotss" not in recipe.to_dict()
    assert recipe.hash() == json.loads((zoo / "manifest.json").read_text())["recipe_hash"]


def test_gatys_moves_b_grams_closer_and_keeps_a_content():
    a, b = smooth_image(1), smooth_image(2)
    method = GatysSwap(None, GatysConfig(steps=40))
    out = method.swap(a, b)
    layers = method.settings.style_layers
    with torch.no_grad():
        target = {k: gram(v) for k, v in method.vgg(b, layers).items()}

        def gram_distance(x):
            feats = method.vgg(x, layers)
            return sum(float((gram(feats[k]) - target[k]).square().sum() / target[k].square().sum()) for k in layers)

        def content_distance(x):
            key = method.settings.content_layer
            return float((method.vgg(x, [key])[key] - method.vgg(a, [key])[key]).square().mean())

    assert gram_distance(out) < 0.8 * gram_distance(a)  # B's Gram matrices: closer than at the start (A)
    assert content_distance(out) < 0.25 * content_distance(b)  # A's content kept: far closer than B's
    assert method.evaluations == len(method.history) <= 40


def test_strotss_loss_decreases():
    a, b = smooth_image(3), smooth_image(4)
    settings = StrotssConfig(scales=1, steps_per_scale=20, output_samples=128, style_samples=128, lr=1e-2,
                             layers=FEW_LAYERS)
    method = StrotssSwap(None, settings)
    out = method.swap(a, b)
    # the objective at every position, at the start and at the end, against the same style samples
    a01, b01, out01 = (a + 1) / 2, (b + 1) / 2, (out + 1) / 2
    start = b01.mean(dim=(2, 3), keepdim=True) + laplacian_pyramid(a01, 1)[0]
    every = torch.arange(32 * 32)
    with torch.no_grad():
        content = method.hypercolumns(a01, every)
        style = method.style_targets(b01, torch.Generator().manual_seed(settings.seed))
        before = float(method.objective(start, content, style, settings.content_weight, every))
        after = float(method.objective(out01, content, style, settings.content_weight, every))
    assert after < 0.9 * before
    losses = [loss for _, loss in method.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_strotss_hypercolumns_read_maps_as_if_resized():
    method = StrotssSwap(None, StrotssConfig(layers=["relu2_1"]))
    x = (smooth_image(5) + 1) / 2
    positions = torch.tensor([0, 5, 77, 1023])
    cols = method.hypercolumns(x, positions)
    feat = method.vgg(x * 2 - 1, ["relu2_1"])["relu2_1"]
    resized = F.interpolate(feat, size=(32, 32), mode="bilinear", align_corners=False)[0].flatten(1).t()
    assert torch.allclose(cols[:, 3:], resized[positions], atol=1e-5)
    assert torch.allclose(cols[:, :3], x[0].flatten(1).t()[positions])


def tiny_generator() -> StyleGAN2Generator:
    torch.manual_seed(0)
    return StyleGAN2Generator(16, channels=4, max_channels=16, w_dim=16, mapping_layers=2).eval()


def test_sg2_mix_takes_coarse_layers_from_a_and_fine_from_b():
    method = StyleMixSwap(tiny_generator(), InversionConfig(steps=5, w_avg_samples=200, crossover=3))
    a, b = smooth_image(6, side=16), smooth_image(7, side=16)
    out = method.swap(a, b)
    ws_a, ws_b, ws = method.last["ws_a"], method.last["ws_b"], method.last["ws"]
    assert not torch.allclose(ws_a, ws_b)
    assert torch.equal(ws[:, :3], ws_a[:, :3]) and torch.equal(ws[:, 3:], ws_b[:, 3:])
    assert out.shape == a.shape and method.evaluations == 5


@pytest.mark.parametrize("name", ["sae", "gatys", "strotss", "sg2_mix"])
def test_swapping_a_with_itself_stays_close_to_a(name):
    if name == "sae":
        from swapbench.models.build import load_model
        from swapbench.zoo import model_path

        model = load_model(model_path("zoo:reference_photos_warmup"))[0]
        side = 64
    else:
        model = tiny_generator() if name == "sg2_mix" else None
        side = 16 if name == "sg2_mix" else 32
    settings = {"sae": None, "gatys": GatysConfig(steps=20),
                "strotss": StrotssConfig(steps_per_scale=10, output_samples=128, style_samples=128, layers=FEW_LAYERS),
                "sg2_mix": InversionConfig(steps=40, w_avg_samples=200)}[name]
    method = SWAPS.get(name)(model, settings, "cpu")
    a, b = smooth_image(8, side), smooth_image(9, side)
    out = method.swap(a, a)
    assert out.shape == a.shape
    assert mse(out, a) < 0.6 * mse(b, a) and mse(out, a) < mse(out, b)


def test_manifold_scores_are_prdc_means():
    import contextlib
    import io

    from prdc import compute_prdc

    from swapbench.evaluation.metrics.manifold import manifold_items

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 8)), rng.normal(0.5, 1.0, size=(30, 8))
    items = manifold_items(real, fake)
    with contextlib.redirect_stdout(io.StringIO()):
        pr = compute_prdc(real, fake, 3)
        dc = compute_prdc(real, fake, 5)
    assert items["precision"].mean() == pytest.approx(pr["precision"])
    assert items["recall"].mean() == pytest.approx(pr["recall"])
    assert items["density"].mean() == pytest.approx(dc["density"])
    assert items["coverage"].mean() == pytest.approx(dc["coverage"])
    assert len(items["precision"]) == 30 and len(items["coverage"]) == 40


def test_swaps_cli_scores_times_and_draws_every_method_on_the_same_pairs(tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    recipe = {**TINY, "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}
    (tmp_path / "sae.yaml").write_text(yaml.safe_dump(recipe))
    done = run_cli("train", str(tmp_path / "sae.yaml"), "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split("run ")[1].split(":")[0]

    done = run_cli("swaps", "--methods", "sae,gatys", "--n", "6", "--run", run_id, "--reference", "10",
                   "--set", "gatys.steps=4", "--out", str(tmp_path / "out" / "swaps"),
                   "--no-progress", cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("| method"))
    for column in ("s/swap (median)", "GFLOP/swap", "time / sae's", "swap_fid", "swap_texture_dist",
                   "swap_structure_dist", "swap_precision", "swap_recall", "swap_density", "swap_coverage"):
        assert column in header
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert rows == ["sae", "gatys", "control: copy_a", "control: copy_b", "control: blend"]

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.search_runs(experiment_names=["swaps"], output_format="list")
    metrics, params = run.data.metrics, run.data.params
    assert run.info.status == "FINISHED" and params["gatys.steps"] == "4" and "strotss.steps_per_scale" not in params
    assert metrics["sae.time_vs_sae"] == 1 and metrics["gatys.time_vs_sae"] > 1
    assert metrics["gatys.gflop_per_swap"] > metrics["sae.gflop_per_swap"] > 0
    for method in ("sae", "gatys"):
        assert f"{method}.control/copy_a/swap_structure_dist" in metrics
        assert 0 <= metrics[f"{method}.swap_precision"] <= 1
    assert metrics["gatys.control/copy_b/swap_texture_dist"] == 0
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"swaps.md", "swaps.csv", "swaps.png", "pairs.json"} <= artifacts
    provenance = json.loads((tmp_path / "out" / "swaps.json").read_text())
    assert provenance["run_id"] == run.info.run_id and len(provenance["pairs"]) == 6
    figure = Image.open(tmp_path / "out" / "swaps.png")
    # columns A, B, sae, gatys; a row per pair; 16 px images shown at 128 px with 4 px gaps and a 25 px header
    assert figure.size == (4 + 4 * 132, 25 + 4 + 6 * 132)
    assert (tmp_path / "out" / "swaps.md").read_text().startswith(f"MLflow run {run.info.run_id}")


def test_step_flops_matches_counting_the_whole_optimisation():
    from swapbench.experiments.projection import _counted_flops
    from swapbench.experiments.swaps import step_flops

    a, b = smooth_image(10, side=16), smooth_image(11, side=16)
    for method in (GatysSwap(None, GatysConfig(steps=20)),
                   StrotssSwap(None, StrotssConfig(steps_per_scale=6, output_samples=64, style_samples=64, layers=FEW_LAYERS))):
        whole = _counted_flops(lambda m=method: m.swap(a, b))  # the same swap, every evaluation counted
        assert method.evaluations > 2
        estimate = step_flops(method, method.settings, a, b, method.evaluations)
        assert abs(estimate - whole) < 0.05 * whole


def test_the_swaps_table_logs_every_score_the_claims_read():
    """`swapbench claims` reads a `swapbench swaps` run by the texture, structure and realism scores of each dataset
    (synthetic: the part scores against the true swap); a score outside the table's groups is never logged, and the
    claim could not be decided (as happened with the part scores before they were a table group)."""
    from swapbench.experiments.claims import REALISM, STRUCTURE, TEXTURE
    from swapbench.experiments.swaps import table_scores

    read = {REALISM, *TEXTURE.values(), *STRUCTURE.values()}
    assert read <= set(table_scores()), read - set(table_scores())
