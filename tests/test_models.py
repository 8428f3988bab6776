from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator
from swapbench.models.patches import random_crops
from swapbench.nn.layers import ModulatedConv2d, channel_table
from swapbench.recipe import load_recipe


@pytest.mark.parametrize("resolution, downsample, structure_channels, texture_dim", [
    (16, 4, 2, 8), (32, 8, 8, 64), (64, 16, 4, 32), (64, 2, 1, 16), (128, 16, 8, 2048),
])
def test_shapes(tiny_yaml, resolution, downsample, structure_channels, texture_dim):
    r = load_recipe(tiny_yaml, [f"data.resolution={resolution}", f"model.structure_downsample={downsample}",
                                f"model.structure_channels={structure_channels}", f"model.texture_dim={texture_dim}"])
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
        build_autoencoder(load_recipe(tiny_yaml, ["model.encoder=timm", "model.backbone=resnet_nope"]))
