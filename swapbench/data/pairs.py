"""Evaluation pairs (A_i, B_i), A_i != B_i, drawn once with a fixed seed and saved with the run, so
that every method in the benchmark swaps exactly the same structure and texture sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from swapbench.errors import UserError
from swapbench.outputs import replace_text


def draw_pairs(n: int, split_size: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` index pairs into a split of ``split_size`` items, A != B in every pair."""
    if split_size < 2:
        raise UserError(f"swap pairs need a test split of at least 2 images, this one has {split_size}")
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(split_size, (n,), generator=g)
    b = (a + torch.randint(1, split_size, (n,), generator=g)) % split_size  # never equal to a
    return list(zip(a.tolist(), b.tolist()))


def pairs_record(pairs: list[tuple[int, int]], seed: int, split_manifest: dict[str, Any] | None = None,
                 reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON record of the pairs; with the split's manifest, file names are recorded beside indices;
    ``reference`` records the held-out real images that swap FID/KID compare against."""
    record: dict[str, Any] = {"seed": seed, "split": "test", "pairs": [list(p) for p in pairs]}
    if reference is not None:
        record["reference"] = reference
    if split_manifest is not None:
        record["dataset"] = split_manifest.get("dataset")
        files = split_manifest.get("files")
        if files:
            record["files"] = [[files[a], files[b]] for a, b in pairs]
    return record


def save_pairs(path: str | Path, record: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_text(path, json.dumps(record, indent=1))


def load_pairs(path: str | Path) -> list[tuple[int, int]]:
    try:
        record = json.loads(Path(path).read_text())
        return [(int(a), int(b)) for a, b in record["pairs"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a swapbench pairs file ({exc}); use the pairs.json a run logged") from None
