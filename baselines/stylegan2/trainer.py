"""Training StyleGAN2 with swapbench's loop (``model.family: stylegan2``).

One step on a batch of B real images x:
1. D: logistic loss on D(x) and D(G(w)) with fresh z (style-mixed with probability
   ``stylegan2.style_mixing`` at a random layer); every ``loss.r1_interval`` steps lazy R1 on x.
2. G: non-saturating loss on D(G(w)); every ``stylegan2.path_length_interval`` steps lazy path-length
   regularisation: || J_w^T y || for y ~ N(0, I) / sqrt(H W) pulled toward its running mean.
The EMA copy of G is what gets scored and sampled.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.utils import make_grid

from baselines.stylegan2.generator import build_generator
from baselines.stylegan2.settings import StyleGAN2Config
from swapbench.errors import UserError
from swapbench.models.build import build_discriminator
from swapbench.registry import LOSSES, TRAINERS
from swapbench.training.losses import LossConfig
from swapbench.training.trainer import Regularizer, Trainer
from swapbench.visualize import to_uint8

PREVIEW_SEED = 1234  # the preview samples the same z throughout a run


@TRAINERS.register("stylegan2", settings=StyleGAN2Config, reads={"loss": LossConfig},
                   description="StyleGAN2 (baselines/): G with mapping network and D, style mixing, lazy R1 and path length.")
class StyleGAN2Trainer(Trainer):
    preview_name = "samples.png"
    preview_dir = "samples"

    def build(self) -> None:
        recipe, L = self.recipe, self.recipe.loss
        self.generator = build_generator(recipe).to(self.device)
        if not hasattr(self.generator, "synthesis"):
            raise UserError(f"model.family 'stylegan2' needs a StyleGAN2-style generator; "
                            f"model.generator '{recipe.model.generator}' has no mapping/synthesis (use 'stylegan2')")
        self.discriminator = build_discriminator(recipe).to(self.device)
        self.gan, self.r1 = LOSSES.get(L.gan), LOSSES.get("r1")
        self.g_optim = self.build_optimizer("g_optim", self.generator.parameters())
        self.d_optim = self.build_optimizer("d_optim", self.discriminator.parameters())
        self.pl_mean = torch.zeros((), device=self.device)

    def regularizers(self) -> dict[str, Regularizer]:
        """Lazy R1 on D (``loss.r1``) and lazy path-length regularisation on G (``stylegan2.path_length``)."""
        L, sg = self.recipe.loss, self.recipe.stylegan2
        regularizers = {}
        if L.r1 > 0:
            regularizers["r1"] = Regularizer("d_optim", L.r1_interval)
        if sg.path_length > 0:
            regularizers["path_length"] = Regularizer("g_optim", sg.path_length_interval)
        return regularizers

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g_optim": self.g_optim, "d_optim": self.d_optim}

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean.detach().clone()}

    def load_extra_state(self, state) -> None:
        self.pl_mean = state["pl_mean"].to(self.device)

    def preview(self, model: nn.Module, images: torch.Tensor):
        samples = model.sample(16, seed=PREVIEW_SEED)
        return make_grid(to_uint8(samples), nrow=4, padding=2, pad_value=255).permute(1, 2, 0).numpy()

    def _ws(self, n: int) -> torch.Tensor:
        """W+ for ``n`` fresh samples, style-mixed at one random layer with probability style_mixing."""
        G, sg = self.generator, self.recipe.stylegan2
        ws = G.broadcast(G.mapping(torch.randn(n, G.w_dim, device=self.device), track_w_avg=True))
        if sg.style_mixing > 0 and torch.rand(()) < sg.style_mixing:
            cutoff = int(torch.randint(1, G.num_ws, ()))
            ws2 = G.broadcast(G.mapping(torch.randn(n, G.w_dim, device=self.device)))
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        L = self.recipe.loss
        G, D = self.generator, self.discriminator
        x = real.to(self.device, non_blocking=True)
        n = x.shape[0]
        out: dict[str, torch.Tensor] = {}

        # discriminator
        D.requires_grad_(True)
        with self._autocast():
            with torch.no_grad():
                fake = G.synthesis(self._ws(n))
            out["d_real"] = self.gan.d_real(D(x))
            out["d_fake"] = self.gan.d_fake(D(fake))
        self.update(self.d_optim, out["d_real"] + out["d_fake"])
        r1 = self.regularize_after("r1", self.step)
        if r1 is not None:
            x_r = x.detach().requires_grad_(True)
            out["r1"] = self.r1(D(x_r), x_r)
            self.update(self.d_optim, out["r1"] * L.r1 / 2 * r1.interval)

        # generator
        D.requires_grad_(False)
        with self._autocast():
            out["g"] = self.gan.g(D(G.synthesis(self._ws(n))))
        self.update(self.g_optim, out["g"])
        path_length = self.regularize_after("path_length", self.step)
        if path_length is not None:
            out["path_length"] = self._path_length_step(max(1, n // 2), path_length.interval)
        D.requires_grad_(True)

        self._finish_step(n)
        return {k: float(v.detach()) for k, v in out.items()}

    def _path_length_step(self, n: int, interval: int) -> torch.Tensor:
        sg = self.recipe.stylegan2
        ws = self._ws(n)
        images = self.generator.synthesis(ws)
        y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), sg.path_length_decay)
        penalty = (lengths - self.pl_mean).square().mean()
        self.update(self.g_optim, penalty * sg.path_length * interval)
        return penalty
