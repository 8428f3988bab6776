"""Files swapbench caches across runs (real-image statistics, converted score-network weights),
written whole and hashed: a cache file that is damaged (a flipped bit, a cut-off write) is noticed
on reading, reported, deleted and rebuilt, never used."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from swapbench.outputs import os_error_of, write_failed

log = logging.getLogger(__name__)
HASH_KEY = "content_sha256"


def content_hash(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_cached(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` with the hash of their contents, under a temporary name renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        try:
            save_file(tensors, str(tmp), metadata={**(metadata or {}), HASH_KEY: content_hash(tensors)})
        except Exception as exc:  # safetensors' own error type names the OS error
            disk = exc if isinstance(exc, OSError) else os_error_of(exc, path)
            if disk is None:
                raise
            raise disk from None
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: one line, the previous cache file (if any) untouched
        raise write_failed(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def load_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache file, or None when it is absent or damaged (a damaged one is deleted)."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            expected = (f.metadata() or {}).get(HASH_KEY)
        tensors = load_file(str(path))
        problem = None if expected == content_hash(tensors) else "its contents do not match their hash"
    except Exception as exc:  # an unreadable header or truncated data
        problem = f"it is unreadable ({type(exc).__name__})"
    if problem is None:
        return tensors
    log.warning("cache file %s is damaged (%s); deleting it and computing it again", path, problem)
    path.unlink(missing_ok=True)
    return None
