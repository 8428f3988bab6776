"""The Swapping Autoencoder's trainer (``model.family: swap_ae``) on the shared loop of
:mod:`swapbench.training.trainer`.

On a batch of B images x, whose texture sources are x' = x rolled by one (so A != B within the batch):

- discriminator update: E and G make reconstructions G(E(x)) and swaps G(s(x), t(x')) (no gradient
  to E and G); the image discriminator judges real / reconstructed / swapped images, the
  co-occurrence discriminator judges crops of x' (real) and of the swaps (fake) against reference
  crops of x' (their mean or one per crop, ``loss.cooccur_reference``). After every
  ``r1_interval``-th discriminator update a lazy R1 step follows (images; patches: judged and
  reference crops).
- generator update: L1 reconstruction, GAN terms on reconstructions and swaps, co-occurrence GAN term,
  through the frozen discriminators; with ``loss.texture_cycle`` above 0 also the swap texture cycle
  (swapbench's addition, not the authors'): the swaps re-encoded by the encoder, frozen for that
  pass, should have their texture source's (detached) texture code.

``train.schedule`` orders them: 'alternate' (the authors' optimizer) makes each step one update on
its own minibatch, discriminator first, every step counting its batch as images seen; 'same_batch'
does both updates on one batch per step, the generator update reusing the graph of one E/G forward
pass (exactly equivalent to recomputing it, since E and G have not changed in between). Patch crops
are drawn from the trainer's crop generator (swapbench.models.patches), whose state, with the
schedule's counters, is part of the checkpoint. Every term whose weight is 0 is skipped entirely.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator
from swapbench.models.cooccur import CooccurConfig
from swapbench.models.patches import random_crops
from swapbench.registry import LOSSES, TRAINERS
from swapbench.training.losses import LossConfig, WeightedTerms
from swapbench.training.swap_ae_checks import check_swap_ae
from swapbench.training.trainer import Regularizer, Trainer, set_requires_grad
from swapbench.visualize import swap_grid

log = logging.getLogger(__name__)


class Fakes(NamedTuple):
    """What one forward pass of the autoencoder makes for a batch (see ``_forward``)."""

    recon: torch.Tensor
    swap: torch.Tensor | None  # None when no term uses swaps
    swap_texture: torch.Tensor  # the texture codes the swaps were made from, detached (the texture cycle's target)


@TRAINERS.register("swap_ae", reads={"loss": LossConfig, "cooccur": CooccurConfig}, check=check_swap_ae,
                   description="The Swapping Autoencoder: E, G, image D and co-occurrence patch D (Park et al. 2020).")
class SwapAutoencoderTrainer(Trainer):
    multi_process = True  # crops come from a per-rank generator, pairs are formed within each process's share
    preview_name = "swap_grid.png"
    preview_dir = "swap_grids"

    def build(self) -> None:
        recipe, L = self.recipe, self.recipe.loss
        self.autoencoder = build_autoencoder(recipe).to(self.device)
        self.discriminator = build_discriminator(recipe).to(self.device)
        cooccur = build_cooccur_discriminator(recipe)
        self.cooccur = cooccur.to(self.device) if cooccur is not None else None

        self.gan = LOSSES.get(L.gan)
        self.l1 = LOSSES.get("l1")
        self.l2 = LOSSES.get("l2")
        self.r1 = LOSSES.get("r1")
        self.lpips = LOSSES.build("lpips", device=self.device, net=L.recon_lpips_net) if L.recon_lpips > 0 else None
        self.use_cooccur = self.cooccur is not None and L.cooccur > 0
        self.use_swaps = L.g_swap > 0 or L.d_swap > 0 or self.use_cooccur or L.texture_cycle > 0

        self.g_optim = self.build_optimizer("g_optim", self.autoencoder.parameters())
        d_params = list(self.discriminator.parameters())
        if self.cooccur is not None:
            d_params += list(self.cooccur.parameters())
        self.d_optim = self.build_optimizer("d_optim", d_params)
        self._init_schedule()

    def regularizers(self) -> dict[str, Regularizer]:
        """Lazy R1 of both discriminators (one step, one interval) when either R1 weight is above 0."""
        L = self.recipe.loss
        patch_r1 = self.recipe.model.cooccur_discriminator is not None and L.patch_r1 > 0
        return {"r1": Regularizer("d_optim", L.r1_interval)} if L.r1 > 0 or patch_r1 else {}

    def networks(self) -> dict[str, nn.Module]:
        nets = {"autoencoder": self.autoencoder, "discriminator": self.discriminator}
        if self.cooccur is not None:
            nets["cooccur"] = self.cooccur
        return nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g_optim": self.g_optim, "d_optim": self.d_optim}

    def preview(self, model: nn.Module, images: torch.Tensor):
        g = self.recipe.eval.grid_size
        return swap_grid(model, images[:g], images[g : 2 * g])

    # -- state of the schedule and the crop draws ------------------------------------------------
    def _init_schedule(self) -> None:
        # Crops come from the trainer's own generator, seeded by (seed, rank) so processes draw different crops.
        self.crop_rng = torch.Generator(device=self.device).manual_seed(self._crop_seed(0))
        self.d_steps = 0  # discriminator updates so far (lazy R1 runs after every r1_interval-th)
        self.g_steps = 0
        self._latest: dict[str, float] = {}  # alternate schedule: the last value of every term of either side

    def _crop_seed(self, step: int) -> int:
        """Seed of this process's crop generator when it starts at ``step`` (fresh runs: step 0)."""
        return self.recipe.seed * 7_919 + 104_729 * self.rank + 15_485_863 * step + 1

    def extra_state(self) -> dict[str, Any]:
        return {"schedule": {"d_steps": self.d_steps, "g_steps": self.g_steps,
                             "crop_rng": self.crop_rng.get_state()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("schedule")
        if saved is None:  # a checkpoint from before the schedule was saved: one D and one G update per step
            log.warning("checkpoint holds no schedule state (written by an older swapbench); patch crops are "
                        "drawn afresh from here, so the run is not bit-identical to an uninterrupted one")
            self.d_steps = self.g_steps = int(state["step"])
            return
        self.d_steps, self.g_steps = int(saved["d_steps"]), int(saved["g_steps"])
        if self.rank > 0:  # the checkpoint holds rank 0's draws; another rank continues with its own
            self.crop_rng.manual_seed(self._crop_seed(int(state["step"])))
            return
        try:
            self.crop_rng.set_state(saved["crop_rng"].cpu())
        except RuntimeError:  # written on another device type (a CUDA generator's state differs from a CPU one's)
            log.warning("the checkpoint's crop generator state is from another device type; patch crops are drawn "
                        "afresh, so the run is not bit-identical to an uninterrupted one")

    def next_update(self) -> str:
        """What the next :meth:`train_step` updates: 'reconstruction' (E and G on the reconstruction terms
        alone) during ``loss.recon_warmup_images``; then 'both' (same_batch), else 'discriminator' or
        'generator', starting with the discriminator as the authors' optimizer does."""
        if self.images_seen < self.recipe.loss.recon_warmup_images:
            return "reconstruction"
        if self.recipe.train.schedule == "same_batch":
            return "both"
        return "discriminator" if self.step % 2 == 0 else "generator"

    # -- one step -----------------------------------------------------------------------------
    def _crops(self, images: torch.Tensor, n: int) -> torch.Tensor:
        co = self.recipe.cooccur
        return random_crops(images, n, co.crop_min, co.crop_max, co.patch_size, generator=self.crop_rng)

    def _reference_features(self, crops: torch.Tensor) -> torch.Tensor:
        """Features (B * n_crops, F) of reference crops (B, n_ref, C, p, p), one row per judged crop."""
        return self._as_reference(self.cooccur.extract_features(crops), crops.shape[0])

    def _as_reference(self, features: torch.Tensor, b: int) -> torch.Tensor:
        """Reference crop features (B * n_ref, F) -> one row per judged crop (B * n_crops, F): their
        mean per image (loss.cooccur_reference 'mean') or crop i for judged crop i ('per_crop')."""
        if self.recipe.loss.cooccur_reference == "per_crop":
            return features
        n_crops = self.recipe.cooccur.n_crops
        return features.view(b, -1, features.shape[-1]).mean(dim=1, keepdim=True).expand(-1, n_crops, -1).flatten(0, 1)

    def _patch_logits(self, reference: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        judged = self.cooccur.extract_features(self._crops(images, self.recipe.cooccur.n_crops))
        return self.cooccur.discriminate(reference, judged)

    def _patch_logits_real_and_fake(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch discriminator's logits for crops of ``real`` and of ``fake``, both judged against
        reference crops of ``real``: the crops drawn in the order of separate calls (references, real,
        fake), their features in one pass of the patch encoder (features are per patch, so batching
        them changes nothing but the number of calls), the pairs in one pass of the classifier."""
        co = self.recipe.cooccur
        crops = [self._crops(real, co.n_ref), self._crops(real, co.n_crops), self._crops(fake, co.n_crops)]
        flat = [c.flatten(0, 1) for c in crops]
        features = self.cooccur.extract_features(torch.cat(flat).unsqueeze(1))
        ref, judged_real, judged_fake = features.split([f.shape[0] for f in flat])
        ref = self._as_reference(ref, real.shape[0])
        logits = self.cooccur.discriminate(torch.cat([ref, ref]), torch.cat([judged_real, judged_fake]))
        return logits.chunk(2)

    def _forward(self, x: torch.Tensor, swaps: bool = True) -> Fakes:
        """Reconstructions G(E(x)) (of the first half of x only with ``loss.recon_images: first_half``)
        and swaps G(s(x_i), t(x_{i-1})) (None when nothing uses swaps, or with ``swaps`` False), with
        the swaps' texture codes."""
        ae = self.autoencoder
        structure, texture = ae.encode(x)
        n = x.shape[0] // 2 if self.recipe.loss.recon_images == "first_half" else x.shape[0]
        recon = ae.decode(structure[:n], texture[:n])
        swap_texture = texture.roll(1, dims=0)
        swap = ae.decode(structure, swap_texture) if self.use_swaps and swaps else None
        return Fakes(recon, swap, swap_texture.detach())

    def _image_logits(self, terms: dict[str, tuple[float, torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        """The image discriminator's logits for every term (name -> (weight, images)) whose weight is
        above 0, in one forward pass over the concatenated images when the discriminator keeps its
        cross-sample statistics to each part (``judges_parts``): the same logits as one call per
        term, at the cost of one call (a few hundred small operators fewer per update). Other
        registered discriminators get one call per term."""
        D = self.discriminator
        batches = {name: images for name, (weight, images) in terms.items() if weight > 0 and images is not None}
        if len(batches) < 2 or not getattr(D, "judges_parts", False):
            return {name: D(images) for name, images in batches.items()}
        sizes = [images.shape[0] for images in batches.values()]
        logits = D(torch.cat(list(batches.values())), parts=sizes)
        return dict(zip(batches, logits.split(sizes)))

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        """One step of ``train.schedule`` on a batch of real images: with 'same_batch' a discriminator
        and a generator update on this batch; with 'alternate' one of the two (see :meth:`next_update`).
        Returns the unweighted value of every term computed (a term with weight 0 never appears); with
        'alternate' the other side's terms are their values at its last update."""
        x = real.to(self.device, non_blocking=True)
        update = self.next_update()
        out: dict[str, torch.Tensor] = {}
        if update == "both":
            with self._autocast():
                fakes = self._forward(x)
            self._discriminator_update(x, fakes.recon.detach(), None if fakes.swap is None else fakes.swap.detach(), out)
            self._generator_update(x, fakes, out)
        elif update == "reconstruction":
            with self._autocast():
                fakes = self._forward(x, swaps=False)
            self._reconstruction_update(x, fakes.recon, out)
        elif update == "discriminator":
            set_requires_grad(self.autoencoder, False)
            with torch.no_grad(), self._autocast():
                fakes = self._forward(x)
            self._discriminator_update(x, fakes.recon, fakes.swap, out)
            set_requires_grad(self.autoencoder, True)
        else:
            with self._autocast():
                fakes = self._forward(x)
            self._generator_update(x, fakes, out)
        self._finish_step(x.shape[0], update_ema=update != "discriminator")
        values = {k: float(v.detach()) for k, v in out.items()}
        if update in ("both", "reconstruction"):
            return values
        if update == "discriminator":
            self._latest = {k: v for k, v in self._latest.items() if k in GENERATOR_TERMS}  # R1 only when it ran
        self._latest.update(values)
        return dict(self._latest)

    def _discriminator_update(self, x: torch.Tensor, recon: torch.Tensor, swap: torch.Tensor | None,
                              out: dict[str, torch.Tensor]) -> None:
        """The image and patch discriminators on real images vs detached fakes, then the lazy R1."""
        L = self.recipe.loss
        D = self.discriminator
        texture_src = x.roll(1, dims=0)
        set_requires_grad(D, True)
        set_requires_grad(self.cooccur, True)

        def d_cooccur() -> torch.Tensor:  # real crops of the texture source, then crops of the swaps
            real_logits, fake_logits = self._patch_logits_real_and_fake(texture_src, swap)
            return self.gan.d_real(real_logits) + self.gan.d_fake(fake_logits)

        with self._autocast():
            logits = self._image_logits({"d_real": (L.d_real, x), "d_recon": (L.d_recon, recon),
                                         "d_swap": (L.d_swap, swap)})
            d_loss = WeightedTerms(out, x)
            d_loss.add("d_real", L.d_real, lambda: self.gan.d_real(logits["d_real"]))
            d_loss.add("d_recon", L.d_recon, lambda: self.gan.d_fake(logits["d_recon"]))
            d_loss.add("d_swap", L.d_swap, lambda: self.gan.d_fake(logits["d_swap"]))
            d_loss.add("d_cooccur", L.cooccur if self.use_cooccur else 0, d_cooccur)
        if d_loss.total.requires_grad:  # false only when every discriminator term has weight 0
            self.update(self.d_optim, d_loss.total)
        self.d_steps += 1
        r1 = self.regularize_after("r1", self.d_steps)
        if r1 is not None:
            self._lazy_r1(x, texture_src, r1.interval, out)

    def _generator_update(self, x: torch.Tensor, fakes: Fakes, out: dict[str, torch.Tensor]) -> None:
        """Reconstruction, GAN and co-occurrence terms of E and G through the (frozen) discriminators."""
        L = self.recipe.loss
        recon, swap = fakes.recon, fakes.swap
        D = self.discriminator
        set_requires_grad(D, False)
        set_requires_grad(self.cooccur, False)

        def g_cooccur() -> torch.Tensor:
            with torch.no_grad():
                ref = self._reference_features(self._crops(x.roll(1, dims=0), self.recipe.cooccur.n_ref))
            return self.gan.g(self._patch_logits(ref, swap))

        def texture_cycle() -> torch.Tensor:  # E re-encodes the swaps but is not trained through that pass
            encoder = self.autoencoder.encoder
            set_requires_grad(encoder, False)
            try:
                reencoded = self.autoencoder.encode(swap).texture
            finally:
                set_requires_grad(encoder, True)
            return 1 - F.cosine_similarity(reencoded.float(), fakes.swap_texture.float(), dim=1).mean()

        with self._autocast():
            g_loss = self._reconstruction_terms(x, recon, out)
            logits = self._image_logits({"g_recon": (L.g_recon, recon), "g_swap": (L.g_swap, swap)})
            g_loss.add("g_recon", L.g_recon, lambda: self.gan.g(logits["g_recon"]))
            g_loss.add("g_swap", L.g_swap, lambda: self.gan.g(logits["g_swap"]))
            g_loss.add("g_cooccur", L.cooccur if self.use_cooccur else 0, g_cooccur)
            g_loss.add("texture_cycle", L.texture_cycle if swap is not None else 0, texture_cycle)
        if g_loss.total.requires_grad:  # false only when every generator term has weight 0
            self.update(self.g_optim, g_loss.total)
        self.g_steps += 1
        set_requires_grad(D, True)
        set_requires_grad(self.cooccur, True)

    def _reconstruction_terms(self, x: torch.Tensor, recon: torch.Tensor, out: dict[str, torch.Tensor]) -> WeightedTerms:
        """The weighted reconstruction terms of ``recon`` against the images it reconstructs."""
        L = self.recipe.loss
        target = x[: recon.shape[0]]  # what was reconstructed
        terms = WeightedTerms(out, x)
        terms.add("recon_l1", L.recon_l1, lambda: self.l1(recon.float(), target))
        terms.add("recon_l2", L.recon_l2, lambda: self.l2(recon.float(), target))
        terms.add("recon_lpips", L.recon_lpips, lambda: self.lpips(recon.float(), target).mean())
        return terms

    def _reconstruction_update(self, x: torch.Tensor, recon: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
        """The warm-up's update: E and G on the reconstruction terms alone; the discriminators wait."""
        with self._autocast():
            terms = self._reconstruction_terms(x, recon, out)
        if terms.total.requires_grad:
            self.update(self.g_optim, terms.total)
        self.g_steps += 1

    def _lazy_r1(self, x: torch.Tensor, texture_src: torch.Tensor, interval: int, out: dict[str, torch.Tensor]) -> None:
        """R1 on real inputs in fp32, times the interval (StyleGAN2's lazy regularisation), as the
        authors weigh it: r1 / 2 x E||dD(x)/dx||^2 for images; for patches patch_r1 / 4 x the
        squared gradient summed over an image's judged AND reference crops, averaged over images."""
        L, co = self.recipe.loss, self.recipe.cooccur

        def image_r1() -> torch.Tensor:
            x_r = x.detach().requires_grad_(True)
            return self.r1(self.discriminator(x_r), x_r)

        def patch_r1() -> torch.Tensor:
            judged = self._crops(texture_src, co.n_crops).detach().requires_grad_(True)
            reference = self._crops(texture_src, co.n_ref).detach().requires_grad_(True)
            logits = self.cooccur.discriminate(self._reference_features(reference),
                                               self.cooccur.extract_features(judged))
            return self.r1(logits, [judged, reference])

        loss = WeightedTerms(out, x)
        loss.add("r1", L.r1 / 2, image_r1)
        loss.add("patch_r1", L.patch_r1 / 4 if self.cooccur is not None else 0, patch_r1)
        self.update(self.d_optim, loss.total * interval)


# the generator update's terms (what an 'alternate' discriminator step keeps from the last generator step)
GENERATOR_TERMS = frozenset({"recon_l1", "recon_l2", "recon_lpips", "g_recon", "g_swap", "g_cooccur", "texture_cycle"})
