"""StyleGAN2 baselines: generator, style mixing, inversion methods, projector schedule, `swapbench project`."""

from __future__ import annotations

import math

import mlflow
import pytest
import torch
import yaml
from conftest import TINY, run_cli

from baselines.inversion.encoder import SG2EncoderRefined
from baselines.inversion.projector import ProjectW, ProjectWPlus, ProjectWPlusImage2StyleGAN, projector_schedule
from baselines.inversion.settings import InversionConfig
from baselines.stylegan2.generator import StyleGAN2Generator, style_mix
from swapbench.errors import UserError
from swapbench.recipe import recipe_from_dict
from swapbench.training.trainer import build_trainer

SG2 = {**TINY, "name": "tiny_sg2",
       "model": {**TINY["model"], "family": "stylegan2", "generator": "stylegan2", "cooccur_discriminator": None},
       "loss": {"cooccur": 0, "patch_r1": 0, "r1_interval": 2},
       "stylegan2": {"w_dim": 16, "mapping_layers": 2, "path_length_interval": 2}}
FAST = InversionConfig(w_avg_samples=256)


def tiny_generator(seed: int = 0, resolution: int = 16) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    return StyleGAN2Generator(resolution, channels=4, max_channels=16, w_dim=16, mapping_layers=2).eval()


def test_generator_shapes_and_determinism():
    G = tiny_generator(resolution=32)
    assert G.num_ws == 2 + 2 * 3  # 4 px, then 8, 16, 32
    assert G.noise_sides == [4, 8, 8, 16, 16, 32, 32]
    z = torch.randn(3, 16)
    with torch.no_grad():
        a, b = G(z, noise="const"), G(z, noise="const")
        assert a.shape == (3, 3, 32, 32)
        assert torch.equal(a, b)
        assert torch.equal(G.sample(5, seed=7), G.sample(5, seed=7))
        assert not torch.equal(G.sample(5, seed=7), G.sample(5, seed=8))
        # noise inputs matter once their strengths are non-zero
        for conv in [G.conv4, *G.convs]:
            conv.noise_strength.data.fill_(0.5)
        assert not torch.equal(G(z, noise="const"), G(z, noise="none"))
        # truncation 0 maps every z to the tracked mean w
        G.mapping.w_avg.normal_()
        w0 = G.mapping(z, truncation=0.0)
        assert torch.allclose(w0, G.mapping.w_avg.expand_as(w0))


def test_style_mixing_takes_coarse_layers_from_a_and_fine_from_b():
    G = tiny_generator()
    ws_a, ws_b = torch.randn(2, G.num_ws, 16), torch.randn(2, G.num_ws, 16)
    crossover = 3
    seen = []
    styled = [G.conv4.conv, G.rgb4.conv]
    for i in range(len(G.to_rgbs)):
        styled += [G.convs[2 * i].conv, G.convs[2 * i + 1].conv, G.to_rgbs[i].conv]
    order = [0, 1] + [k for i in range(len(G.to_rgbs)) for k in (1 + 2 * i, 2 + 2 * i, 3 + 2 * i)]
    hooks = [m.affine.register_forward_hook(lambda mod, inp, out: seen.append(inp[0])) for m in styled]
    with torch.no_grad():
        G.synthesis(style_mix(ws_a, ws_b, crossover), noise="const")
    for h in hooks:
        h.remove()
    # the layers run in order: 4 px conv, 4 px ToRGB, then (up conv, conv, ToRGB) per level; a level's
    # ToRGB reads the same w as the next level's first conv, as in StyleGAN2
    assert len(seen) == len(order) == 2 + 3 * len(G.to_rgbs) and max(order) == G.num_ws - 1
    for layer, style in zip(order, seen):
        expected = ws_a if layer < crossover else ws_b
        assert torch.equal(style, expected[:, layer]), layer
    with pytest.raises(ValueError, match="crossover"):
        style_mix(ws_a, ws_b, G.num_ws)


@pytest.mark.parametrize(
    "t, lr, noise",
    [(0.0, 0.0, 0.05), (0.025, 0.05, 0.05 * (1 - 0.025 / 0.75) ** 2), (0.05, 0.1, 0.05 * (1 - 0.05 / 0.75) ** 2),
     (0.5, 0.1, 0.05 * (1 / 3) ** 2), (0.75, 0.1, 0.0), (0.875, 0.05, 0.0),
     (0.99, 0.1 * (0.5 - 0.5 * math.cos(0.04 * math.pi)), 0.0)],
)
def test_projector_schedule_matches_stylegan2_ada(t, lr, noise):
    s = InversionConfig()
    assert (s.lr, s.lr_rampup, s.lr_rampdown, s.initial_noise, s.noise_ramp, s.steps) == (0.1, 0.05, 0.25, 0.05, 0.75, 1000)
    got_lr, got_noise = projector_schedule(t, s.lr, s.lr_rampup, s.lr_rampdown, s.initial_noise, s.noise_ramp)
    assert got_lr == pytest.approx(lr, abs=1e-12)
    assert got_noise == pytest.approx(noise, abs=1e-12)


