from __future__ import annotations

import json

import pytest
import torch

from swapbench.checkpoint import load_checkpoint, save_checkpoint, sha256_file
from swapbench.errors import UserError
from swapbench.models.build import load_autoencoder
from swapbench.registry import LOSSES
from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer as Trainer


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(recipe, steps: int) -> Trainer:
    t = Trainer(recipe)
    batches = iter(t.loader())
    for _ in range(steps):
        t.train_step(next(batches))
    return t


def test_same_seed_same_weights(tiny):
    a, b = train(tiny, 3), train(tiny, 3)
    for name in ("autoencoder", "discriminator", "cooccur"):
        assert same(weights(getattr(a, name)), weights(getattr(b, name))), name
    c = train(load_recipe_with(tiny, seed=1), 3)
    assert not same(weights(a.autoencoder), weights(c.autoencoder))


def load_recipe_with(recipe, **changes):
    return recipe.model_validate({**recipe.to_dict(), **changes})


def test_step_reports_every_weighted_term(tiny):
    t = Trainer(tiny)
    batches = iter(t.loader())
    assert set(t.train_step(next(batches))) == {"d_real", "d_recon", "d_swap", "d_cooccur",
                                                "recon_l1", "g_recon", "g_swap", "g_cooccur"}
    losses = t.train_step(next(batches))  # the 2nd discriminator update (r1_interval 2) is followed by lazy R1
    assert set(losses) == {"d_real", "d_recon", "d_swap", "d_cooccur", "r1", "patch_r1",
                           "recon_l1", "g_recon", "g_swap", "g_cooccur"}
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_a_loss_with_weight_zero_is_not_computed(tiny):
    def boom(*args, **kwargs):
        raise AssertionError("a zero-weight loss was computed")

    t = Trainer(load_recipe_with(tiny, loss={**tiny.loss.model_dump(), "recon_l1": 0.0}))
    t.l1 = boom
    assert "recon_l1" not in t.train_step(next(iter(t.loader())))

    t = Trainer(tiny)
    t.l1 = boom
    with pytest.raises(AssertionError, match="zero-weight"):
        t.train_step(next(iter(t.loader())))

    # no co-occurrence discriminator: no crops are ever taken
    r = load_recipe_with(tiny, model={**tiny.model.model_dump(), "cooccur_discriminator": None},
                         loss={**tiny.loss.model_dump(), "cooccur": 0.0, "patch_r1": 0.0, "g_swap": 0.0, "d_swap": 0.0})
    t = Trainer(r)
    t._crops = boom
    losses = t.train_step(next(iter(t.loader())))
    assert t.cooccur is None and not any("cooccur" in k or "swap" in k or k == "patch_r1" for k in losses)


def test_checkpoint_round_trip_and_exact_resume(tiny, tmp_path):
    straight = train(tiny, 4)

    first = train(tiny, 2)
    path = first.save(tmp_path / "ckpt.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["step"] == 2 and meta["images_seen"] == 8 and meta["recipe_hash"] == tiny.hash()
    assert len(meta["sha256"]) == 64 and "git_commit" in meta

    resumed = Trainer(tiny)
    resumed.resume(path)
    assert resumed.step == 2 and same(weights(resumed.autoencoder), weights(first.autoencoder))
    batches = iter(resumed.loader())
    for _ in range(2):
        resumed.train_step(next(batches))
    # networks, optimiser moments, EMA, RNG and data position all came back: the result is identical
    for name in ("autoencoder", "discriminator", "cooccur"):
        assert same(weights(getattr(resumed, name)), weights(getattr(straight, name))), name
    assert same(weights(resumed.ema.module), weights(straight.ema.module))

    model, recipe, meta = load_autoencoder(path)
    assert recipe == tiny and meta["weights"] == "ema"
    assert same(weights(model), weights(first.ema.module))


def test_checkpoint_integrity_is_checked(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(3), "opt": {0: {"step": 3}}, "b": (1, 2)},
                           {"step": 1})
    state, meta = load_checkpoint(path)
    assert torch.equal(state["w"], torch.ones(3)) and state["opt"] == {0: {"step": 3}} and meta == {"step": 1}
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupt or was replaced"):
        load_checkpoint(path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="has no junk.json beside it"):  # nothing unhashed is read
        load_checkpoint(tmp_path / "junk.safetensors")
    (tmp_path / "junk.json").write_text(json.dumps({"sha256": sha256_file(tmp_path / "junk.safetensors")}))
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_fit_runs_to_the_image_budget_and_checkpoints(tiny, tmp_path):
    t = Trainer(tiny, checkpoint_dir=tmp_path)
    result = t.fit()
    assert result.steps == tiny.steps == 2 and result.images_seen == 8
    assert result.checkpoint == tmp_path / "last.safetensors" and result.checkpoint.is_file()


