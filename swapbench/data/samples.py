"""Looking at a registered dataset without training: a grid of its images, its images as PNG files, and
how fast a DataLoader delivers it (``swapbench datasets preview|export|bench``)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from swapbench.data import SeededInfiniteSampler, build_dataset
from swapbench.errors import UserError
from swapbench.recipe import Recipe, recipe_from_dict
from swapbench.registry import DATASETS


def dataset_summaries() -> list[tuple[str, str, str]]:
    """(name, description, splits and sizes) of every registered dataset."""
    return [(name, DATASETS.describe(name), getattr(DATASETS.get(name), "SUMMARY", "")) for name in DATASETS.names()]


def dataset_recipe(name: str, resolution: int, n: int, sets: Sequence[str]) -> Recipe:
    """A recipe that reads dataset ``name`` at ``resolution`` with ``n`` test images (``sets`` applied)."""
    # no network is built: the model settings only need to pass the cross-field checks at this size
    base = {"data": {"dataset": name, "resolution": resolution, "test_images": max(n, 2)},
            "encoder": {"texture_convs": 0}, "cooccur": {"patch_size": min(resolution, 32)}, "eval": {"grid_size": 2}}
    return recipe_from_dict(base, list(sets), source=f"datasets {name}")


def _first_images(name: str, split: str, n: int, resolution: int, sets: Sequence[str]) -> tuple[Dataset, torch.Tensor]:
    ds = build_dataset(dataset_recipe(name, resolution, n, sets), split)
    count = min(n, len(ds))
    return ds, torch.stack([ds[i] for i in range(count)])


def preview(name: str, out_path: Path, split: str, n: int, resolution: int, sets: Sequence[str] = ()) -> list[str]:
    """Write a grid of the split's first ``n`` images to ``out_path``; for a dataset with a ground-truth
    swap (``synthetic``) also the layout x style grid beside it. Returns a line per file written."""
    from torchvision.utils import save_image

    from swapbench.outputs import make_parent, writable_file

    writable_file(out_path, "--out", (".png", ".jpg", ".jpeg"))
    ds, images = _first_images(name, split, n, resolution, sets)
    count = len(images)
    save_image((images + 1) / 2, make_parent(out_path), nrow=math.ceil(math.sqrt(count)), padding=2, pad_value=1.0)
    lines = [f"wrote {out_path}: {count} {split} images of '{name}' at {resolution} px"]
    if hasattr(ds, "gt_swap"):
        k = min(count, 6)
        rows = [ds.gt_swap([i] * k, list(range(k))) for i in range(k)]  # row i: layout of item i
        gt_path = out_path.with_name(out_path.stem + "_layout_x_style" + out_path.suffix)
        save_image((torch.cat(rows) + 1) / 2, gt_path, nrow=k, padding=2, pad_value=1.0)
        lines.append(f"wrote {gt_path}: rows share the layout of test item i, columns the style of item j; "
                     f"the diagonal holds the items themselves, every other cell is a perfect swap")
    return lines


def export_png(name: str, out_dir: Path, split: str, n: int, resolution: int, sets: Sequence[str] = (),
               force: bool = False) -> int:
    """Write the split's first ``n`` images as lossless ``<split>_0000.png``, ... into ``out_dir``; the count."""
    from PIL import Image

    from swapbench.outputs import replacing, writable_folder
    from swapbench.visualize import to_uint8

    writable_folder(out_dir, "--out-dir")  # checked, not kept: the data is checked before the folder is made
    taken = sorted(p.name for p in out_dir.glob(f"{split}_[0-9][0-9][0-9][0-9].png"))
    if taken and not force:
        raise UserError(f"--out-dir {out_dir} already holds {len(taken)} {split}_NNNN.png files (first {taken[0]}); "
                        "pass --force to overwrite them, or give an empty folder")
    ds = build_dataset(dataset_recipe(name, resolution, n, sets), split)
    count = min(n, len(ds))
    writable_folder(out_dir, "--out-dir", keep=True)
    for i in range(count):
        with replacing(out_dir / f"{split}_{i:04d}.png") as tmp:
            Image.fromarray(to_uint8(ds[i]).permute(1, 2, 0).numpy()).save(tmp)
    return count


def loader_speed(name: str, resolution: int, n: int, batch: int, workers: int,
                 sets: Sequence[str] = ()) -> tuple[int, float]:
    """(training images loaded, seconds) for at least ``n`` images through a DataLoader, after one warm-up batch."""
    ds = build_dataset(dataset_recipe(name, resolution, 2, sets), "train")
    loader = DataLoader(ds, batch_size=batch, sampler=SeededInfiniteSampler(len(ds), 0), num_workers=workers)
    it = iter(loader)
    next(it)  # warm-up (and worker start-up)
    start, seen = time.perf_counter(), 0
    while seen < n:
        seen += next(it).shape[0]
    return seen, time.perf_counter() - start
