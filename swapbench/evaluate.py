"""The evaluator: runs registered metrics on a trained model and returns flat {name: value} scores.

Each metric is one function ``fn(ctx: EvalContext) -> dict[str, float]`` in the ``metric`` registry.
Expensive shared work (reconstructions, later swaps and features) is computed once, lazily, by the
context, so adding a metric never adds a second pass over the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from swapbench.models.swap_ae import SwappingAutoencoder
from swapbench.recipe import Recipe
from swapbench.registry import METRICS


@dataclass
class EvalContext:
    model: SwappingAutoencoder
    images: torch.Tensor  # the test split, (N, 3, H, W) in [-1, 1], on the CPU
    recipe: Recipe
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 16
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (structure A, texture B) test indices
    dataset: Any = None  # the test split, for datasets that know more (e.g. synthetic ground truth)

    @property
    def n(self) -> int:
        return self.images.shape[0]

    @torch.no_grad()
    def batched(self, fn, *tensors: torch.Tensor) -> torch.Tensor:
        """Apply ``fn`` over aligned batches of ``tensors`` on the device; results on the CPU."""
        outs = []
        for i in range(0, tensors[0].shape[0], self.batch_size):
            outs.append(fn(*(t[i : i + self.batch_size].to(self.device) for t in tensors)).float().cpu())
        return torch.cat(outs)

    @cached_property
    def reconstructions(self) -> torch.Tensor:
        """G(E(x)) for every test image, (N, 3, H, W) on the CPU."""
        return self.batched(self.model.reconstruct, self.images)

    @cached_property
    def swaps(self) -> torch.Tensor:
        """G(s(A_i), t(B_i)) for every evaluation pair, (len(pairs), 3, H, W) on the CPU."""
        a = self.images[[p[0] for p in self.pairs]]
        b = self.images[[p[1] for p in self.pairs]]
        return self.batched(self.model.swap, a, b)


def metric_names(requested: Sequence[str] | str) -> list[str]:
    if requested == "all":
        return METRICS.names()
    for name in requested:
        METRICS.get(name)  # unknown names fail here, before any work
    return list(requested)


def evaluate(ctx: EvalContext, metrics: Sequence[str] | str = "all") -> dict[str, float]:
    scores: dict[str, float] = {}
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        for name in metric_names(metrics):
            scores.update(METRICS.get(name)(ctx))
    finally:
        ctx.model.train(was_training)
    return scores
