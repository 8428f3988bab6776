"""Datasets (registered in ``swapbench.registry.DATASETS``) and the sampler the trainer draws from.

A registered dataset is a callable (usually a class) that accepts any of the keyword settings
:func:`build_dataset` passes (``split``, ``seed``, and every ``data.*`` setting but ``dataset``, ``augment`` and
``num_workers``: ``resolution``, ``test_images``, ``scale``, ``hflip``, ``root``, ``crop``, ``limit``, ``test_fraction``,
``validation_fraction``, ``manifest``, ``skip_corrupt``, ``preprocess``, ``load_size``; it names the ones it uses,
and declares a section of its own for settings no other dataset reads; only a dataset that takes ``preprocess``
may be used with a ``data.preprocess`` other than ``square``) and returns a
``torch.utils.data.Dataset`` whose items are float images (3, resolution, resolution) in [-1, 1]. It may also define:

- ``__getitems__(indices)``: a batched fetch, which the DataLoader then uses;
- ``manifest() -> dict``: a JSON record of exactly which files/factors make up the split, written
  next to the run's checkpoint and logged to MLflow, so the split can be reproduced.

Problems with the user's data (missing folder, corrupt files) raise :class:`UserError` from the
constructor, so they stop a run before training starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from swapbench.errors import UserError
from swapbench.recipe import Recipe
from swapbench.registry import DATASETS

# data.* settings that build_dataset applies around the dataset instead of passing them to it
DATASET_WRAPPER_SETTINGS = {"dataset", "augment", "num_workers"}


def build_dataset(recipe: Recipe, split: str) -> Dataset:
    d = recipe.data
    if d.manifest is not None and d.dataset != "folder":
        raise UserError(f"data.manifest={d.manifest} is read only by dataset 'folder', not '{d.dataset}'; "
                        "remove data.manifest (the other datasets record their splits themselves)")
    # data.* is the datasets' shared section: every setting but the dataset's name and those applied around
    # it (augmentations, loader workers), plus the split and the recipe's seed; a dataset takes those it names
    settings = {**d.model_dump(exclude=DATASET_WRAPPER_SETTINGS), "split": split, "seed": recipe.seed}
    accepts = inspect.signature(DATASETS.get(d.dataset)).parameters
    if d.preprocess != "square" and "preprocess" not in accepts:
        raise UserError(f"dataset '{d.dataset}' makes its own crops and has no data.preprocess modes; use dataset "
                        f"folder or lmdb for data.preprocess={d.preprocess}, or set data.preprocess=square")
    dataset = DATASETS.build_from(d.dataset, settings, recipe.sections())
    if split == "train" and d.augment:
        from swapbench.data.augment import AugmentedDataset

        dataset = AugmentedDataset(dataset, d.augment, recipe.seed)
    return dataset


# settings that decide which test images a run is scored on: runs compared on one figure or table must agree on them
SAME_TEST_IMAGES = ("dataset", "resolution", "root", "limit", "test_fraction", "manifest", "test_images")
# the splits a score can be of (``eval.split``), and the prefix its logged name carries
SCORE_SPLITS = {"test": "", "validation": "val/"}


def scored_splits(recipe: Recipe) -> list[str]:
    """The splits ``eval.split`` asks scores of, validation first."""
    return ["validation", "test"] if recipe.eval.split == "both" else [recipe.eval.split]


def data_differences(a: Recipe, b: Recipe, ignore: tuple[str, ...] = ()) -> list[str]:
    """The ``SAME_TEST_IMAGES`` data settings (minus ``ignore``) on which recipes ``a`` and ``b`` differ."""
    return [k for k in SAME_TEST_IMAGES if k not in ignore and getattr(a.data, k) != getattr(b.data, k)]


def test_images(recipe: Recipe, dataset: Dataset | None = None) -> torch.Tensor:
    """The first ``data.test_images`` images of the test split as one tensor (N, 3, H, W) in [-1, 1]."""
    ds = build_dataset(recipe, "test") if dataset is None else dataset
    n = min(len(ds), recipe.data.test_images)
    if hasattr(ds, "__getitems__"):
        return torch.stack(list(ds.__getitems__(list(range(n)))))
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
