from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import PAPER_ARCHITECTURE

from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator
from swapbench.models.patches import random_crops
from swapbench.nn.layers import ModulatedConv2d, channel_table
from swapbench.recipe import load_recipe

PAPER = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in PAPER_ARCHITECTURE.items()]


@pytest.mark.parametrize("resolution, downsample, structure_channels, texture_dim, architecture", [
    (16, 4, 2, 8, "cpu"), (32, 8, 8, 64, "cpu"), (64, 16, 4, 32, "cpu"), (64, 2, 1, 16, "cpu"), (128, 16, 8, 2048, "cpu"),
    (16, 4, 2, 8, "paper"), (32, 8, 8, 64, "paper"),  # the authors' widths (the default) are slow beyond this
])
def test_shapes(tiny_yaml, resolution, downsample, structure_channels, texture_dim, architecture):
    sets = [f"data.resolution={resolution}", f"model.structure_downsample={downsample}",
            f"model.structure_channels={structure_channels}", f"model.texture_dim={texture_dim}"]
    if architecture == "paper":
        sets += PAPER + (["encoder.texture_convs=1"] if resolution // downsample < 7 else [])
    r = load_recipe(tiny_yaml, sets)
    torch.manual_seed(0)
    ae, D, Dc = build_autoencoder(r), build_discriminator(r), build_cooccur_discriminator(r)
    x = torch.randn(4, 3, resolution, resolution)
    s, t = ae.encode(x)
    assert s.shape == (4, structure_channels, resolution // downsample, resolution // downsample)
    assert t.shape == (4, texture_dim)
    assert ae.decode(s, t).shape == x.shape
    assert D(x).shape == (4,)
    crops = random_crops(x, 3, 0.125, 0.25, r.cooccur.patch_size)
    ref = random_crops(x, 2, 0.125, 0.25, r.cooccur.patch_size)
    assert crops.shape == (4, 3, 3, r.cooccur.patch_size, r.cooccur.patch_size)
    assert Dc(crops, reference=ref).shape == (4, 3)


def test_widths_scale_with_resolution():
    assert channel_table(256, 32, 512) == {256: 32, 128: 64, 64: 128, 32: 256, 16: 512, 8: 512, 4: 512, 2: 512, 1: 512}
    assert channel_table(32, 8, 64, min_resolution=4) == {32: 8, 16: 16, 8: 32, 4: 64}


def test_swap_takes_structure_from_a_and_texture_from_b(tiny):
    torch.manual_seed(0)
    ae = build_autoencoder(tiny).eval()
    a, b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    seen = {}
    hook = ae.generator.register_forward_hook(lambda m, args, out: seen.update(structure=args[0], texture=args[1]))
    with torch.no_grad():
        out = ae.swap(a, b)
        ca, cb = ae.encode(a), ae.encode(b)
    hook.remove()
    assert torch.equal(seen["structure"], ca.structure) and torch.equal(seen["texture"], cb.texture)
    with torch.no_grad():
        assert torch.allclose(out, ae.decode(ca.structure, cb.texture))
        # changing B's texture code changes the swap ...
        assert not torch.allclose(out, ae.decode(ca.structure, cb.texture + 0.5), atol=1e-4)
        # ... changing A's texture code does not (the generator never receives it, as the hook shows)
        assert torch.allclose(out, ae.decode(ca.structure, cb.texture), atol=0)
        assert torch.allclose(ae.decode(ca.structure, cb.texture), ae.decode(ca.structure, ae.encode(b).texture))
        # while A's structure does matter
        assert not torch.allclose(ae.swap(torch.randn(2, 3, 16, 16), b), out, atol=1e-4)


def test_modulated_conv_equals_grouped_conv_with_demodulated_weights():
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, style_dim=6)
    x, style = torch.randn(3, 5, 8, 8), torch.randn(3, 6)
    s = conv.affine(style)
    w = conv.weight[None] * conv.scale * s[:, None, :, None, None]  # (N, out, in, k, k)
    w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    ref = F.conv2d(x.reshape(1, 15, 8, 8), w.reshape(21, 5, 3, 3), padding=1, groups=3).reshape(3, 7, 8, 8)
    assert torch.allclose(conv(x, style), ref, atol=1e-5)


def test_timm_encoder_through_the_registry(tiny_yaml):
    from swapbench.errors import UserError

    r = load_recipe(tiny_yaml, ["data.resolution=32", "model.encoder=timm", "model.structure_downsample=8",
                                "model.texture_dim=16", "model.structure_channels=4"])
    ae = build_autoencoder(r)
    s, t = ae.encode(torch.randn(2, 3, 32, 32))
    assert s.shape == (2, 4, 4, 4) and t.shape == (2, 16)
    assert ae.decode(s, t).shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="feature maps at 1/"):
        build_autoencoder(load_recipe(tiny_yaml, ["model.encoder=timm", "model.structure_downsample=64",
                                                  "data.resolution=128"]))
    with pytest.raises(UserError, match="timm has no model 'resnet_nope'"):
        build_autoencoder(load_recipe(tiny_yaml, ["model.encoder=timm", "timm.backbone=resnet_nope"]))


