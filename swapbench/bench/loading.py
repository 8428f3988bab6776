"""Data rows: images/s each registered dataset's training loader delivers, built as the trainer builds
it (batch, workers, seeded sampler) for a benchmarked recipe, against that recipe's training rate.
``share_of_step`` = training images/s / loader images/s: the part of a step that loading would take
if it did not overlap with training (the target is at most 0.1).

The ``folder`` and ``lmdb`` datasets read files; their rows use a temporary folder of PNG files written
from the photo crops (twice the recipe's side), and an LMDB database holding the same PNG bytes under
LSUN-style keys, so they measure decoding and cropping real encoded images."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from swapbench.recipe import BenchConfig, Recipe, recipe_from_dict

DATA_COLUMNS = ("dataset", "recipe", "resolution", "batch", "workers", "loader_images_per_second",
                "train_images_per_second", "share_of_step", "note")
FOLDER_FILES = 24


def loader_rate(recipe: Recipe, batches: int) -> float:
    """Images/s of the recipe's training split through a DataLoader like the trainer's (after one
    warm-up batch, which also starts the workers)."""
    from swapbench.data import SeededInfiniteSampler, build_dataset

    ds = build_dataset(recipe, "train")
    workers = recipe.data.num_workers
    loader = DataLoader(ds, batch_size=recipe.train.batch_size, sampler=SeededInfiniteSampler(len(ds), recipe.seed),
                        num_workers=workers, persistent_workers=workers > 0, drop_last=True)
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += next(it).shape[0]
    return seen / (time.perf_counter() - start)


def write_folder(root: Path, resolution: int) -> None:
    from PIL import Image

    from swapbench.data.photos import PhotoCrops
    from swapbench.visualize import to_uint8

    ds = PhotoCrops("test", resolution * 2, test_images=FOLDER_FILES)
    for i in range(min(FOLDER_FILES, len(ds))):
        Image.fromarray(to_uint8(ds[i]).permute(1, 2, 0).numpy()).save(root / f"{i:03d}.png")


def write_lmdb(path: Path, folder: Path) -> None:
    """An LMDB database with the PNG files of ``folder`` as values (keys: the file names' stems)."""
    import lmdb

    files = sorted(folder.glob("*.png"))
    env = lmdb.open(str(path), map_size=max(1 << 24, 4 * sum(f.stat().st_size for f in files)))
    with env.begin(write=True) as txn:
        for f in files:
            txn.put(f.stem.encode(), f.read_bytes())
    env.close()


def data_rows(settings: BenchConfig, train_rows: list[dict[str, Any]], recipes: dict[str, Recipe]) -> list[dict]:
    """One row per registered dataset and benchmarked recipe (that recipe's side, batch and workers)."""
    from swapbench.registry import DATASETS

    rates = {r["recipe"]: r.get("images_per_second") for r in train_rows if r["device"] == "cpu"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in recipes.items():
            for dataset in DATASETS.names():
                base = recipe.model_dump(mode="json")
                data = {**base["data"], "dataset": dataset}
                note = ""
                if dataset in ("folder", "lmdb"):
                    root = Path(tmp) / f"{recipe.data.resolution}px"
                    if not root.exists():
                        root.mkdir()
                        write_folder(root, recipe.data.resolution)
                    data["root"] = str(root)
                    note = f"{FOLDER_FILES} PNG files of {recipe.data.resolution * 2} px written for this row"
                    if dataset == "lmdb":
                        db = Path(tmp) / f"{recipe.data.resolution}px.lmdb"
                        if not db.exists():
                            write_lmdb(db, root)
                        data["root"] = str(db)
                        note = f"an LMDB of {FOLDER_FILES} PNG images of {recipe.data.resolution * 2} px written for this row"
                variant = recipe_from_dict({**base, "data": data}, source=f"bench data {dataset}")
                loader = loader_rate(variant, settings.data_batches)
                train = rates.get(name)
                rows.append({"dataset": dataset, "recipe": name, "resolution": recipe.data.resolution,
                             "batch": recipe.train.batch_size, "workers": recipe.data.num_workers,
                             "loader_images_per_second": loader, "train_images_per_second": train,
                             "share_of_step": train / loader if train else None, "note": note})
    return rows