@pytest.mark.parametrize("method_cls", [ProjectW, ProjectWPlus, ProjectWPlusImage2StyleGAN])
def test_optimisers_lower_lpips_from_their_start(method_cls):
    G = tiny_generator(resolution=32)
    torch.manual_seed(1)
    targets = G.sample(2, seed=3)  # images the generator can make
    method = method_cls(G, FAST, "cpu", steps=30)
    start = method.start(2)
    noises = [torch.randn(2, 1, s, s) for s in G.noise_sides]
    before = method.distance(start, noises, targets)
    inv = method.invert(targets)
    assert inv.reconstructions.shape == targets.shape and inv.seconds > 0
    assert sorted(inv.curve) == [10, 30]
    assert inv.curve[30] < before
    assert inv.latents[0].shape == ((2, 1, 16) if method_cls is ProjectW else (2, G.num_ws, 16))


def test_sg2_encoder_trains_and_refinement_lowers_lpips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    sg2 = recipe_from_dict({**SG2, "data": {**SG2["data"], "resolution": 32}})
    trainer = build_trainer(sg2, checkpoint_dir=tmp_path / "g")
    trainer.fit()
    enc = recipe_from_dict({**SG2, "data": {**SG2["data"], "resolution": 32},
                            "model": {**SG2["model"], "family": "sg2_encoder", "encoder": "sg2_pyramid"},
                            "loss": {**SG2["loss"], "recon_l1": 0, "recon_l2": 1.0},
                            "optim": {"lr": 0.002, "betas": [0.9, 0.999]},
                            "inversion": {"generator": str(tmp_path / "g" / "last.safetensors")},
                            "train": {**SG2["train"], "images": 4 * 60, "ema": 0}})
    et = build_trainer(enc)
    batch = next(iter(et.loader()))
    first = et.train_step(batch)["recon_l2"]
    for _ in range(59):
        last = et.train_step(batch)["recon_l2"]
    assert last < 0.7 * first  # the encoder fits a fixed batch through the frozen generator

    refine = SG2EncoderRefined(et.inverter, InversionConfig(w_avg_samples=256, refine_steps=30), "cpu")
    x = batch[:2]
    with torch.no_grad():
        encoded = refine.model.encode(x).structure
    noises = [v.expand(2, -1, -1, -1) for v in refine.model.generator.const_noise()]
    before = refine.optimiser.distance(encoded, noises, x)
    with torch.no_grad():  # the starting point is exactly the encoder's reconstruction
        assert torch.allclose(refine.model.generator.synthesis(encoded, noise=noises), refine.model.reconstruct(x))
    inv = refine.invert(x)
    assert inv.curve[30] < before

    # a generator trained with other settings is refused with a one-line reason
    other = recipe_from_dict({**enc.model_dump(), "stylegan2": {**enc.stylegan2.model_dump(), "w_dim": 8}})
    with pytest.raises(UserError, match="stylegan2.w_dim: 16 there, 8 here"):
        build_trainer(other)


def test_search_flops_counts_the_latent_search_and_nothing_else():
    from torch.utils.flop_counter import FlopCounterMode

    from swapbench.experiments.projection import search_flops
    from swapbench.inversion import SwapAutoencoderEncoding
    from swapbench.models.build import build_autoencoder

    def counted(fn) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    # one pass: exactly the encoder, not the decode that makes the reconstruction
    sae = SwapAutoencoderEncoding(build_autoencoder(recipe_from_dict(TINY)).eval())
    with torch.no_grad():
        assert search_flops(sae, x) == counted(lambda: sae.model.encode(x)) > 0
    # an optimiser, counted at 1 and 2 steps, gives what 3 real steps count, less the final synthesis
    G = tiny_generator()
    method = ProjectW(G, FAST, steps=3)
    latent = method.start(1)
    with torch.no_grad():
        decode = counted(lambda: G.synthesis(method._ws(latent), noise="const"))
    three = counted(lambda: method.invert(x)) - decode
    assert search_flops(method, x) == three
    assert three > 3 * decode  # each step runs G forward and backward and LPIPS-VGG forward and backward