# -- the authors' architecture, swapbench's default components (issue 13) -------------------------

def _paper(tiny_yaml, *sets):
    return load_recipe(tiny_yaml, [*PAPER, "data.resolution=32", "model.structure_downsample=4",
                                   "model.texture_dim=16", *sets])


def test_codes_are_l2_normalised_in_the_encoder_and_again_in_the_generator(tiny_yaml):
    torch.manual_seed(0)
    ae = build_autoencoder(_paper(tiny_yaml)).eval()
    with torch.no_grad():
        s, t = ae.encode(torch.randn(3, 3, 32, 32))
        assert torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)
        assert torch.allclose(s.norm(dim=1), torch.ones(3, 8, 8), atol=1e-5)  # per position
        # the generator normalises again: scaled codes give the same image
        assert torch.allclose(ae.decode(s * 3.0, t * 0.1), ae.decode(s, t), atol=1e-5)


def test_generator_texture_modulates_the_structure_input_and_noise_is_on(tiny_yaml):
    from swapbench.nn.layers import StyledConv

    torch.manual_seed(0)
    ae = build_autoencoder(_paper(tiny_yaml))
    g = ae.generator
    seen = {}
    g.input_modulation.register_forward_hook(lambda m, args, out: seen.update(texture=args[1], out=out))
    s, t = torch.randn(2, 2, 8, 8), torch.randn(2, 16)
    g(s, t)
    assert torch.allclose(seen["texture"], t / t.norm(dim=1, keepdim=True), atol=1e-6)
    convs = [m for m in g.modules() if isinstance(m, StyledConv)]
    assert convs and all(c.noise_strength is not None for c in convs)
    assert not hasattr(g, "to_rgbs")  # one final ToRGB
    # training mode draws fresh noise: a non-zero strength makes two calls differ; eval mode is fixed
    for c in convs:
        torch.nn.init.constant_(c.noise_strength, 0.5)
    assert not torch.allclose(g(s, t), g(s, t))
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(s, t), g(s, t))


def test_positional_patterns_are_sinusoids_added_at_every_scale_and_off_by_default(tiny):
    """generator.fourier: fixed sin/cos of 2 pi f (x cos a + y sin a) on pixel centres, one
    texture-modulated 1x1 conv per generator block; at 0 the generator has none (and its weights'
    names are the authors')."""
    assert tiny.generator.fourier == 0
    assert not any("positional" in k for k in build_autoencoder(tiny).state_dict())
    with_patterns = tiny.model_validate({**tiny.to_dict(), "generator": {**tiny.generator.model_dump(), "fourier": 6}})
    assert with_patterns.hash() != tiny.hash()
    torch.manual_seed(0)
    g = build_autoencoder(with_patterns).generator
    p = g.positional
    assert len(p.convs) == len(g.blocks) + len(g.up_blocks) and p.frequencies.shape == (6, 2)
    assert not any("frequencies" in k for k in g.state_dict())  # fixed, rebuilt from the setting
    cycles = p.frequencies.norm(dim=1)
    assert cycles[0] == pytest.approx(1.0) and cycles[-1] == pytest.approx(tiny.data.resolution / 4)
    side = 16
    maps = p.patterns(side)[0]
    fx, fy = p.frequencies[4].tolist()
    y, x = 7, 11  # row, column
    phase = 2 * torch.pi * (fx * (x + 0.5) / side + fy * (y + 0.5) / side)
    assert maps[4, y, x] == pytest.approx(torch.sin(torch.tensor(phase)).item(), abs=1e-5)
    assert maps[6 + 4, y, x] == pytest.approx(torch.cos(torch.tensor(phase)).item(), abs=1e-5)
    # every block's output gets its scale's patterns, through the texture
    inputs = []
    hooks = [c.register_forward_hook(lambda m, args, out: inputs.append(args[0])) for c in p.convs]
    code = tiny.data.resolution // tiny.model.structure_downsample
    s, t = torch.randn(2, tiny.model.structure_channels, code, code), torch.randn(2, tiny.model.texture_dim)
    out = g(s, t)
    assert torch.equal(g(s, t), out)  # the second forward reads the maps it kept: the same image
    seen = [m.shape[-1] for m in inputs]
    assert seen == 2 * ([code] * len(g.blocks) + [code * 2 ** (j + 1) for j in range(len(g.up_blocks))])
    assert seen[-1] == tiny.data.resolution
    for m in inputs:
        assert torch.equal(m, p.patterns(m.shape[-1]).expand(2, -1, -1, -1))
    for h in hooks:
        h.remove()
    for c in p.convs:
        torch.nn.init.zeros_(c.weight)
    assert not torch.allclose(g(s, t), out)  # they were part of the image


