"""An LMDB database of encoded images, as LSUN distributes its categories (``data.dataset: lmdb``).

Layout: each entry's key names an image and its value is the encoded file (webp, jpeg or png: what
PIL reads). ``data.root`` is the database folder (holding ``data.mdb``) or the ``data.mdb`` file itself.
The database is opened read-only without a lock file, and nothing is written next to it (the authors'
loader caches the key list in the database folder; swapbench keeps it in memory).

Keys are sorted (bytes order), ``data.limit`` keeps the first that many, and the split is by key as
the folder dataset splits files: a fixed random ``max(1, round(test_fraction * n))`` of the keys, drawn
with the same seed whatever the recipe seed, is the test split. PIL decodes images to RGB, so LSUN's
entries need no BGR swap (the authors decode with OpenCV, which returns BGR, and swap it back).

Items: training images go through ``data.preprocess`` (the LSUN launchers:
``scale_shortside_and_crop``), or, with ``square``, a square of ``data.scale`` x the short side as the
folder dataset takes it; flips and crops come from a generator seeded by (seed, item index).

Errors (one line each, before training): no ``data.root``, a missing path, a file or folder that is
not an LMDB database, an empty database, a first image that does not decode. An entry that fails to
decode during training stops the run naming its key, or with ``data.skip_corrupt`` is replaced by
the next entry with a warning.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from swapbench.data.folder import VIRTUAL_LENGTH, check_split, split_files
from swapbench.data.image_io import to_rgb_array
from swapbench.data.photos import crop_resize
from swapbench.data.preprocess import MODES
from swapbench.data.preprocess import preprocess as preprocess_image
from swapbench.data.preprocess import random_crop as preprocess_random_crop
from swapbench.errors import UserError
from swapbench.registry import DATASETS

log = logging.getLogger(__name__)


def decode(buffer: bytes) -> np.ndarray:
    """Encoded image bytes -> uint8 RGB (H, W, 3), with the folder dataset's conversions."""
    with Image.open(io.BytesIO(buffer)) as im:
        im.load()
        return to_rgb_array(im)


# One read-only environment per database and process: LMDB refuses to open a database twice in one
# process (the train and test splits share it), and a handle must not cross a fork (DataLoader workers):
# a forked worker inherits the parent's open handle, which py-lmdb counts as already open in the worker
# too, so the worker closes its inherited copy (the parent's stays open) before opening its own.
_ENVIRONMENTS: dict[tuple[str, int], lmdb.Environment] = {}


def environment(path: Path) -> lmdb.Environment:
    """The database at ``path`` (its folder, or its data.mdb file), opened read-only once per process."""
    if path.is_file() and path.name == "data.mdb":
        path = path.parent
    key = (os.path.realpath(path), os.getpid())
    if key not in _ENVIRONMENTS:
        for inherited in [k for k in _ENVIRONMENTS if k[0] == key[0]]:  # opened by the parent before a fork
            _ENVIRONMENTS.pop(inherited).close()
        _ENVIRONMENTS[key] = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                                       subdir=path.is_dir(), max_readers=256)
    return _ENVIRONMENTS[key]


@DATASETS.register("lmdb", description="An LMDB database of encoded images (LSUN's layout), split by key; "
                   "see data.root.")