def test_project_cli_prints_and_logs_the_table(tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    base = {**TINY, "data": {**TINY["data"], "resolution": 32}, "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}
    (tmp_path / "sae.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sg2.yaml").write_text(yaml.safe_dump({**SG2, "data": base["data"],
                                                       "eval": {**base["eval"], "metrics": ["sample_kid"]}}))
    run_ids = {}
    for name in ("sae", "sg2"):
        done = run_cli("train", str(tmp_path / f"{name}.yaml"), "--no-progress", cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        run_ids[name] = done.stdout.split("run ")[1].split(":")[0]

    missing = run_cli("project", "--methods", "sae,sg2_w", "--n", "4", "--run", run_ids["sae"], cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "method 'sg2_w' needs a trained stylegan2 run; pass --run REF" in missing.stderr
    other = run_cli("project", "--methods", "sae", "--n", "4", "--run", run_ids["sg2"], cwd=tmp_path, env=env)
    assert other.returncode == 2 and f"besides the runs given: {run_ids['sg2']} (stylegan2)" in other.stderr

    # the family of each run is read from its recipe: the order of --run does not matter
    done = run_cli("project", "--methods", "sae,sg2_w,sg2_wplus", "--n", "4", "--steps", "10", "--no-progress",
                   "--run", run_ids["sg2"], "--run", run_ids["sae"], cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("| method"))
    for column in ("steps", "s/image (median)", "GFLOP/image", "recon_lpips_vgg", "recon_lpips_alex", "recon_psnr", "swap_fid",
                   "swap_kid", "sifid", "sae is faster by"):
        assert column in header
    assert "optimisers ran 10 steps" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| sg2_") or line.startswith("| sae ")]
    assert len(rows) == 3

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.search_runs(experiment_names=["projection"], output_format="list")
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for method in ("sae", "sg2_w", "sg2_wplus"):
        assert metrics[f"{method}.seconds_per_image"] > 0 and f"{method}.recon_lpips_vgg" in metrics
    assert metrics["sg2_w.sae_speedup"] > 1  # 10 optimisation steps take longer than one encoder pass
    assert metrics["sg2_w.gflop_per_image"] == metrics["sg2_wplus.gflop_per_image"] > metrics["sae.gflop_per_image"] > 0
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"projection.md", "projection.csv", "quality_vs_steps.png", "curves.json", "pairs.json",
            "reconstructions.png"} <= artifacts
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "sg2_w.curve_lpips")
    assert [m.step for m in history] == [10]


def test_stylegan2_resume_is_exact_and_checkpoint_loads_the_generator(tmp_path):
    from swapbench.models.build import load_autoencoder, load_model

    recipe = recipe_from_dict(SG2)

    def train(steps: int, trainer=None):
        t = trainer or build_trainer(recipe)
        batches = iter(t.loader())
        for _ in range(steps):
            t.train_step(next(batches))
        return t

    straight = train(4)  # steps 0 and 2 run R1 and path length, so pl_mean and lazy terms are covered
    first = train(2)
    path = first.save(tmp_path / "sg2.safetensors")
    resumed = build_trainer(recipe)
    resumed.resume(path)
    train(2, resumed)
    for name in ("generator", "discriminator"):
        a, b = getattr(resumed, name).state_dict(), getattr(straight, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert torch.equal(resumed.pl_mean, straight.pl_mean) and float(straight.pl_mean) > 0

    G, loaded, meta = load_model(path)
    assert isinstance(G, StyleGAN2Generator) and loaded == recipe and meta["weights"] == "ema"
    with pytest.raises(UserError, match="cannot reconstruct or swap"):
        load_autoencoder(path)


def test_image2stylegan_variant_uses_its_own_settings_and_keeps_the_noise_maps():
    G = tiny_generator(resolution=32)
    method = ProjectWPlusImage2StyleGAN(G, FAST, "cpu")
    assert method.steps == 5000 and method.settings.lr == 0.01 and method.settings.betas == (0.9, 0.999)
    assert method.settings.initial_noise == 0 and method.settings.noise_reg == 0
    # constant learning rate through the whole run, no latent noise
    s = method.settings
    for t in (0.0, 0.5, 0.99):
        assert projector_schedule(t, s.lr, s.lr_rampup, s.lr_rampdown, s.initial_noise, s.noise_ramp) == (0.01, 0.0)
    assert ProjectWPlusImage2StyleGAN(G, InversionConfig(w_avg_samples=256, steps=7), "cpu").steps == 7  # --steps wins
    torch.manual_seed(0)
    targets = G.sample(2, seed=3)
    noises = [torch.randn(2, 1, side, side) for side in G.noise_sides]
    latent, kept, _, _ = method.optimise(targets, 3, init_noise=noises)
    assert all(torch.equal(a, b) for a, b in zip(kept, noises))  # noise maps are not optimised