def test_a_cpu_budget_ends_training_early_and_counts_across_resumes(tiny, tmp_path):
    from swapbench.recipe import recipe_from_dict

    long = recipe_from_dict(tiny.to_dict(), ["train.images=40", "train.checkpoint_every=1"])  # 10 steps planned
    t = Trainer(recipe_from_dict(long.to_dict(), ["train.cpu_minutes=1e-6"]), checkpoint_dir=tmp_path)
    result = t.fit()  # any step uses more than 60 microseconds of CPU: it ends after the first
    assert result.steps == 1 < long.steps and result.checkpoint.is_file() and t.cpu_seconds > 0
    assert load_checkpoint(result.checkpoint)[0]["cpu_seconds"] == t.cpu_seconds
    resumed = Trainer(long)  # the same run without a budget: the CPU count carries on from the checkpoint
    resumed.resume(result.checkpoint)
    assert resumed.cpu_seconds == t.cpu_seconds
    assert resumed.fit().steps == long.steps == 10 and resumed.cpu_seconds > t.cpu_seconds


def test_optional_lpips_reconstruction_term(tiny):
    from test_weights import cached_or_skip

    cached_or_skip("lpips_vgg")
    t = Trainer(load_recipe_with(tiny, loss={**tiny.loss.model_dump(), "recon_lpips": 1.0}))
    losses = t.train_step(next(iter(t.loader())))
    assert losses["recon_lpips"] > 0
    assert "recon_lpips" not in Trainer(tiny).train_step(next(iter(t.loader())))


