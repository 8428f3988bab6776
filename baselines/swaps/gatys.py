"""``gatys``: neural style transfer by Gatys, Ecker and Bethge (CVPR 2016) as a swap.

The output x starts from the structure image A (or white noise) and is optimised so that its VGG-16
responses at ``gatys.content_layer`` stay A's and its Gram matrices at ``gatys.style_layers`` become
the texture image B's:

    L(x) = alpha * 1/2 sum (F_l(x) - F_l(A))^2  +  beta * sum_l w_l / (4 N_l^2 M_l^2) sum (G_l(x) - G_l(B))^2,

G_l = F_l F_l^T over the M_l positions of the N_l channels of layer l (the paper's normalisation).
L-BFGS (the paper's optimiser) or Adam, in [-1, 1] pixel units; the result is clamped to [-1, 1].
"""

from __future__ import annotations

import torch

from baselines.swaps.settings import GatysConfig
from baselines.swaps.vgg import VGG16Features
from swapbench.registry import SWAPS
from swapbench.swaps import check_pair


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, C): sum over positions of f f^T (unnormalised, as in the paper)."""
    f = features.flatten(2)
    return f @ f.transpose(1, 2)


@SWAPS.register("gatys", options=GatysConfig, options_key="gatys",
                description="Gatys et al. 2016: optimise the image from A to keep A's VGG-16 relu4_2 responses and "
                            "take B's Gram matrices (relu1_1..relu5_1), L-BFGS.")
class GatysSwap:
    needs = None
    iterative = True
    steps_setting = "steps"

    def __init__(self, model=None, settings: GatysConfig | None = None, device: torch.device | str = "cpu"):
        self.settings = settings or GatysConfig()
        self.device = torch.device(device)
        self.vgg = VGG16Features(self.settings.pool).to(self.device)
        s = self.settings
        weights = s.style_layer_weights or [1.0 / len(s.style_layers)] * len(s.style_layers)
        if len(weights) != len(s.style_layers):
            raise ValueError(f"gatys: {len(weights)} style_layer_weights for {len(s.style_layers)} style_layers")
        self.layer_weights = dict(zip(s.style_layers, weights))
        self.layers = tuple(dict.fromkeys([s.content_layer, *s.style_layers]))
        self.history: list[tuple[float, float]] = []  # (content, style) loss at each evaluation of the last swap

    @property
    def evaluations(self) -> int:
        """Loss evaluations (VGG forward and backward passes) of the last swap."""
        return len(self.history)

    def targets(self, structure: torch.Tensor, texture: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            content = self.vgg(structure, [self.settings.content_layer])[self.settings.content_layer]
            style = self.vgg(texture, self.settings.style_layers)
        return content, {k: gram(v) for k, v in style.items()}

    def losses(self, x: torch.Tensor, content: torch.Tensor, grams: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(content loss, style loss) of images ``x``, summed over the batch (images do not interact)."""
        feats = self.vgg(x, self.layers)
        content_loss = 0.5 * (feats[self.settings.content_layer] - content).square().sum()
        style_loss = x.new_zeros(())
        for layer, weight in self.layer_weights.items():
            f = feats[layer]
            n, m = f.shape[1], f.shape[2] * f.shape[3]
            style_loss = style_loss + weight * (gram(f) - grams[layer]).square().sum() / (4 * n * n * m * m)
        return content_loss, style_loss

    def swap(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        check_pair(structure, texture)
        s = self.settings
        a, b = structure.to(self.device).float(), texture.to(self.device).float()
        content, grams = self.targets(a, b)
        if s.init == "structure":
            x = a.clone()
        else:
            x = torch.randn(a.shape, generator=torch.Generator().manual_seed(0)).to(self.device).clamp(-1, 1)
        x.requires_grad_(True)
        self.history = []

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            c, st = self.losses(x, content, grams)
            loss = s.content_weight * c + s.style_weight * st
            loss.backward()
            self.history.append((float(c.detach()), float(st.detach())))
            return loss

        if s.optimizer == "lbfgs":
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=s.steps, max_eval=s.steps, history_size=s.lbfgs_history,
                                    tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")
            opt.step(closure)
        else:
            opt = torch.optim.Adam([x], lr=s.adam_lr)
            for _ in range(s.steps):
                closure()
                opt.step()
        return x.detach().clamp(-1, 1).float().cpu()
