"""Optimizers, registered by name, built from the recipe's ``optim`` section."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from swapbench.registry import OPTIMIZERS


@OPTIMIZERS.register("adam", description="torch.optim.Adam (the paper: lr 0.002, betas (0, 0.99)).")
def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)




def lazy_regularization_scaled(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple[float, float]]:
    """StyleGAN2's correction for a regulariser applied every ``interval`` steps: c = k / (k + 1),
    lr * c and betas ** c, so the optimiser's effective time scale stays the same."""
    c = interval / (interval + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)
