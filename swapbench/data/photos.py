"""Random crops of the photographs that ship inside scikit-image and scikit-learn.

Real photographs that nobody on this project made, small enough for CPU training on crops, and
present on any machine that installed swapbench. The splits are by source photograph: no crop of the
validation or test split shares a photograph with training or with the other split.

- train: the 10 photographs of :data:`TRAIN_PHOTOS` (unchanged since the first recipes, so their hashes
  and the zoo's models still mean the same training data);
- test: :data:`TEST_PHOTOS` (chelsea, coffee, flower, gravel);
- validation: :data:`VALIDATION_PHOTOS`, four photographs no other split uses (Grace Hopper's portrait
  from matplotlib's sample data, and scikit-image's camera, coins and moon, greyscale used as RGB). It is
  greyer than the test split (one colour photograph of four, against three), which is what the installed
  packages offer without taking photographs out of training.

The realism reference of a split (its items after the scored ones, see
``swapbench.evaluation.evaluate.held_out_split``) are further crops of the *same* photographs as that
split's swap sources: no crop is a source, but the photographs are shared. With 18 photographs in all,
a reference of other photographs would have to come out of training (changing what every existing
photos recipe trained on under an unchanged hash) or out of the other held-out split. Each item's source
photograph is known (:meth:`PhotoCrops.source_ids`), so intervals resample photographs, not crops.
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
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "camera": ("skimage", "data/camera.png"),  # grayscale, used as RGB
    "coins": ("skimage", "data/coins.png"),  # grayscale, used as RGB
    "moon": ("skimage", "data/moon.png"),  # grayscale, used as RGB
}
# The two motorcycle views are one scene, so they sit in the same split.
TEST_PHOTOS = ("chelsea", "coffee", "flower", "gravel")
VALIDATION_PHOTOS = ("grace_hopper", "camera", "coins", "moon")
TRAIN_PHOTOS = tuple(n for n in PHOTO_FILES if n not in TEST_PHOTOS + VALIDATION_PHOTOS)
SPLITS = {"train": TRAIN_PHOTOS, "validation": VALIDATION_PHOTOS, "test": TEST_PHOTOS}

TRAIN_LENGTH = 1_000_000  # distinct deterministic crops per "epoch" of the training split
TEST_SEED = 12345  # the test split is the same for every recipe seed, so runs are comparable
VALIDATION_SEED = 54321  # likewise the validation split


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
    the validation and test splits are ``test_images`` crops fixed independently of the recipe seed."""

    SUMMARY = (f"train: {TRAIN_LENGTH:,} seeded crops of {len(TRAIN_PHOTOS)} photos; "
               f"validation and test: data.test_images crops of {len(VALIDATION_PHOTOS)} and {len(TEST_PHOTOS)} "
               "other photos")

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
        self.seed = {"train": seed, "validation": VALIDATION_SEED, "test": TEST_SEED}[split]
        self.length = TRAIN_LENGTH if split == "train" else test_images

    def __len__(self) -> int:
        return self.length

    def manifest(self) -> dict:
        return {"dataset": "photos", "split": self.split, "photos": list(self.names), "seed": self.seed,
                "length": self.length, "resolution": self.resolution, "scale": list(self.scale)}

    def _draw(self, index: int) -> tuple[int, list[float]]:
        """(photograph number in this split, the item's other uniform draws)."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 2 + (self.split != "train"))
        u = torch.rand(5, generator=g).tolist()
        return min(int(u[0] * len(self.photos)), len(self.photos) - 1), u

    def source_ids(self, indices) -> list[str]:
        """The source photograph of each item: the unit an interval resamples (crops of one photograph
        are not independent)."""
        return [self.names[self._draw(i)[0]] for i in indices]

    def __getitem__(self, index: int) -> torch.Tensor:
        k, u = self._draw(index)
        photo = self.photos[k]
        h, w = photo.shape[1:]
        lo, hi = self.scale
        side = max(1, round((lo + (hi - lo) * u[1]) * min(h, w)))
        top = int(u[2] * (h - side + 1))
        left = int(u[3] * (w - side + 1))
        return crop_resize(photo, top, left, side, self.resolution, flip=self.hflip and u[4] < 0.5)
