"""Optimisation-based StyleGAN2 inversion: ``sg2_w`` (StyleGAN2-ADA's projector), ``sg2_wplus``
(the same optimiser and schedule over one w per layer, LPIPS plus MSE, as Image2StyleGAN's loss) and
``sg2_wplus_i2s`` (W+ with Image2StyleGAN's own settings: lr 0.01 constant, 5,000 steps, no noise).

Projection of a target image x, following StyleGAN2-ADA's ``projector.py``:
- start at the mean w of ``inversion.w_avg_samples`` mapped z; w_std = sqrt(mean ||w - w_avg||^2);
- Adam(lr ``inversion.lr``, betas ``inversion.betas``) over w (or W+) and the per-layer noise maps;
- at fraction t of the steps: lr = peak x min(1, t / rampup) x (1 - cos(pi min(1, (1 - t) / rampdown))) / 2,
  latent noise = w_std x ``initial_noise`` x max(0, 1 - t / ``noise_ramp``)^2 added to w;
- loss = LPIPS-VGG(G(w), x) (images area-downsampled to ``lpips_side`` when larger; x's VGG
  features computed once, before the loop, as the reference projector does)
  [+ ``wplus_mse`` x MSE for W+] + ``noise_reg`` x sum over noise maps and scales of the squared
  autocorrelation at a one-pixel shift; after each step every noise map is renormalised to zero
  mean and unit variance.

Images are optimised together as a batch, which is exactly the same as one at a time: the loss is a
sum over images and Adam's update is element-wise. ``swapbench project`` still inverts one image per
call so that seconds per image are measured as users experience them.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from baselines.inversion.settings import InversionConfig
from baselines.stylegan2.generator import default_crossover, style_mix
from swapbench.inversion import Inversion, synchronize
from swapbench.nn.lpips import LpipsToTarget, build_lpips
from swapbench.registry import INVERSIONS

CURVE_STEPS = (10, 30, 100, 300, 1000)  # LPIPS is recorded after these many steps (the quality-vs-steps curve)


def projector_schedule(t: float, lr: float, rampup: float, rampdown: float, initial_noise: float,
                       noise_ramp: float) -> tuple[float, float]:
    """(learning rate, latent-noise multiple of w_std) at fraction ``t`` in [0, 1) of the steps."""
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(down * math.pi)
    ramp *= min(1.0, t / rampup) if rampup > 0 else 1.0
    noise = initial_noise * max(0.0, 1.0 - t / noise_ramp) ** 2
    return lr * ramp, noise


@torch.no_grad()
def w_statistics(generator, n: int, seed: int = 123) -> tuple[torch.Tensor, float]:
    """(mean w as (1, w_dim), w_std) from ``n`` mapped z, as StyleGAN2-ADA's projector computes them."""
    device = generator.const.device
    z = torch.randn(n, generator.w_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    w = torch.cat([generator.mapping(z[i : i + 4096]) for i in range(0, n, 4096)]).float()
    w_avg = w.mean(0, keepdim=True)
    return w_avg, float(((w - w_avg).square().sum(1).mean()).sqrt())


def noise_regularisation(noises: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and scales (down to 8 px) of the squared mean autocorrelation at one-pixel shifts."""
    loss = noises[0].new_zeros(())
    for v in noises:
        while True:
            loss = loss + (v * v.roll(1, dims=3)).mean().square() + (v * v.roll(1, dims=2)).mean().square()
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return loss


class LatentOptimiser:
    """Shared by sg2_w and sg2_wplus; ``space`` says what one image's latent is."""

    needs = "stylegan2"
    space = "w"
    optimise_noise = True  # the noise maps are optimised (with their regulariser) beside the latent
    curve_steps = CURVE_STEPS

    def __init__(self, generator, settings, device: torch.device | str = "cpu", steps: int | None = None):
        self.device = torch.device(device)
        self.settings = settings
        self.steps = settings.steps if steps is None else steps
        self.G = generator.to(self.device).eval().requires_grad_(False)
        self.w_avg, self.w_std = w_statistics(self.G, settings.w_avg_samples)
        self.lpips = build_lpips("vgg", self.device)
        self.mse_weight = settings.wplus_mse if self.space == "wplus" else 0.0
        self.crossover = default_crossover(self.G.num_ws, settings.crossover)

    def _for_lpips(self, images: torch.Tensor) -> torch.Tensor:
        side = self.settings.lpips_side
        return F.interpolate(images, size=(side, side), mode="area") if images.shape[-1] > side else images

    def _lpips_to(self, targets: torch.Tensor) -> LpipsToTarget:
        """LPIPS-VGG to ``targets`` at the optimiser's LPIPS size, their features computed once."""
        return LpipsToTarget(self.lpips, self._for_lpips(targets))

    def _ws(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.expand(-1, self.G.num_ws, -1)

    def start(self, n: int) -> torch.Tensor:
        width = 1 if self.space == "w" else self.G.num_ws
        return self.w_avg.view(1, 1, -1).repeat(n, width, 1)

    def optimise(self, targets: torch.Tensor, steps: int, init: torch.Tensor | None = None,
                 init_noise: list[torch.Tensor] | None = None,
                 record: tuple[int, ...] = CURVE_STEPS) -> tuple[torch.Tensor, list[torch.Tensor], float, dict[int, float]]:
        """(latents, noise maps, seconds of optimisation, {step: mean LPIPS after it}), starting from
        ``init`` (default: the mean w) and ``init_noise`` (default: seeded normal maps)."""
        s = self.settings
        x = targets.to(self.device)
        n = x.shape[0]
        synchronize(self.device)
        tick = time.perf_counter()
        lpips_to_target = self._lpips_to(x)  # target features computed once
        synchronize(self.device)
        seconds = time.perf_counter() - tick  # part of the search: the reference projector does it too
        latent = (self.start(n) if init is None else init.to(self.device)).clone().requires_grad_(True)
        if init_noise is None:
            g = torch.Generator(device="cpu").manual_seed(0)
            init_noise = [torch.randn(n, 1, side, side, generator=g) for side in self.G.noise_sides]
        noises = [v.to(self.device).expand(n, -1, -1, -1).clone().requires_grad_(self.optimise_noise)
                  for v in init_noise]
        opt = torch.optim.Adam([latent, *noises] if self.optimise_noise else [latent], lr=s.lr, betas=s.betas)
        curve = {}
        for step in range(steps):
            synchronize(self.device)
            tick = time.perf_counter()
            lr, noise_mult = projector_schedule(step / steps, s.lr, s.lr_rampup, s.lr_rampdown, s.initial_noise,
                                                s.noise_ramp)
            for group in opt.param_groups:
                group["lr"] = lr
            w_noise = torch.randn_like(latent) * (self.w_std * noise_mult)
            synth = self.G.synthesis(self._ws(latent + w_noise), noise=noises)
            loss = lpips_to_target(self._for_lpips(synth)).sum()
            if self.mse_weight > 0:
                loss = loss + self.mse_weight * (synth - x).square().flatten(1).mean(1).sum()
            if s.noise_reg > 0 and self.optimise_noise:
                loss = loss + s.noise_reg * noise_regularisation(noises)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for v in noises if self.optimise_noise else ():
                    v -= v.mean(dim=(1, 2, 3), keepdim=True)
                    v *= v.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            synchronize(self.device)
            seconds += time.perf_counter() - tick
            if step + 1 in record:
                curve[step + 1] = self.distance(latent, noises, lpips_to_target)
        return latent.detach(), [v.detach() for v in noises], seconds, curve

    @torch.no_grad()
    def distance(self, latent: torch.Tensor, noises: list[torch.Tensor],
                 target: torch.Tensor | LpipsToTarget) -> float:
        """Mean LPIPS-VGG of the current reconstructions (the quantity the optimiser lowers) to
        ``target``: images, or an ``LpipsToTarget`` holding their features already."""
        if not isinstance(target, LpipsToTarget):
            target = self._lpips_to(target.to(self.device))
        synth = self.G.synthesis(self._ws(latent), noise=noises)
        return float(target(self._for_lpips(synth)).mean())

    def invert(self, images: torch.Tensor, steps: int | None = None) -> Inversion:
        latent, noises, seconds, curve = self.optimise(images, self.steps if steps is None else steps,
                                                       record=self.curve_steps)
        with torch.no_grad():
            recon = self.G.synthesis(self._ws(latent), noise=noises).float().cpu()
        return Inversion((latent, noises), recon, seconds, curve)

    @torch.no_grad()
    def swap(self, latents_a, latents_b) -> torch.Tensor:
        """Style mixing: A's coarse layers (and A's noise maps, which are spatial) with B's fine layers."""
        (la, na), (lb, _) = latents_a, latents_b
        ws = style_mix(self._ws(la), self._ws(lb), self.crossover)
        return self.G.synthesis(ws, noise=na).float().cpu()


@INVERSIONS.register("sg2_w", default=True, settings=InversionConfig, section="inversion",
                     description="StyleGAN2-ADA projection in W: Adam over w and noise maps, LPIPS-VGG, 1000 steps.")
class ProjectW(LatentOptimiser):
    space = "w"


@INVERSIONS.register("sg2_wplus", default=True, settings=InversionConfig, section="inversion",
                     description="Image2StyleGAN-style optimisation in W+ (one w per layer), LPIPS + MSE.")
class ProjectWPlus(LatentOptimiser):
    space = "wplus"


@INVERSIONS.register("sg2_wplus_i2s", bench=False, settings=InversionConfig, section="inversion",
                     description="Image2StyleGAN's own W+ settings: Adam lr 0.01 constant, "
                     "5,000 steps, no latent noise, noise maps fixed, LPIPS + MSE.")
class ProjectWPlusImage2StyleGAN(ProjectWPlus):
    """W+ optimisation as Abdal et al. (Image2StyleGAN, ICCV 2019, Sec. 4) set it: Adam (lr
    ``inversion.image2stylegan_lr`` = 0.01, betas ``inversion.betas`` = (0.9, 0.999)) at a constant
    learning rate for ``inversion.image2stylegan_steps`` = 5,000 steps, starting from the mean w, over
    the latent only: no noise added to it and the noise maps kept as drawn. Loss: LPIPS-VGG plus
    ``inversion.wplus_mse`` x MSE (their perceptual term is a VGG-16 feature distance; LPIPS-VGG, the
    other methods' loss, stands in for it). ``--steps`` of ``swapbench project`` still overrides the
    step count."""

    optimise_noise = False
    curve_steps = (*CURVE_STEPS, 3000, 5000)

    def __init__(self, generator, settings, device: torch.device | str = "cpu", steps: int | None = None):
        if steps is None and "steps" not in settings.model_fields_set:
            steps = settings.image2stylegan_steps
        own = settings.model_copy(update={"lr": settings.image2stylegan_lr, "lr_rampup": 0.0, "lr_rampdown": 0.0,
                                          "initial_noise": 0.0, "noise_reg": 0.0})
        super().__init__(generator, own, device, steps)
