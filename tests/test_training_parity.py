"""The training procedure at the authors' parity: patch crops, patch R1, the alternating schedule."""

from __future__ import annotations

import pytest
import torch
from test_trainer import load_recipe_with, same, weights

from swapbench.models.patches import draw_boxes, random_crops
from swapbench.recipe import load_recipe
from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer as Trainer

SIDE, P = 256, 8


def coordinate_image(batch: int = 2) -> torch.Tensor:
    """Channel 0 holds each pixel centre's normalised x, channel 1 its y (bilinear sampling of a ramp is exact)."""
    lin = (torch.arange(SIDE) + 0.5) / SIDE * 2 - 1
    x = lin.view(1, SIDE).expand(SIDE, SIDE)
    return torch.stack([x, x.t(), torch.zeros_like(x)]).expand(batch, 3, SIDE, SIDE).contiguous()


def measured_geometry(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed width (negative when mirrored) and height of each crop, read back from its sampled coordinates
    (from the second to the second-last sample, which lie inside the image for any crop)."""
    span = 2 * (P - 3) / (P - 1)  # the crop-relative distance between those two samples
    width = (crops[:, :, 0, P // 2, P - 2] - crops[:, :, 0, P // 2, 1]) / span
    height = (crops[:, :, 1, P - 2, P // 2] - crops[:, :, 1, 1, P // 2]) / span
    return width, height


def test_crops_have_free_aspect_ratios_and_random_flips():
    images = coordinate_image()
    crops = random_crops(images, 128, 1 / 8, 1 / 4, P, generator=torch.Generator().manual_seed(3))
    assert crops.shape == (2, 128, 3, P, P)
    width, height = measured_geometry(crops)
    boxes = draw_boxes(2, 128, 1 / 8, 1 / 4, generator=torch.Generator().manual_seed(3))
    # the sampled crops are exactly the drawn boxes: width and height drawn separately, mirrored ones negative
    assert torch.allclose(width, boxes.flip * boxes.width, atol=1e-4)
    assert torch.allclose(height, boxes.height, atol=1e-4)
    assert ((width.abs() >= 1 / 8 - 1e-4) & (width.abs() <= 1 / 4 + 1e-4)).all()
    aspect = width.abs() / height
    assert aspect.min() < 0.7 and aspect.max() > 1.4  # far from square both ways
    mirrored = (width < 0).float().mean()
    assert 0.3 < mirrored < 0.7  # flipped with probability 1/2
    # centres keep every crop inside the image
    assert ((boxes.cx.abs() + boxes.width) <= 1 + 1e-6).all() and ((boxes.cy.abs() + boxes.height) <= 1 + 1e-6).all()


def test_crops_come_from_the_generator_given_and_are_differentiable():
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    a = random_crops(images, 4, 0.125, 0.25, 8, generator=torch.Generator().manual_seed(0))
    b = random_crops(images, 4, 0.125, 0.25, 8, generator=torch.Generator().manual_seed(0))
    c = random_crops(images, 4, 0.125, 0.25, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    (grad,) = torch.autograd.grad(a.sum(), images)
    assert grad.abs().sum() > 0


@pytest.fixture
def alternate(tiny):
    return load_recipe_with(tiny, train={**tiny.train.model_dump(), "schedule": "alternate"})


def test_alternate_schedule_updates_d_then_g_on_different_batches(alternate):
    t = Trainer(alternate)
    seen: list[tuple[str, torch.Tensor]] = []
    d_update, g_update = t._discriminator_update, t._generator_update
    t._discriminator_update = lambda x, *a: (seen.append(("D", x.clone())), d_update(x, *a))[1]
    t._generator_update = lambda x, *a: (seen.append(("G", x.clone())), g_update(x, *a))[1]
    batches = iter(t.loader())
    inputs = [next(batches) for _ in range(4)]
    for batch in inputs:
        t.train_step(batch)
    assert [who for who, _ in seen] == ["D", "G", "D", "G"]
    for (_, x), batch in zip(seen, inputs):
        assert torch.equal(x, batch)  # each update on its own minibatch
    assert not torch.equal(inputs[0], inputs[1])
    # the authors' counting: every step's images are seen images, whichever networks it updated
    assert (t.step, t.images_seen, t.d_steps, t.g_steps) == (4, 4 * alternate.train.batch_size, 2, 2)


def test_alternate_schedule_leaves_the_other_side_unchanged(alternate):
    t = Trainer(alternate)
    batches = iter(t.loader())
    ae, d = weights(t.autoencoder), weights(t.discriminator)
    losses = t.train_step(next(batches))  # a discriminator step
    assert same(weights(t.autoencoder), ae) and not same(weights(t.discriminator), d)
    assert set(losses) == {"d_real", "d_recon", "d_swap", "d_cooccur"}
    d = weights(t.discriminator)
    losses = t.train_step(next(batches))  # a generator step; the log keeps the last D terms and R1 (interval 2)
    assert same(weights(t.discriminator), d) and not same(weights(t.autoencoder), ae)
    assert {"recon_l1", "g_recon", "g_swap", "g_cooccur", "d_real"} <= set(losses)


def test_fit_counts_images_over_both_kinds_of_step(alternate, tmp_path):
    r = load_recipe_with(alternate, train={**alternate.train.model_dump(), "images": 24})
    result = Trainer(r, checkpoint_dir=tmp_path).fit()
    assert result.steps == 6 and result.images_seen == 24


def test_exact_resume_in_the_middle_of_the_alternation(alternate, tmp_path):
    def run(trainer, steps):
        batches = iter(trainer.loader())
        for _ in range(steps):
            trainer.train_step(next(batches))
        return trainer

    straight = run(Trainer(alternate), 5)
    first = run(Trainer(alternate), 3)  # stops after a discriminator step: a generator step is next
    path = first.save(tmp_path / "ckpt.safetensors")
    resumed = Trainer(alternate)
    resumed.resume(path)
    assert resumed.next_update() == "generator" and (resumed.d_steps, resumed.g_steps) == (2, 1)
    run(resumed, 2)
    for name in ("autoencoder", "discriminator", "cooccur"):
        assert same(weights(getattr(resumed, name)), weights(getattr(straight, name))), name
    assert torch.equal(resumed.crop_rng.get_state(), straight.crop_rng.get_state())


@pytest.mark.parametrize("reference", ["mean", "per_crop"])
def test_patch_r1_penalises_judged_and_reference_crops(tiny, reference):
    r = load_recipe_with(tiny, loss={**tiny.loss.model_dump(), "r1_interval": 1, "cooccur_reference": reference})
    t = Trainer(r)
    calls = []
    original = t.r1

    def spy(logits, inputs):
        calls.append(inputs)
        return original(logits, inputs)

    t.r1 = spy
    t.train_step(next(iter(t.loader())))
    image_call, patch_call = calls
    assert isinstance(image_call, torch.Tensor)
    judged, ref = patch_call
    co = r.cooccur
    assert judged.shape[:2] == (r.train.batch_size, co.n_crops) and ref.shape[:2] == (r.train.batch_size, co.n_ref)
    logits = t.cooccur.discriminate(t._reference_features(ref), t.cooccur.extract_features(judged))
    g_judged, g_ref = torch.autograd.grad(logits.sum(), [judged, ref])
    assert g_judged.abs().sum() > 0 and g_ref.abs().sum() > 0  # both crop sets carry the penalty's gradient


def test_per_crop_references_need_as_many_references_as_crops(tiny_yaml):
    from swapbench.errors import UserError

    with pytest.raises(UserError, match="cooccur.n_ref=1 must equal cooccur.n_crops=2"):
        load_recipe(tiny_yaml, ["loss.cooccur_reference=per_crop", "cooccur.n_ref=1"])


def test_first_half_reconstructions_as_the_authors_save_memory(tiny):
    r = load_recipe_with(tiny, loss={**tiny.loss.model_dump(), "recon_images": "first_half"})
    t = Trainer(r)
    sizes = []
    decode = t.autoencoder.decode
    t.autoencoder.decode = lambda s, tex: (sizes.append(s.shape[0]), decode(s, tex))[1]
    losses = t.train_step(next(iter(t.loader())))
    b = r.train.batch_size
    assert sizes == [b // 2, b]  # reconstructions of half the batch, swaps of all of it
    assert {"recon_l1", "g_recon", "d_recon"} <= set(losses)
