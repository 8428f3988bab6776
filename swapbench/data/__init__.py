"""Datasets (registered in ``swapbench.registry.DATASETS``) and the sampler the trainer draws from."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from swapbench.recipe import Recipe


def build_dataset(recipe: Recipe, split: str) -> Dataset:
    from swapbench.models.build import build_from
    from swapbench.registry import DATASETS

    d = recipe.data
    settings = {
        "split": split,
        "resolution": d.resolution,
        "test_images": d.test_images,
        "scale": d.scale,
        "hflip": d.hflip,
        "seed": recipe.seed,
    }
    return build_from(DATASETS, d.dataset, settings)


def test_images(recipe: Recipe) -> torch.Tensor:
    """The fixed test split as one tensor (N, 3, H, W) in [-1, 1]."""
    ds = build_dataset(recipe, "test")
    n = min(len(ds), recipe.data.test_images)
    return torch.stack([ds[i] for i in range(n)])


class SeededInfiniteSampler(Sampler[int]):
    """Endless shuffled passes over a dataset, starting ``start`` draws in.

    Pass e is a permutation seeded by (seed, e), so the sequence of indices depends only on the seed
    and the number of images already seen: resuming at image k continues the exact sequence. With
    several processes, rank r takes draws r, r + world, r + 2 * world, ...
    """

    def __init__(self, length: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.length = length
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size

    def _perm(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return torch.randperm(self.length, generator=g)

    def __iter__(self) -> Iterator[int]:
        draw = self.start + self.rank
        epoch, perm = -1, None
        while True:
            e, pos = divmod(draw, self.length)
            if e != epoch:
                epoch, perm = e, self._perm(e)
            yield int(perm[pos])
            draw += self.world_size
