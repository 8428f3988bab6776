"""Loss functions, registered by name, and the recipe's ``loss`` section (:class:`LossConfig`), which the
trainers declare when they register. A trainer weighs the terms as that section says and never computes
a term whose weight is 0."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from swapbench.recipe import Section
from swapbench.registry import LOSSES


class LossConfig(Section):
    """The recipe's ``loss`` section: the loss terms' weights and options. Every trainer reads ``gan`` and its
    own terms' weights; the rest are the Swapping Autoencoder's (other families leave them unused)."""

    gan: str = Field("nonsaturating", description="Registered GAN loss used by every adversarial term.")
    recon_l1: float = Field(1.0, ge=0, description="L1 reconstruction weight.")
    recon_l2: float = Field(0.0, ge=0, description="Mean squared error reconstruction weight; 0 disables.")
    recon_lpips: float = Field(0.0, ge=0, description="LPIPS reconstruction weight (network: recon_lpips_net); 0 disables.")
    recon_lpips_net: Literal["vgg", "alex"] = Field(
        "vgg", description="Network of the LPIPS reconstruction term: 'vgg' (the score recon_lpips_vgg's own "
        "network) or 'alex' (about 1/40 of VGG's cost at 64 px, and not the network that scores reconstruction).")
    g_recon: float = Field(0.5, ge=0, description="Generator GAN weight on reconstructions.")
    g_swap: float = Field(1.0, ge=0, description="Generator GAN weight on swaps.")
    d_real: float = Field(1.0, ge=0, description="Discriminator weight on real images.")
    d_recon: float = Field(0.5, ge=0, description="Discriminator weight on reconstructions.")
    d_swap: float = Field(0.5, ge=0, description="Discriminator weight on swaps.")
    cooccur: float = Field(1.0, ge=0, description="Co-occurrence patch GAN weight (G and patch D).")
    texture_cycle: float = Field(
        0.0, ge=0, description="Swap texture-cycle weight: 1 - cos(t(swap), t(B)): the swap re-encoded by the encoder "
        "with its weights frozen and t(B) detached, so G and the codes the swap is made from are pushed to show B's "
        "texture, and E cannot meet the term by reading swaps differently; 0 disables (the authors' code has no such "
        "term; see docs/fidelity.md).")
    recon_warmup_images: int = Field(
        0, ge=0, description="Images at the start of training that train E and G on the reconstruction terms alone "
        "(recon_l1, recon_l2, recon_lpips): no swaps, no discriminator updates; then the full objective. 0 disables "
        "(the authors' code has no warm-up; see docs/fidelity.md).")
    r1: float = Field(10.0, ge=0, description="R1 penalty weight on the image discriminator.")
    patch_r1: float = Field(1.0, ge=0, description="R1 penalty weight on the co-occurrence discriminator.")
    r1_interval: int = Field(16, ge=1, description="Lazy R1: apply every this many discriminator steps.")
    recon_images: Literal["all", "first_half"] = Field(
        "all", description="Images reconstructed for the reconstruction and GAN-on-reconstruction terms: 'all' of "
        "the batch, or its 'first_half' (the authors' code, to save memory; swaps still use the whole batch).")
    cooccur_reference: Literal["mean", "per_crop"] = Field(
        "mean", description="Reference a judged patch is compared with: 'mean' of the texture image's reference-crop "
        "features (the authors' default, patch_use_aggregation) or 'per_crop' (reference crop i for judged crop i; "
        "their church and bedroom launchers; needs cooccur.n_ref = cooccur.n_crops).")


@LOSSES.register("l1", description="Mean absolute error between two image batches.")
def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return (fake - real).abs().mean()


@LOSSES.register("l2", description="Mean squared error between two image batches.")
def l2_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return (fake - real).square().mean()


class GANLoss:
    """The three terms of one adversarial objective, on discriminator logits."""

    @staticmethod
    def d_real(logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def d_fake(logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def g(logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


@LOSSES.register("nonsaturating", description="Logistic GAN loss with the non-saturating generator term (StyleGAN2).")
class NonSaturatingLoss(GANLoss):
    @staticmethod
    def d_real(logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-logits).mean()

    @staticmethod
    def d_fake(logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(logits).mean()

    @staticmethod
    def g(logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-logits).mean()


@LOSSES.register("hinge", description="Hinge GAN loss (SAGAN, BigGAN).")
class HingeLoss(GANLoss):
    @staticmethod
    def d_real(logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - logits).mean()

    @staticmethod
    def d_fake(logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1 + logits).mean()

    @staticmethod
    def g(logits: torch.Tensor) -> torch.Tensor:
        return -logits.mean()


@LOSSES.register("lpips", description="LPIPS-VGG perceptual distance per image (inputs in [-1, 1]); build(device=...).")
def lpips_loss(device: torch.device | str = "cpu", net: str = "vgg") -> torch.nn.Module:
    from swapbench.nn.lpips import build_lpips

    return build_lpips(net, device)


@LOSSES.register("r1", description="R1 penalty: squared gradient norm of real logits w.r.t. real inputs.")
def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """E[ ||d D(x) / d x||^2 ], summed over all inputs that were passed (e.g. crops and references).

    The inputs must have ``requires_grad=True`` before the discriminator saw them.
    """
    inputs = [real_inputs] if isinstance(real_inputs, torch.Tensor) else list(real_inputs)
    grads = torch.autograd.grad(real_logits.sum(), inputs, create_graph=True)
    return sum(g.square().flatten(1).sum(1).mean() for g in grads)


class WeightedTerms:
    """The loss of one update as a weighted sum of named terms: :meth:`add` computes a term only when
    its weight is above 0, records its unweighted value under its name in ``values`` and adds weight x
    value to :attr:`total` (a zero scalar shaped like ``like`` until then)."""

    def __init__(self, values: dict[str, torch.Tensor], like: torch.Tensor):
        self.values = values
        self.total = like.new_zeros(())

    def add(self, name: str, weight: float, term: Callable[[], torch.Tensor]) -> None:
        if weight > 0:
            self.values[name] = term()
            self.total = self.total + weight * self.values[name]