class LMDBImages(Dataset):
    """Images of an LMDB database, split by key into train and test (details in the module docstring)."""

    SUMMARY = ("train: the entries of the LMDB at data.root, preprocessed as data.preprocess says; "
               "test: a fixed max(1, round(data.test_fraction x entries)) of them, centre crops")

    def __init__(self, split: str, resolution: int, root: str | os.PathLike | None = None,
                 preprocess: str = "square", load_size: int | None = None, crop: str = "random",
                 scale: tuple[float, float] = (0.2, 0.6), hflip: bool = True, seed: int = 0,
                 limit: int | None = None, test_fraction: float = 0.1, skip_corrupt: bool = False,
                 manifest: str | None = None, validation_fraction: float = 0.0):
        check_split("lmdb", split, validation_fraction)
        if root is None:
            raise UserError("dataset 'lmdb' needs data.root: set it to the LMDB database folder (the one holding "
                            "data.mdb)")
        if manifest is not None:
            raise UserError("data.manifest is a file list of dataset 'folder'; an LMDB split is fixed by its keys, "
                            "remove data.manifest")
        if preprocess != "square" and preprocess not in MODES:
            raise UserError(f"data.preprocess '{preprocess}' is unknown; use square or one of {', '.join(MODES)}")
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise UserError(f"data.root LMDB database {self.root} does not exist; fix data.root")
        try:
            with environment(self.root).begin(write=False) as txn:
                keys = sorted(key for key, _ in txn.cursor())
        except lmdb.Error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"data.root {self.root} is not a readable LMDB database ({first_line}); point "
                            f"data.root at the folder holding data.mdb") from None
        if not keys:
            raise UserError(f"data.root LMDB database {self.root} has no entries; fill it or fix data.root")
        if limit is not None:
            keys = keys[:limit]
        names = [k.hex() for k in keys]  # split_files works on strings; hex keeps every key distinct
        chosen = set(split_files(names, test_fraction, validation_fraction)[split])
        self.keys = [k for k, name in zip(keys, names) if name in chosen]
        if len(self.keys) < 2:
            raise UserError(f"data.root LMDB database {self.root} gives {len(self.keys)} '{split}' image(s) of "
                            f"{len(keys)} entries (data.test_fraction={test_fraction}); each split needs at least 2")
        self.split, self.resolution = split, resolution
        self.preprocess, self.load_size = preprocess, load_size or resolution
        self.crop = crop if split == "train" else "center"
        self.scale, self.seed = tuple(scale), seed
        self.hflip = bool(hflip) and split == "train"
        self.skip_corrupt = skip_corrupt
        self.limit, self.test_fraction, self.entries = limit, test_fraction, len(keys)
        try:  # the first image must decode, or the database holds something other than images
            decode(self._get(self.keys[0]))
        except Exception as exc:
            raise UserError(f"entry {self.keys[0]!r} of LMDB database {self.root} is not an image PIL can read "
                            f"({type(exc).__name__}); data.root must hold encoded images (LSUN's layout)") from None

    def _get(self, key: bytes) -> bytes:
        with environment(self.root).begin(write=False) as txn:
            value = txn.get(key)
        if value is None:
            raise UserError(f"entry {key!r} vanished from LMDB database {self.root} during the run; restore the "
                            f"database")
        return value

    def manifest(self) -> dict[str, Any]:
        """The record of this split: the database, its entry count, and a hash of the split's keys."""
        digest = hashlib.sha256(b"\n".join(self.keys)).hexdigest()
        return {"dataset": "lmdb", "root": str(self.root), "split": self.split, "images": len(self.keys),
                "entries": self.entries, "keys_sha256": digest, "test_fraction": self.test_fraction,
                "limit": self.limit, "preprocess": self.preprocess, "load_size": self.load_size}

    def __len__(self) -> int:
        random_crop = self.crop == "random" if self.preprocess == "square" else preprocess_random_crop(self.preprocess)
        varies = self.split == "train" and random_crop or self.hflip  # each pass draws new crops/flips
        return len(self.keys) * (max(1, VIRTUAL_LENGTH // len(self.keys)) if varies else 1)

    def _image(self, index: int) -> tuple[np.ndarray, bytes]:
        for attempt in range(len(self.keys)):
            key = self.keys[(index + attempt) % len(self.keys)]
            try:
                return decode(self._get(key)), key
            except UserError:
                raise
            except Exception as exc:
                if not self.skip_corrupt:
                    raise UserError(f"entry {key!r} of LMDB database {self.root} does not decode "
                                    f"({type(exc).__name__}); repair it, or set data.skip_corrupt: true") from None
                log.warning("skipping LMDB entry %r of %s: %s", key, self.root, type(exc).__name__)
        raise UserError(f"no entry of LMDB database {self.root} decodes; data.root must hold encoded images")

    def __getitem__(self, index: int) -> torch.Tensor:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        image, key = self._image(index % len(self.keys))
        u = torch.rand(4, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + index)).tolist()
        if self.preprocess != "square":
            return preprocess_image(image, self.preprocess, self.load_size, self.resolution,
                                    train=self.split == "train", hflip=self.hflip, uniforms=u[:3],
                                    name=f"entry {key!r} of {self.root}")
        photo = torch.from_numpy(image).permute(2, 0, 1)
        h, w = photo.shape[1:]
        short = min(h, w)
        if self.crop == "random":
            lo, hi = self.scale
            side = min(short, max(1, round((lo + (hi - lo) * u[0]) * short)))
            top, left = int(u[1] * (h - side + 1)), int(u[2] * (w - side + 1))
        else:
            side, top, left = short, (h - short) // 2, (w - short) // 2
        return crop_resize(photo, top, left, side, self.resolution, flip=self.hflip and u[3] < 0.5)
