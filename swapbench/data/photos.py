"""Random crops of the photographs that ship inside scikit-image and scikit-learn.

Real photographs that nobody on this project made, small enough for CPU training on crops, and
present on any machine that installed swapbench. The split is by source photograph, so no test crop
shares a photo with training.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from swapbench.errors import UserError
from swapbench.registry import DATASETS

# name -> (package, path inside the package)
PHOTO_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "ihc": ("skimage", "data/ihc.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "motorcycle_right": ("skimage", "data/motorcycle_right.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "brick": ("skimage", "data/brick.png"),  # grayscale, used as RGB
    "grass": ("skimage", "data/grass.png"),  # grayscale, used as RGB
    "gravel": ("skimage", "data/gravel.png"),  # grayscale, used as RGB
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
# The two motorcycle views are one scene, so they sit in the same split.
TEST_PHOTOS = ("chelsea", "coffee", "flower", "gravel")
TRAIN_PHOTOS = tuple(n for n in PHOTO_FILES if n not in TEST_PHOTOS)
SPLITS = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}

TRAIN_LENGTH = 1_000_000  # distinct deterministic crops per "epoch" of the training split
TEST_SEED = 12345  # the test split is the same for every recipe seed, so runs are comparable


def photo_path(name: str) -> Path:
    package, rel = PHOTO_FILES[name]
    module = __import__(package)
    path = Path(module.__file__).parent / rel
    if not path.is_file():
        raise UserError(f"photo '{name}' is missing from the installed {package} ({path}); reinstall {package}")
    return path


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> torch.Tensor:
    """The photograph as a uint8 tensor (3, H, W); grayscale is repeated to RGB."""
    with Image.open(photo_path(name)) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def crop_resize(photo: torch.Tensor, top: int, left: int, side: int, resolution: int, flip: bool) -> torch.Tensor:
    """A square crop resized (bilinear, antialiased) to ``resolution``, as float in [-1, 1]."""
    crop = photo[:, top : top + side, left : left + side].float().unsqueeze(0)
    crop = F.interpolate(crop, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    crop = crop.squeeze(0).clamp(0, 255) / 127.5 - 1
    return crop.flip(-1) if flip else crop


@DATASETS.register("photos",
                   description="Random crops of the photographs shipped with scikit-image and scikit-learn, split by photo.")
class PhotoCrops(Dataset):
    """Item ``i`` is a crop drawn from a generator seeded by (seed, split, i): the same bytes on any
    machine, in any worker, in any order. The training split is a long virtual sequence of crops;
    the test split is ``test_images`` crops fixed independently of the recipe seed."""

    SUMMARY = (f"train: {TRAIN_LENGTH:,} seeded crops of {len(TRAIN_PHOTOS)} photos; "
               f"test: data.test_images crops of {len(TEST_PHOTOS)} other photos")

    def __init__(self, split: str, resolution: int, test_images: int = 64,
                 scale: tuple[float, float] = (0.2, 0.6), hflip: bool = True, seed: int = 0):
        if split not in SPLITS:
            raise UserError(f"dataset 'photos' has no split '{split}'; use one of {', '.join(SPLITS)}")
        self.split = split
        self.names = SPLITS[split]
        self.photos = [load_photo(n) for n in self.names]
        self.resolution = resolution
        self.scale = scale
        self.hflip = hflip and split == "train"
        self.seed = seed if split == "train" else TEST_SEED
        self.length = TRAIN_LENGTH if split == "train" else test_images

    def __len__(self) -> int:
        return self.length

    def manifest(self) -> dict:
        return {"dataset": "photos", "split": self.split, "photos": list(self.names), "seed": self.seed,
                "length": self.length, "resolution": self.resolution, "scale": list(self.scale)}

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 2 + (self.split == "test"))
        u = torch.rand(5, generator=g).tolist()
        photo = self.photos[min(int(u[0] * len(self.photos)), len(self.photos) - 1)]
        h, w = photo.shape[1:]
        lo, hi = self.scale
        side = max(1, round((lo + (hi - lo) * u[1]) * min(h, w)))
        top = int(u[2] * (h - side + 1))
        left = int(u[3] * (w - side + 1))
        return crop_resize(photo, top, left, side, self.resolution, flip=self.hflip and u[4] < 0.5)
