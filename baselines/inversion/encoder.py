"""Encoder-based StyleGAN2 inversion (``sg2_encoder``, ``sg2_encoder_opt``): a pSp-like encoder
(Richardson et al. 2021) trained to map images into W+ of a frozen, already trained StyleGAN2.

The encoder (``sg2_pyramid``) is a residual trunk down to 4x4 whose feature maps at 4, 8 and 16 px
are merged top-down (a feature pyramid) and read out as the coarse, middle and fine groups of w,
added to the generator's mean w. It is trained by its own recipe (``model.family: sg2_encoder``)
on L2 + LPIPS reconstruction of real images; the generator stays frozen.

To the rest of swapbench the trained pair looks like an autoencoder: ``encode`` gives W+ as both
"structure" and "texture", and ``decode(s, t)`` renders s's coarse layers with t's fine layers, so
``reconstruct`` is G(E(x)) and ``swap`` is style mixing of two inverted images. The evaluator, the
swap grid and ``swapbench project`` use it exactly like the Swapping Autoencoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.inversion.projector import ProjectWPlus
from baselines.inversion.settings import InversionConfig
from baselines.stylegan2.generator import default_crossover, style_mix
from baselines.stylegan2.settings import StyleGAN2Config
from swapbench.errors import UserError
from swapbench.inversion import Inversion, SwapAutoencoderEncoding, timed
from swapbench.models.build import model_settings
from swapbench.models.swap_ae import Codes
from swapbench.nn.layers import ConvLayer, EqualConv2d, EqualLinear, ResBlock, channel_table
from swapbench.recipe import Recipe
from swapbench.registry import ENCODERS, GENERATORS, INVERSIONS, LOSSES, MODELS, TRAINERS
from swapbench.training.losses import LossConfig, WeightedTerms
from swapbench.training.trainer import Trainer
from swapbench.visualize import swap_grid


@ENCODERS.register("sg2_pyramid", settings=StyleGAN2Config, section="stylegan2",
                   description="pSp-like encoder to StyleGAN2's W+: residual trunk, 3-level feature pyramid.")
class PyramidWPlusEncoder(nn.Module):
    """Offsets from the mean w for all ``num_ws`` layers: coarse (about the first 30 %) from 4 px
    features, middle (the next 40 %) from 8 px, fine (the rest) from 16 px, as in pSp's grouping."""

    def __init__(self, resolution: int, channels: int, max_channels: int, w_dim: int, num_ws: int):
        super().__init__()
        ch = channel_table(resolution, channels, max_channels, min_resolution=4)
        self.stem = ConvLayer(3, ch[resolution], 1)
        self.blocks = nn.ModuleList()
        res = resolution
        while res > 4:
            self.blocks.append(ResBlock(ch[res], ch[res // 2]))
            res //= 2
        self.levels = [side for side in (4, 8, 16) if side <= resolution]
        width = ch[4]
        self.lateral = nn.ModuleDict({str(s): EqualConv2d(ch[s], width, 1) for s in self.levels})
        coarse, middle = max(1, round(0.3 * num_ws)), max(1, round(0.4 * num_ws))
        sizes = [coarse, middle, num_ws - coarse - middle][: len(self.levels)]
        sizes[-1] = num_ws - sum(sizes[:-1])
        self.group_sizes = dict(zip(self.levels, sizes))
        self.heads = nn.ModuleDict({
            str(s): nn.Sequential(ConvLayer(width, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  EqualLinear(width, k * w_dim))
            for s, k in self.group_sizes.items()
        })
        self.w_dim, self.num_ws = w_dim, num_ws

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stem(image)
        features = {x.shape[-1]: x}
        for block in self.blocks:
            x = block(x)
            features[x.shape[-1]] = x
        merged, groups = None, []
        for side in self.levels:  # coarse to fine, top-down
            lateral = self.lateral[str(side)](features[side])
            merged = lateral if merged is None else lateral + F.interpolate(merged, size=lateral.shape[-2:],
                                                                            mode="bilinear", align_corners=False)
            groups.append(self.heads[str(side)](merged).view(image.shape[0], self.group_sizes[side], self.w_dim))
        return torch.cat(groups, dim=1)


class EncoderInverter(nn.Module):
    """A W+ encoder and a frozen StyleGAN2 generator behind the autoencoder interface."""

    def __init__(self, encoder: nn.Module, generator: nn.Module, crossover: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.generator = generator.requires_grad_(False)
        self.crossover = default_crossover(generator.num_ws, crossover)

    def encode(self, images: torch.Tensor) -> Codes:
        ws = self.generator.mapping.w_avg + self.encoder(images)
        return Codes(ws, ws)

    def decode(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        ws = structure if structure is texture else style_mix(structure, texture, self.crossover)
        return self.generator.synthesis(ws, noise="const")

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(images))

    def swap(self, structure_images: torch.Tensor, texture_images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(structure_images).structure, self.encode(texture_images).texture)

    def train(self, mode: bool = True):
        super().train(mode)
        self.generator.eval()  # frozen: no w_avg tracking, no random noise
        return self


# settings that must match between an sg2_encoder recipe and the StyleGAN2 run it inverts
GENERATOR_SETTINGS = ("data.resolution", "model.generator", "model.channels", "model.max_channels", "stylegan2.w_dim",
                      "stylegan2.mapping_layers")


def load_generator(ref: str, recipe: Recipe) -> nn.Module:
    """The EMA generator of the stylegan2 run (or checkpoint) ``ref``, checked against ``recipe``."""
    from swapbench.models.build import load_model
    from swapbench.tracking import checkpoint_of

    generator, gen_recipe, _ = load_model(checkpoint_of(ref))
    if gen_recipe.model.family != "stylegan2":
        raise UserError(f"inversion.generator {ref} is a '{gen_recipe.model.family}' run; it must be a stylegan2 run")
    mine, theirs = recipe.flat(), gen_recipe.flat()
    differ = [k for k in GENERATOR_SETTINGS if mine[k] != theirs[k]]
    if differ:
        raise UserError(f"the generator run {ref} was trained with other settings ("
                        + ", ".join(f"{k}: {theirs[k]} there, {mine[k]} here" for k in differ)
                        + "); make the sg2_encoder recipe extend the generator's recipe")
    return generator


@MODELS.register("sg2_encoder", checkpoint_key="inverter",
                 description="W+ encoder in front of a frozen StyleGAN2 generator (reconstructs; swaps W+ layers).")
def build_inverter(recipe: Recipe, generator: nn.Module | None = None) -> nn.Module:
    """The encoder and its generator (a fresh one unless ``generator``, e.g. the trained one, is given)."""
    settings = model_settings(recipe)
    generator = GENERATORS.build_from(recipe.model.generator, settings, recipe.sections()) if generator is None else generator
    encoder = ENCODERS.build_from(recipe.model.encoder, {**settings, "num_ws": generator.num_ws}, recipe.sections())
    return EncoderInverter(encoder, generator, recipe.inversion.crossover)


@TRAINERS.register("sg2_encoder", settings=InversionConfig, section="inversion", reads={"loss": LossConfig},
                   description="pSp-like W+ encoder for a frozen StyleGAN2 (inversion.generator), L2 + LPIPS.")
class SG2EncoderTrainer(Trainer):
    preview_name = "swap_grid.png"
    preview_dir = "swap_grids"

    def build(self) -> None:
        recipe, L = self.recipe, self.recipe.loss
        if recipe.inversion.generator is None:
            raise UserError("model.family 'sg2_encoder' needs inversion.generator: the MLflow run id (or checkpoint) "
                            "of a trained stylegan2 recipe; set it with --set inversion.generator=RUN_ID")
        self.inverter = build_inverter(recipe, load_generator(recipe.inversion.generator, recipe)).to(self.device)
        self.l1, self.l2 = LOSSES.get("l1"), LOSSES.get("l2")
        self.lpips = LOSSES.build("lpips", device=self.device) if L.recon_lpips > 0 else None
        self.optim = self.build_optimizer("optim", self.inverter.encoder.parameters())

    def networks(self) -> dict[str, nn.Module]:
        return {"inverter": self.inverter}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optim": self.optim}

    def preview(self, model: nn.Module, images: torch.Tensor):
        g = self.recipe.eval.grid_size
        return swap_grid(model, images[:g], images[g : 2 * g])

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        L = self.recipe.loss
        x = real.to(self.device, non_blocking=True)
        out: dict[str, torch.Tensor] = {}
        with self._autocast():
            recon = self.inverter.reconstruct(x).float()
        loss = WeightedTerms(out, x)
        loss.add("recon_l2", L.recon_l2, lambda: self.l2(recon, x))
        loss.add("recon_l1", L.recon_l1, lambda: self.l1(recon, x))
        loss.add("recon_lpips", L.recon_lpips, lambda: self.lpips(recon, x).mean())
        if not loss.total.requires_grad:
            raise UserError("sg2_encoder training has no loss: set loss.recon_l2, loss.recon_l1 or loss.recon_lpips above 0")
        self.update(self.optim, loss.total)
        self._finish_step(x.shape[0])
        return {k: float(v.detach()) for k, v in out.items()}


@INVERSIONS.register("sg2_encoder", default=True, settings=InversionConfig, section="inversion",
                     description="A trained sg2_encoder run: one encoder pass to StyleGAN2's W+.")
class SG2EncoderPass(SwapAutoencoderEncoding):
    needs = "sg2_encoder"


@INVERSIONS.register("sg2_encoder_opt", settings=InversionConfig, section="inversion",
                     description="sg2_encoder, then inversion.refine_steps of W+ optimisation (LPIPS + MSE).")
class SG2EncoderRefined:
    needs = "sg2_encoder"

    def __init__(self, model: EncoderInverter, settings, device: torch.device | str = "cpu", steps: int | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.steps = settings.refine_steps if steps is None else steps
        self.optimiser = ProjectWPlus(self.model.generator, settings, self.device, steps=self.steps)

    def invert(self, images: torch.Tensor, steps: int | None = None) -> Inversion:
        x = images.to(self.device)
        with torch.no_grad():
            codes, enc_seconds = timed(lambda: self.model.encode(x), self.device)
        # start where the encoder is: its W+ and the generator's stored noise maps, which it was trained with
        latent, noises, seconds, curve = self.optimiser.optimise(x, self.steps if steps is None else steps,
                                                                 init=codes.structure,
                                                                 init_noise=self.model.generator.const_noise())
        with torch.no_grad():
            recon = self.model.generator.synthesis(latent, noise=noises).float().cpu()
        return Inversion((latent, noises), recon, enc_seconds + seconds, curve)

    def swap(self, latents_a, latents_b) -> torch.Tensor:
        return self.optimiser.swap(latents_a, latents_b)
