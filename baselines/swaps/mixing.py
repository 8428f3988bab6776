"""``sg2_mix``: StyleGAN2 style mixing as a swap, the paper's StyleGAN2 comparison (Image2StyleGAN-style
W+ inversion, then mixing).

A and B are inverted into W+ by ``sg2_wplus`` (baselines/inversion: StyleGAN2-ADA's projector schedule
over one w per layer, LPIPS-VGG plus MSE, ``inversion.steps`` steps, noise maps optimised beside
them); the swap is the generator at W+ layers [0, ``inversion.crossover``) from A (coarse: layout) and
the rest from B (fine: texture, colour), with A's noise maps (they are spatial).
"""

from __future__ import annotations

from typing import Any

import torch

from baselines.inversion.projector import ProjectWPlus
from baselines.inversion.settings import InversionConfig
from baselines.stylegan2.generator import style_mix
from swapbench.registry import SWAPS
from swapbench.swaps import check_pair


@SWAPS.register("sg2_mix", settings=InversionConfig, section="inversion",
                description="StyleGAN2 style mixing after W+ inversion of A and B (sg2_wplus): coarse layers from A, "
                            "fine from B (inversion.crossover), for a trained stylegan2 run.")
class StyleMixSwap:
    needs = "stylegan2"
    iterative = True
    steps_setting = "steps"

    def __init__(self, model, settings: InversionConfig | None = None, device: torch.device | str = "cpu"):
        self.settings = settings or InversionConfig()
        self.model = model
        self.projector = ProjectWPlus(model, self.settings, device)
        self.crossover = self.projector.crossover
        self.last: dict[str, Any] = {}  # W+ of A, of B and of the swap, of the last call
        self.evaluations = 0  # optimiser steps of the last call (A and B are inverted together, as a batch)

    def swap(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        check_pair(structure, texture)
        n = structure.shape[0]
        latent, noises, _, _ = self.projector.optimise(torch.cat([structure, texture]), self.projector.steps, record=())
        ws = self.projector._ws(latent)
        ws_a, ws_b = ws[:n], ws[n:]
        mixed = style_mix(ws_a, ws_b, self.crossover)
        self.last = {"ws_a": ws_a, "ws_b": ws_b, "ws": mixed}
        self.evaluations = self.projector.steps
        with torch.no_grad():
            return self.projector.G.synthesis(mixed, noise=[v[:n] for v in noises]).float().cpu()