def test_reconstruction_warmup_trains_only_the_reconstruction_then_the_full_objective(tiny):
    warm = load_recipe_with(tiny, loss={**tiny.loss.model_dump(), "recon_warmup_images": 8})
    assert warm.hash() != tiny.hash() and load_recipe_with(tiny, loss=tiny.loss.model_dump()).hash() == tiny.hash()
    t = Trainer(warm)
    batches = iter(t.loader())
    d_before = [p.detach().clone() for p in t.discriminator.parameters()]
    ae_before = [p.detach().clone() for p in t.autoencoder.parameters()]
    for _ in range(2):  # batch 4: the first 8 images
        assert t.next_update() == "reconstruction"
        assert set(t.train_step(next(batches))) == {"recon_l1"}
    assert all(torch.equal(a, b) for a, b in zip(d_before, t.discriminator.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(ae_before, t.autoencoder.parameters()))
    assert t.d_steps == 0 and t.g_steps == 2
    assert t.next_update() == "both"
    assert {"d_real", "d_swap", "g_swap", "g_cooccur", "recon_l1"} <= set(t.train_step(next(batches)))


def test_lpips_reconstruction_term_can_use_alexnet(tiny):
    from test_weights import cached_or_skip

    cached_or_skip("lpips_alex")
    loss = {**tiny.loss.model_dump(), "recon_lpips": 1.0, "recon_lpips_net": "alex"}
    with pytest.raises(ValueError, match="recon_lpips_net=alex needs images of at least 31 px"):
        load_recipe_with(tiny, loss=loss)  # tiny is 16 px: AlexNet's pooling leaves nothing there
    t = Trainer(load_recipe_with(tiny, loss=loss, data={**tiny.data.model_dump(), "resolution": 32}))
    assert t.lpips.pnet_type == "alex"
    batch = next(iter(t.loader()))
    with torch.no_grad():
        recon = t.autoencoder(batch)
    expected = LOSSES.build("lpips", net="alex")(recon, batch).mean()
    assert t.train_step(batch)["recon_lpips"] == pytest.approx(float(expected), rel=1e-4)


def test_texture_cycle_never_trains_the_encoder_through_the_reencoding(tiny):
    """loss.texture_cycle is 1 - cos(t(swap), t(B)) with the swap re-encoded by a frozen encoder and
    t(B) detached: its gradients are those of the same loss computed with a frozen copy of the encoder
    (E still learns through the codes the swaps are made from, G through the swaps)."""
    import copy

    only_cycle = {**tiny.loss.model_dump(), "recon_l1": 0.0, "g_recon": 0.0, "g_swap": 0.0, "cooccur": 0.0,
                  "texture_cycle": 1.0}
    t = Trainer(load_recipe_with(tiny, loss=only_cycle, train={**tiny.train.model_dump(), "schedule": "alternate"}))
    batches = iter(t.loader())
    t.train_step(next(batches))  # the alternate schedule's first step updates the discriminators
    assert t.next_update() == "generator"
    batch = next(batches)
    ae = t.autoencoder

    frozen = copy.deepcopy(ae.encoder).requires_grad_(False)
    structure, texture = ae.encode(batch)
    swaps = ae.decode(structure, texture.roll(1, dims=0))
    expected = 1 - torch.nn.functional.cosine_similarity(frozen(swaps)[1], texture.roll(1, dims=0).detach()).mean()
    expected.backward()
    expected_grads = {k: p.grad.clone() for k, p in ae.named_parameters() if p.grad is not None}
    ae.zero_grad(set_to_none=True)

    grads = {}

    def record(optimizer, loss):  # the trainer's update, without the optimizer step
        loss.backward()
        grads.update({k: p.grad.clone() for k, p in ae.named_parameters() if p.grad is not None})

    t.update = record
    losses = t.train_step(batch)
    assert "recon_l1" not in losses and losses["texture_cycle"] == pytest.approx(float(expected.detach()), abs=1e-6)
    assert grads.keys() == expected_grads.keys() and any(k.startswith("encoder.") for k in grads)
    for k in grads:
        torch.testing.assert_close(grads[k], expected_grads[k], rtol=1e-4, atol=1e-7, msg=k)
    assert all(p.requires_grad for p in ae.encoder.parameters())  # switched back on after the re-encoding
    assert "texture_cycle" not in Trainer(tiny).train_step(next(batches))  # off by default (the authors' losses)


def test_one_discriminator_pass_judges_every_term_as_separate_calls_would(tiny):
    t = Trainer(tiny)
    x = next(iter(t.loader()))
    recon, swap, _ = t._forward(x)
    terms = {"d_real": (1.0, x), "d_recon": (0.5, recon.detach()), "d_swap": (0.5, swap.detach())}
    joint = t._image_logits(terms)
    for name, (_, images) in terms.items():
        assert torch.allclose(joint[name], t.discriminator(images), atol=1e-5, rtol=0), name
    # zero weights and missing batches are left out
    assert set(t._image_logits({"g_recon": (0.0, recon), "g_swap": (1.0, swap), "d_swap": (1.0, None)})) == {"g_swap"}

    # a registered discriminator that cannot keep batch statistics apart gets one call per term
    class PerCall(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def forward(self, images):
            self.sizes.append(images.shape[0])
            return images.flatten(1).mean(1)

    t.discriminator = PerCall()
    t._image_logits(terms)
    assert t.discriminator.sizes == [x.shape[0]] * 3


@pytest.mark.parametrize("reference", ["mean", "per_crop"])
def test_one_patch_encoder_pass_gives_the_logits_of_separate_passes(tiny, reference):
    co = {**tiny.cooccur.model_dump(), "n_ref": tiny.cooccur.n_crops} if reference == "per_crop" else tiny.cooccur.model_dump()
    t = Trainer(load_recipe_with(tiny, loss={**tiny.loss.model_dump(), "cooccur_reference": reference}, cooccur=co))
    x = next(iter(t.loader()))
    real, fake = x.roll(1, dims=0), t._forward(x).swap.detach()
    state = t.crop_rng.get_state()
    joint = t._patch_logits_real_and_fake(real, fake)
    t.crop_rng.set_state(state)  # the same crops, judged one call at a time
    ref = t._reference_features(t._crops(real, t.recipe.cooccur.n_ref))
    separate = (t._patch_logits(ref, real), t._patch_logits(ref, fake))
    for a, b in zip(joint, separate):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=0)