def test_default_resampling_is_the_fir_blur_and_the_discriminator_has_no_mbstd(tiny_yaml):
    from swapbench.nn.layers import Blur

    r = _paper(tiny_yaml)
    ae, D = build_autoencoder(r), build_discriminator(r)
    encoder_blurs = [m for m in ae.encoder.modules() if isinstance(m, Blur)]
    assert encoder_blurs and all(tuple(b.kernel.shape) == (3, 3) for b in encoder_blurs)  # [1, 2, 1]
    assert any(b.padding == "reflect" for b in encoder_blurs)
    assert all(tuple(b.kernel.shape) == (4, 4) for b in D.modules() if isinstance(b, Blur))
    assert D.mbstd is None and D.final_conv.conv.weight.shape[1] == D.final_conv.conv.weight.shape[0]
    assert torch.allclose(Blur((1, 3, 3, 1), (1, 1))(torch.ones(1, 2, 6, 6))[..., 1:-1, 1:-1], torch.ones(1, 2, 3, 3))


def test_patch_discriminator_contract(tiny_yaml):
    r = _paper(tiny_yaml, "cooccur.patch_size=8", "cooccur.head=[32,16]")
    torch.manual_seed(0)
    Dc = build_cooccur_discriminator(r)
    patches = torch.randn(2, 3, 3, 8, 8)
    f = Dc.extract_features(patches)
    assert f.shape == (6, 4 * 384) == (6, Dc.feature_dim)  # authors: capacity 4, cap 384 -> 1536-d features
    agg = f.view(2, 3, -1).mean(1, keepdim=True).expand(-1, 3, -1).flatten(0, 1)  # each image's mean reference
    logits = Dc.discriminate(agg, f)
    assert logits.shape == (6, 1)
    # row i judges crop i against reference i; the reference comes first in the pair
    swapped = Dc.discriminate(f, agg)
    assert not torch.allclose(logits, swapped)
    assert torch.allclose(Dc(patches, reference=patches), logits.view(2, 3), atol=1e-5)


def test_minibatch_stddev_keeps_its_statistics_inside_each_part():
    from swapbench.nn.layers import MinibatchStdDev

    torch.manual_seed(0)
    mbstd = MinibatchStdDev(4)
    real, fake, small = torch.randn(8, 5, 4, 4), torch.randn(8, 5, 4, 4) * 3, torch.randn(6, 5, 4, 4)
    # equal parts (vectorised) and unequal parts (one pass each): exactly what separate calls give
    for parts in ([real, fake], [real, fake, small]):
        joint = mbstd(torch.cat(parts), parts=[p.shape[0] for p in parts])
        assert torch.equal(joint, torch.cat([mbstd(p) for p in parts]))
    # without parts the samples of both sides share groups, so the feature differs
    assert not torch.allclose(mbstd(torch.cat([real, fake]))[:8], mbstd(real))
    # one group of 4 samples with values 2, 0, 0, 0: std sqrt(0.75) (biased variance)
    x = torch.zeros(4, 1, 1, 1)
    x[0] = 2.0
    assert torch.allclose(mbstd(x)[:, 1], torch.full((4, 1, 1), (0.75 + 1e-8) ** 0.5))


def test_discriminator_judges_concatenated_parts_as_separate_calls(tiny):
    torch.manual_seed(0)
    D = build_discriminator(tiny)
    assert D.mbstd is not None and D.judges_parts
    side = tiny.data.resolution
    a, b = torch.randn(4, 3, side, side), torch.randn(4, 3, side, side)
    joint = D(torch.cat([a, b]), parts=[4, 4])
    assert torch.allclose(joint, torch.cat([D(a), D(b)]), atol=1e-5, rtol=0)
