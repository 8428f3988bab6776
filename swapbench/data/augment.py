"""Training-split augmentations (``data.augment``): more distinct images out of a small photo set.

The photos dataset trains on crops of ten photographs and is scored on four others. A reconstruction
warm-up reaches a training LPIPS far below its test LPIPS, so part of the test error is how little the
ten photos vary. Each augmentation here is applied to training images only, after the dataset's own crop
and flip, so the test split (and with it every score) is the same with or without them:

- ``hue``: rotate the colours about the grey axis by a uniform angle in [-180, 180) degrees (brightness
  is kept: the rotation leaves r + g + b unchanged before clipping);
- ``saturation``: scale each pixel's distance from its grey value by a factor drawn log-uniformly in
  [1/2, 2], clipped to the image range;
- ``rot90``: rotate by 0, 90, 180 or 270 degrees (with ``data.hflip`` every symmetry of the square).

The draws for training item ``i`` come from a generator seeded by (recipe seed, i), so an augmented item
is the same bytes on any machine, in any worker, and after a resume. A training split shorter than
``VIRTUAL_LENGTH`` items (a folder of files read without random crops or flips) is repeated under new item
indices, so that each pass of the sampler draws new augmentations rather than one fixed recolouring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from swapbench.data.folder import VIRTUAL_LENGTH
from swapbench.recipe import AugmentName

AUGMENTATIONS: tuple[str, ...] = get_args(AugmentName)  # the order they are applied in

_GREY = torch.full((3,), 1 / math.sqrt(3))


def hue_rotation(angle: float) -> torch.Tensor:
    """The 3x3 matrix rotating RGB vectors by ``angle`` radians about the grey axis (Rodrigues' formula)."""
    k = _GREY
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return math.cos(angle) * torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * torch.outer(k, k)


def augment_image(image: torch.Tensor, augment: Sequence[str], draws: np.ndarray) -> torch.Tensor:
    """``image`` (3, H, W) in [-1, 1] with the augmentations named in ``augment``; ``draws`` holds one
    uniform in [0, 1) per entry of :data:`AUGMENTATIONS`, so adding an augmentation to a recipe does not
    change the draws of the others."""
    u = dict(zip(AUGMENTATIONS, draws.tolist()))
    out = image
    if "hue" in augment:
        rotation = hue_rotation((2 * u["hue"] - 1) * math.pi)
        out = torch.einsum("ij,jhw->ihw", rotation, out)
    if "saturation" in augment:
        grey = out.mean(0, keepdim=True)
        out = grey + (out - grey) * 2.0 ** (2 * u["saturation"] - 1)
    if "rot90" in augment:
        out = torch.rot90(out, k=min(int(u["rot90"] * 4), 3), dims=(1, 2))
    return out.clamp(-1, 1).contiguous()


class AugmentedDataset(Dataset):
    """``dataset`` with :func:`augment_image` applied to every item: item ``i`` is the wrapped item ``i mod n``
    with draws seeded by ``i``; anything else is the wrapped dataset's."""

    def __init__(self, dataset: Dataset, augment: Sequence[str], seed: int):
        self.dataset = dataset
        self.augment = tuple(augment)
        self.seed = seed % 2**63  # a seed sequence takes non-negative entries
        self.inner_length = len(dataset)
        self.length = self.inner_length * max(1, VIRTUAL_LENGTH // max(1, self.inner_length))

    def __len__(self) -> int:
        return self.length

    def _draws(self, index: int) -> np.ndarray:
        return np.random.default_rng([self.seed, index, 0x5A06]).random(len(AUGMENTATIONS))

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return augment_image(self.dataset[index % self.inner_length], self.augment, self._draws(index))

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        fetch = getattr(self.dataset, "__getitems__", None)
        inner = [i % self.inner_length for i in indices]
        items = fetch(inner) if fetch is not None else [self.dataset[i] for i in inner]
        return [augment_image(x, self.augment, self._draws(i)) for x, i in zip(items, indices)]

    def manifest(self) -> dict[str, Any]:
        inner = self.dataset.manifest() if hasattr(self.dataset, "manifest") else {}
        return {**inner, "augment": list(self.augment)}

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes this wrapper lacks (the wrapped dataset's own, e.g. its split)
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
