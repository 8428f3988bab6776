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

import numpy as np
import torch
from torch import nn

from swapbench.errors import UserError
from swapbench.metrics import applies_to
from swapbench.recipe import Recipe
from swapbench.registry import METRICS


@dataclass
class EvalContext:
    model: nn.Module  # an autoencoder (encode/reconstruct/swap) or a generator (sample)
    images: torch.Tensor  # the test split, (N, 3, H, W) in [-1, 1], on the CPU
    recipe: Recipe
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 16
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (structure A, texture B) test indices
    dataset: Any = None  # the test split, for datasets that know more (e.g. synthetic ground truth)
    _lpips: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)

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
    def structure_indices(self) -> list[int]:
        return [a for a, _ in self.pairs]

    @cached_property
    def texture_indices(self) -> list[int]:
        return [b for _, b in self.pairs]

    @cached_property
    def inception(self):
        from swapbench.metrics.inception import InceptionFeatures

        return InceptionFeatures(self.device, batch_size=self.batch_size)

    @cached_property
    def real_features(self) -> np.ndarray:
        """Inception pool features of the test images, cached on disk across runs."""
        from swapbench.metrics.distances import cached_features

        manifest = self.dataset.manifest() if hasattr(self.dataset, "manifest") else None
        key = {"features": "inception_pool", "extractor": self.inception.sha256, "n": self.n,
               "data": self.recipe.data.model_dump(mode="json", exclude={"num_workers"}),
               "manifest": manifest}
        return cached_features(key, lambda: self.inception.pool(self.images))

    @cached_property
    def swap_features(self) -> np.ndarray:
        return self.inception.pool(self.swaps)

    @cached_property
    def samples(self) -> torch.Tensor:
        """``n`` samples of a generator from seeds fixed by eval.pairs_seed, on the CPU."""
        return self.model.sample(self.n, seed=self.recipe.eval.pairs_seed, batch_size=self.batch_size)

    @cached_property
    def sample_features(self) -> np.ndarray:
        return self.inception.pool(self.samples)

    def lpips(self, net: str) -> torch.nn.Module:
        """The LPIPS network ('alex' or 'vgg') on the evaluation device, built once per context."""
        if net not in self._lpips:
            from swapbench.metrics.lpips_net import build_lpips

            self._lpips[net] = build_lpips(net, self.device)
        return self._lpips[net]

    def networks_used(self) -> list[str]:
        """Names (as in swapbench.weights) of the pretrained networks the scores have used so far."""
        used = ["inception"] if "inception" in self.__dict__ else []
        return used + [f"lpips_{net}" for net in sorted(self._lpips)]

    @cached_property
    def gt_swaps(self) -> torch.Tensor | None:
        """render(layout(A_i), style(B_i)) for every pair, when the dataset knows its factors; else None."""
        if not hasattr(self.dataset, "gt_swap"):
            return None
        return self.dataset.gt_swap(self.structure_indices, self.texture_indices)

    def lpips_distance(self, net: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS between aligned [-1, 1] batches (inputs clamped), on the CPU."""
        model = self.lpips(net)
        return self.batched(lambda x, y: model(x.clamp(-1, 1), y.clamp(-1, 1)).flatten(), a, b)

    @cached_property
    def swaps(self) -> torch.Tensor:
        """G(s(A_i), t(B_i)) for every evaluation pair, (len(pairs), 3, H, W) on the CPU."""
        return self.batched(self.model.swap, self.images[self.structure_indices], self.images[self.texture_indices])


def metric_names(requested: Sequence[str] | str) -> list[str]:
    if requested == "all":
        return METRICS.names()
    for name in requested:
        METRICS.get(name)  # unknown names fail here, before any work
    return list(requested)


def applicable(names: Sequence[str], model: nn.Module, requested: Sequence[str] | str) -> list[str]:
    """The metrics that apply to ``model``. With 'all' the others are left out silently; a metric
    asked for by name that cannot apply is a user error."""
    if requested == "all":
        return [n for n in names if applies_to(METRICS.get(n), model)]
    for n in names:
        if not applies_to(METRICS.get(n), model):
            need = ", ".join(getattr(METRICS.get(n), "model_needs", ()))
            raise UserError(f"metric '{n}' needs a model that can {need}; this {type(model).__name__} cannot. "
                            f"Leave it out of eval.metrics (or use 'all')")
    return list(names)


def evaluate(ctx: EvalContext, metrics: Sequence[str] | str = "all") -> dict[str, float]:
    scores: dict[str, float] = {}
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        for name in applicable(metric_names(metrics), ctx.model, metrics):
            scores.update(METRICS.get(name)(ctx))
    finally:
        ctx.model.train(was_training)
    return scores
