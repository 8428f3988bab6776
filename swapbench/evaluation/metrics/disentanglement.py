"""Disentanglement on any data: does a swap keep A's layout and carry B's texture?

- swap_reencode_structure: encode the swap with the model's own encoder; its structure code should be
  A's. 1 - mean_i |s(swap_i) - s(A_i)| / mean_i |s(A_i) - s(B_i)| (L2 distances of flattened codes):
  1 when A's structure code comes back exactly, 0 when it is as far from A's as a random other image's
  (the eval pairs are random pairs, so their own distances are the baseline), below 0 when farther.
- swap_reencode_texture: the same with texture codes against B's:
  1 - mean_i |t(swap_i) - t(B_i)| / mean_i |t(A_i) - t(B_i)|.
- swap_texture_dist: a texture distance that ignores layout (Gatys et al.'s style statistics): for the
  LPIPS-VGG layers relu1_2, relu2_2 and relu3_3, the Gram matrix G = F F^T / (h w) of the features F
  (C x hw); per pair the mean over the three layers of |G(swap_i) - G(B_i)|_F / |G(B_i)|_F, then the
  mean over pairs: 0 = B's texture statistics exactly. Encoder-free, so it applies to every method.
- swap_structure_dist: a structure distance that ignores texture. The self-similarity of an image is
  the matrix of cosine similarities between the LPIPS-VGG relu3_3 feature vectors of all pairs of
  positions (features average-pooled to at most 16x16 positions): it records which parts of the
  image look alike, not what they look like (Shechtman & Irani's self-similarity, as Splice uses it
  with ViT keys). The score is the mean over pairs of the mean absolute difference between the
  self-similarity matrices of swap_i and A_i: 0 for A itself, larger when the layout changes.

Because both re-encoding scores use the model's own encoder, they are comparable between runs only
next to the controls of the same run (logged with every run); swap_structure_dist uses a fixed
pretrained network and is comparable across runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from swapbench.nn.lpips import MIN_SIDE
from swapbench.registry import METRICS

SELFSIM_LAYER = 2  # relu3_3 of LPIPS's VGG16 (1/4 of the image side)
SELFSIM_MAX_SIDE = 16
GRAM_LAYERS = (0, 1, 2)  # relu1_2, relu2_2, relu3_3
GRAM_CHANNELS = (64, 128, 256)


def gram_matrices(lpips_vgg, images: torch.Tensor) -> torch.Tensor:
    """(N, 64^2 + 128^2 + 256^2) Gram matrices F F^T / (h w) of relu1_2, relu2_2, relu3_3, flattened."""
    feats = lpips_vgg.net(lpips_vgg.scaling_layer(images))
    grams = []
    for layer in GRAM_LAYERS:
        f = feats[layer].flatten(2)
        grams.append((f @ f.transpose(1, 2) / f.shape[-1]).flatten(1))
    return torch.cat(grams, dim=1)


def gram_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row: mean over layers of |G_a - G_b|_F / |G_b|_F."""
    out, start = [], 0
    for c in GRAM_CHANNELS:
        ga, gb = a[:, start : start + c * c].double(), b[:, start : start + c * c].double()
        out.append((ga - gb).norm(dim=1) / gb.norm(dim=1).clamp_min(1e-12))
        start += c * c
    return torch.stack(out).mean(0)


def self_similarity(lpips_vgg, images: torch.Tensor) -> torch.Tensor:
    """(N, P, P) cosine self-similarity of relu3_3 features at P <= 16x16 positions, images in [-1, 1]."""
    feats = lpips_vgg.net(lpips_vgg.scaling_layer(images))[SELFSIM_LAYER]
    if feats.shape[-1] > SELFSIM_MAX_SIDE:
        feats = F.adaptive_avg_pool2d(feats, SELFSIM_MAX_SIDE)
    v = F.normalize(feats.flatten(2), dim=1)  # (N, C, P), unit vector per position
    return v.transpose(1, 2) @ v


def _code_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=1).double()


@METRICS.register("swap_reencode_structure", direction="up", needs=("swap", "encode"),
                  scores="swaps", group="structure", controls=("code_midpoint",),
                  description="1 - mean |s(E(swap_i)) - s(E(A_i))| / mean |s(E(A_i)) - s(E(B_i))|: 1 = A's structure code "
                              "recovered, 0 = a random pair's distance.")
def swap_reencode_structure(ctx) -> dict[str, float]:
    (s_img, _), (s_swap, _) = ctx.image_codes, ctx.swap_codes
    a, b = ctx.structure_indices, ctx.texture_indices
    return ctx.ratio_score("swap_reencode_structure", _code_distance(s_swap, s_img[a]).numpy(),
                           _code_distance(s_img[a], s_img[b]).numpy())


@METRICS.register("swap_reencode_texture", direction="up", needs=("swap", "encode"),
                  scores="swaps", group="texture", controls=("code_midpoint",),
                  description="1 - mean |t(E(swap_i)) - t(E(B_i))| / mean |t(E(A_i)) - t(E(B_i))|: 1 = B's texture code "
                              "recovered, 0 = a random pair's distance.")
def swap_reencode_texture(ctx) -> dict[str, float]:
    (_, t_img), (_, t_swap) = ctx.image_codes, ctx.swap_codes
    a, b = ctx.structure_indices, ctx.texture_indices
    return ctx.ratio_score("swap_reencode_texture", _code_distance(t_swap, t_img[b]).numpy(),
                           _code_distance(t_img[a], t_img[b]).numpy())


@METRICS.register("swap_texture_dist", direction="down", needs=("swap",),
                  scores="swaps", group="texture",
                  description="Mean over pairs of the relative Frobenius distance of LPIPS-VGG Gram matrices (relu1_2, "
                              "relu2_2, relu3_3), swap_i vs its texture source B_i: 0 = B's texture statistics.")
def swap_texture_dist(ctx) -> dict[str, float]:
    if ctx.images.shape[-1] < MIN_SIDE["vgg"]:
        ctx.notes["swap_texture_dist"] = f"not defined below {MIN_SIDE['vgg']} px (the VGG backbone's minimum)"
        return {"swap_texture_dist": float("nan")}
    return ctx.mean_score("swap_texture_dist", gram_distance(ctx.swap_grams, ctx.image_grams[ctx.texture_indices]))


@METRICS.register("swap_structure_dist", direction="down", needs=("swap",),
                  scores="swaps", group="structure",
                  description="Mean over pairs of the mean |self-similarity(swap_i) - self-similarity(A_i)| of LPIPS-VGG "
                              "relu3_3 features: 0 = A's layout kept.")
def swap_structure_dist(ctx) -> dict[str, float]:
    if ctx.images.shape[-1] < MIN_SIDE["vgg"]:
        ctx.notes["swap_structure_dist"] = f"not defined below {MIN_SIDE['vgg']} px (the VGG backbone's minimum)"
        return {"swap_structure_dist": float("nan")}
    diff = (ctx.swap_selfsim - ctx.image_selfsim[ctx.structure_indices]).abs().flatten(1).mean(1)
    return ctx.mean_score("swap_structure_dist", diff)
