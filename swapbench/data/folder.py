"""Any folder of images (``data.dataset: folder``, ``data.root: path/to/images``).

Files: ``.png .jpg .jpeg .webp .bmp`` (any case), found recursively under ``data.root`` and sorted by
their relative POSIX path, so the order is the same on every machine. Names starting with '.'
(hidden files and folders) are ignored; links to folders are followed, each real folder once.
``data.limit`` keeps the first that many files of that order.

Split: by file. The test split is a fixed random subset of ``max(1, round(test_fraction * n))`` of
the n files, drawn from a generator seeded with 12345 whatever the recipe seed, so every run is
scored on the same files; the rest is the training split. ``data.manifest`` reads the split back
from a JSON record instead (a single split's ``manifest()``, or the ``{"train": ..., "test": ...}``
file a run writes next to its checkpoint).

Checks: the constructor fully decodes every file once, so a bad file stops the run before training
(a one-line :class:`UserError`) or, with ``data.skip_corrupt: true``, is left out with a warning
naming it and is recorded under ``"skipped"`` in the manifest. Results are cached in memory by
(path, size, mtime); nothing is written into the user's folder.

Conversions, applied to every image before cropping:

- EXIF orientation: applied (``PIL.ImageOps.exif_transpose``).
- RGBA / LA / PA and P or L/RGB with a transparency key: composited over white, then RGB.
- Grayscale (1, L, I;16, I, F): the gray value is replicated to the three RGB channels.
- 16-bit (I;16*, I): scaled to 8 bits as value / 257 (65535 -> 255, 32768 -> 128), not clipped.
- 16-bit RGB(A) PNG: PIL itself reads it as 8-bit RGB(A), keeping the high byte (65535 -> 255).
- F (32-bit float): values taken as 0-255 and clipped to that range.
- CMYK (and any other mode PIL can convert): PIL's conversion to RGB.
- Small images: a crop smaller than ``resolution`` is upscaled; a shorter side under 8 px is "too small".

Preprocessing: ``data.preprocess`` other than ``square`` applies the authors' modes
(swapbench.data.preprocess: scale to ``data.load_size``, random crop of ``data.resolution``, flip;
the test split crops the centre, unflipped). With ``square`` (the default):

Crops: the training split takes, with ``crop: random``, a square of side U(scale) x the shorter side
at a random place, flipped left-right with probability 1/2 when ``hflip``, drawn from a generator
seeded by (seed, index) so item i is the same tensor on any machine, in any worker; with
``crop: center``, the largest centred square (still flipped at random when ``hflip``). A training
split with any randomness is a long virtual sequence (about 1,000,000 items): item i is file
i mod n, so each pass over the files draws new crops and flips. The test split always takes the centred square,
unflipped. The square is resized (bilinear, antialiased) to ``resolution`` and mapped to [-1, 1].
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from swapbench.data.image_io import EXTENSIONS, MIN_SIDE, find_images, load_rgb, one_line, read_error
from swapbench.data.photos import crop_resize
from swapbench.data.preprocess import MODES as PREPROCESS_MODES
from swapbench.data.preprocess import preprocess as preprocess_image
from swapbench.data.preprocess import random_crop as preprocess_random_crop
from swapbench.errors import UserError
from swapbench.registry import DATASETS

log = logging.getLogger(__name__)

SPLIT_SEED = 12345  # the test files are the same for every recipe seed, so runs are comparable
VIRTUAL_LENGTH = 1_000_000  # items per pass of a random training split (files repeat with new crops)
SPLITS = ("train", "validation", "test")

# (absolute path, size in bytes, mtime in ns) -> None when the file decodes and is large enough,
# else the reason it is unusable. In memory only: a second dataset over the same folder (the other
# split, a later run in the same process) does not decode the files again.
_CHECKED: dict[tuple[str, int, int], str | None] = {}


# ---------------------------------------------------------------------------------------------
# Checking files
# ---------------------------------------------------------------------------------------------

def check_file(path: Path) -> str | None:
    """None when ``path`` decodes fully and is large enough, else why it is unusable (one line)."""
    try:
        st = path.stat()
    except OSError as exc:
        return read_error(exc)
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return _CHECKED[key]
    if st.st_size == 0:
        reason: str | None = "empty file, 0 bytes"
    else:
        try:
            arr = load_rgb(path)
        except Exception as exc:  # any failure to decode means the file is unusable
            reason = read_error(exc)
        else:
            h, w = arr.shape[:2]
            reason = (f"too small: {w}x{h} px, the shorter side must be at least {MIN_SIDE} px"
                      if min(h, w) < MIN_SIDE else None)
    _CHECKED[key] = reason
    return reason


# ---------------------------------------------------------------------------------------------
# Finding files and splitting
# ---------------------------------------------------------------------------------------------

def split_files(files: list[str], test_fraction: float, validation_fraction: float = 0.0) -> dict[str, list[str]]:
    """The fixed train/validation/test split of ``files`` (each split keeps the files' order). The test
    files are the first of one fixed permutation, the validation files (``validation_fraction`` > 0,
    taken out of training) the next: adding a validation split never changes the test files."""
    n = len(files)
    n_test = min(n, max(1, round(test_fraction * n)))
    n_val = min(n - n_test, max(1, round(validation_fraction * n))) if validation_fraction > 0 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    test_idx, val_idx = set(perm[:n_test]), set(perm[n_test : n_test + n_val])
    splits = {
        "train": [f for i, f in enumerate(files) if i not in test_idx and i not in val_idx],
        "test": [f for i, f in enumerate(files) if i in test_idx],
    }
    if n_val:
        splits["validation"] = [f for i, f in enumerate(files) if i in val_idx]
    return splits


def check_split(dataset: str, split: str, validation_fraction: float | None) -> None:
    """A user error for a split the settings do not make (validation needs data.validation_fraction > 0;
    None: the split comes from a manifest, which says itself whether it has one)."""
    if split not in SPLITS:
        raise UserError(f"dataset '{dataset}' has no split '{split}'; use one of {', '.join(SPLITS)}")
    if split == "validation" and validation_fraction is not None and validation_fraction <= 0:
        raise UserError(f"dataset '{dataset}' has a validation split only with data.validation_fraction > 0 "
                        "(a share of the files taken out of training); set it, e.g. data.validation_fraction=0.1")


def read_manifest(path: str | Path, split: str) -> dict[str, Any]:
    """The record of ``split`` in a manifest file: one split's ``manifest()`` or ``{"train": .., "test": ..}``."""
    path = Path(path)
    fix = "fix data.manifest or remove it to split the folder afresh"
    if not path.is_file():
        raise UserError(f"data.manifest file {path} does not exist; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"data.manifest file {path} is not readable JSON ({one_line(str(exc))}); {fix}") from None
    if isinstance(data, dict) and "files" not in data and isinstance(data.get(split), dict):
        data = data[split]
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise UserError(f"data.manifest file {path} holds no list of '{split}' files; {fix}")
    if data.get("dataset", "folder") != "folder":
        raise UserError(f"data.manifest file {path} records dataset '{data['dataset']}', not 'folder'; {fix}")
    if data.get("split", split) != split:
        raise UserError(
            f"data.manifest file {path} records only the '{data['split']}' split, not '{split}'; use the "
            f"data_manifest.json a run writes next to its checkpoint (it holds both), or {fix}"
        )
    if not all(isinstance(f, str) for f in data["files"]):
        raise UserError(f"data.manifest file {path} lists something other than file names; {fix}")
    outside = [f for f in data["files"] if Path(f).is_absolute() or ".." in Path(f).parts]
    if outside:  # a manifest names files inside data.root, never elsewhere on the machine
        raise UserError(f"data.manifest file {path} names {outside[0]!r}, which is outside data.root; a manifest "
                        f"lists paths relative to data.root, without '..'; {fix}")
    return data


def outside_root(root: Path, files: list[str], source: str) -> None:
    """Refuse files that resolve outside ``root``: a symlink inside data.root pointing elsewhere on the
    machine (to a file or through a linked folder) is not read, from a manifest or a folder scan."""
    real_root = root.resolve()
    for f in files:
        real = (root / f).resolve()
        if not real.is_relative_to(real_root):
            raise UserError(f"{source} names {f}, a symlink in data.root to {real}, outside data.root {real_root}; "
                            f"swapbench reads no file outside data.root: copy the file into the folder instead")


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------

@DATASETS.register("folder", description="Your own folder of images (png/jpg/webp/bmp), split by file; see data.root.")
class ImageFolder(Dataset):
    """Square crops of the image files under ``root``, split by file into train and test.

    Conversions (details in the module docstring):
    EXIF orientation applied; alpha (RGBA/LA/PA, P or L/RGB with transparency) composited over white.
    Grayscale (1/L/I;16/I/F) replicated to RGB; 16-bit values scaled by 1/257 (65535 -> 255), not clipped.
    CMYK and other modes converted to RGB by PIL; 16-bit RGB PNG read by PIL as 8-bit (high byte).
    Images smaller than ``resolution`` are upscaled; a shorter side under 8 px is unusable ("too small").

    Item i is file i of the split: a random (``crop="random"``, training) or centred square, resized
    to ``resolution``, in [-1, 1]; the training crop and flip come from a generator seeded by
    (seed, i). ``test_images`` is accepted but unused: the evaluator takes the first
    ``data.test_images`` items of the test split.
    """

    SUMMARY = ("train: one crop per file of data.root (random or center); "
               "test: a fixed max(1, round(data.test_fraction x files)) of the files, centre crops")

    def __init__(self, split: str, resolution: int, root: str | os.PathLike | None = None,
                 crop: str = "random", limit: int | None = None, test_fraction: float = 0.1,
                 manifest: str | os.PathLike | None = None, skip_corrupt: bool = False,
                 scale: tuple[float, float] = (0.2, 0.6), hflip: bool = True, seed: int = 0,
                 test_images: int = 64, preprocess: str = "square", load_size: int | None = None,
                 validation_fraction: float = 0.0):
        check_split("folder", split, None if manifest is not None else validation_fraction)
        if crop not in ("random", "center"):
            raise UserError(f"data.crop '{crop}' is not a crop of dataset 'folder'; use random or center")
        if root is None:
            raise UserError("dataset 'folder' needs data.root: set it to the folder that holds your images")
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise UserError(f"data.root folder {self.root} does not exist; fix data.root")
        if not self.root.is_dir():
            raise UserError(f"data.root {self.root} is a file, not a folder; set data.root to the folder that holds it")
        self.split = split
        self.resolution = resolution
        self.crop = crop if split == "train" else "center"
        self.scale = tuple(scale)
        self.hflip = bool(hflip) and split == "train"
        self.seed = seed
        self.skip_corrupt = skip_corrupt
        self.preprocess = preprocess
        self.load_size = load_size or resolution
        if preprocess != "square" and preprocess not in PREPROCESS_MODES:
            raise UserError(f"data.preprocess '{preprocess}' is unknown; use square or one of "
                            f"{', '.join(PREPROCESS_MODES)}")

        if manifest is None:
            all_files = find_images(self.root)
            if not all_files:
                raise UserError(
                    f"data.root folder {self.root} has no image files ({' '.join(EXTENSIONS)}, any case, "
                    f"searched recursively); put images there or fix data.root"
                )
            if limit is not None:
                all_files = all_files[:limit]
            splits = split_files(all_files, test_fraction, validation_fraction)
            self.limit, self.test_fraction = limit, test_fraction
        else:
            record = read_manifest(manifest, split)
            splits = {split: list(record["files"])}
            missing = [f for f in splits[split] if not (self.root / f).is_file()]
            if missing:
                raise UserError(
                    f"data.manifest file {manifest} lists {len(missing)} file(s) missing under {self.root}, first: "
                    f"{self.root / missing[0]}; restore them, fix data.root, or remove data.manifest to split afresh"
                )
            self.limit = record.get("limit", limit)
            self.test_fraction = record.get("test_fraction", test_fraction)

        outside_root(self.root, [f for files in splits.values() for f in files],
                     f"data.manifest file {manifest}" if manifest is not None else f"data.root {self.root}")

        # Every file of every known split is decoded once here (train and test alike, so the first
        # error lists every bad file of the run); the other split's dataset reuses the cache.
        start = time.perf_counter()
        bad = {s: [(f, r) for f in files if (r := check_file(self.root / f)) is not None] for s, files in splits.items()}
        n_checked = sum(len(v) for v in splits.values())
        log.info("checked %d image file(s) under %s in %.1f s", n_checked, self.root, time.perf_counter() - start)
        all_bad = [item for s in SPLITS for item in bad.get(s, [])]
        if all_bad and not skip_corrupt:
            kind = "unreadable" if not any(r.startswith("too small") for _, r in all_bad) else "unusable"
            first, reason = all_bad[0]
            raise UserError(
                f"{len(all_bad)} {kind} image file(s) under {self.root}, first: {self.root / first} ({reason}); "
                f"fix or remove them, or set data.skip_corrupt: true to skip them"
            )
        self.skipped = [{"file": f, "reason": r} for f, r in bad[split]]
        for item in self.skipped:
            log.warning("skipping %s: %s", self.root / item["file"], item["reason"])
        dropped = {f for f, _ in bad[split]}
        self.files = [f for f in splits[split] if f not in dropped]

        counts = {s: len(files) - len(bad[s]) for s, files in splits.items()}
        if any(c < 2 for c in counts.values()):
            found = sum(counts.values())
            per_split = ", ".join(f"{c} for {s}" for s, c in counts.items())
            raise UserError(
                f"data.root folder {self.root} gives {found} usable image file(s) ({per_split}"
                f"{f', data.test_fraction={self.test_fraction}' if manifest is None else f', from {manifest}'}); "
                f"each split needs at least 2: add images"
                f"{', or change data.test_fraction' if manifest is None else ''}"
            )

    # -- the record ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """A JSON record of this split's files, enough to rebuild it with ``data.manifest``."""
        return {
            "dataset": "folder",
            "root": str(self.root),
            "split": self.split,
            "files": list(self.files),
            "skipped": [dict(s) for s in self.skipped],
            "test_fraction": self.test_fraction,
            "limit": self.limit,
        }

    # -- items --------------------------------------------------------------------------------
    def __len__(self) -> int:
        # A random training split repeats its files under distinct item indices, so each pass of
        # the sampler draws new crops and flips (item i is file i mod n with a crop seeded by i).
        return len(self.files) * self.repeats

    @property
    def repeats(self) -> int:
        random_crop = self.crop == "random" if self.preprocess == "square" else preprocess_random_crop(self.preprocess)
        if self.split == "train" and random_crop or self.hflip:
            return max(1, VIRTUAL_LENGTH // len(self.files))
        return 1

    def _load(self, index: int) -> torch.Tensor:
        path = self.root / self.files[index]
        try:
            arr = load_rgb(path)
        except Exception as exc:  # the file was checked in __init__, so it changed on disk since
            raise UserError(
                f"image file {path} could not be read ({read_error(exc)}) although it was readable when the run "
                f"started; restore it, or remove it and start the run again"
            ) from exc
        return torch.from_numpy(arr).permute(2, 0, 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        file_index = index % len(self.files)
        photo = self._load(file_index)
        if self.preprocess != "square":
            return preprocess_image(photo.permute(1, 2, 0).numpy(), self.preprocess, self.load_size, self.resolution,
                                    train=self.split == "train", hflip=self.hflip,
                                    uniforms=torch.rand(3, generator=g).tolist(),
                                    name=f"image {self.root / self.files[file_index]}")
        h, w = photo.shape[1:]
        short = min(h, w)
        u = torch.rand(4, generator=g).tolist()
        if self.crop == "random":
            lo, hi = self.scale
            side = min(short, max(1, round((lo + (hi - lo) * u[0]) * short)))
            top = int(u[1] * (h - side + 1))
            left = int(u[2] * (w - side + 1))
            flip = self.hflip and u[3] < 0.5
        else:
            side, top, left = short, (h - short) // 2, (w - short) // 2
            flip = self.hflip and u[3] < 0.5
        return crop_resize(photo, top, left, side, self.resolution, flip=flip)
