"""Checkpoints as safetensors plus JSON: nothing is ever unpickled.

Any nested state (module and optimiser state dicts, RNG states, counters) is split into a flat dict
of tensors, stored as safetensors, and a JSON skeleton that records where each tensor goes, stored
in the safetensors header. A JSON sidecar repeats the human-readable metadata (step, recipe hash,
git commit) with the sha256 of the tensor file, which loading checks (the weights of a zoo model have
their sha256 in the folder's manifest.json instead). Both files are written to a temporary name and
renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from swapbench.errors import UserError
from swapbench.outputs import os_error_of

FORMAT = "swapbench-checkpoint-1"
ZOO_MANIFEST = "manifest.json"  # records the sha256 of a zoo model's weights (see swapbench.zoo)
LAST_CHECKPOINT = "last.safetensors"  # the file a run's training keeps current in its checkpoint folder


def flatten_state(state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """(tensors keyed by path, JSON skeleton with ``{"__tensor__": path}`` where each tensor was)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            tensors[path] = obj.detach().cpu().contiguous().clone()
            return {"__tensor__": path}
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj):
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in obj.items()}
            return {"__items__": [[k, walk(v, f"{path}.{k}")] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"checkpoint state at '{path}' has an unsupported type {type(obj).__name__}")

    return tensors, walk(state, "")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__items__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__items__"]}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def write_tensors(path: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> None:
    """``state`` as one safetensors file, its skeleton and ``meta`` in the header (no sidecar, no rename)."""
    tensors, skeleton = flatten_state(state)
    header = {"format": FORMAT, "skeleton": json.dumps(skeleton), "meta": json.dumps(meta)}
    try:
        save_file(tensors, str(path), metadata=header)
    except Exception as exc:  # safetensors raises its own error type, naming the OS error: an OSError for
        disk = exc if isinstance(exc, OSError) else os_error_of(exc, path)  # the callers (a trainer's save
        if disk is None:  # says which checkpoint is still whole)
            raise
        raise disk from None


def save_checkpoint(path: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` (.safetensors) and ``meta`` + sha256 to the .json beside it.

    Both files are written and hashed under temporary names first and then renamed into place one
    right after the other, so the old pair stays whole until the new pair is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temps = []
    try:
        for _ in range(2):
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            os.close(fd)
            temps.append(tmp)
        write_tensors(temps[0], state, meta)
        info = {"format": FORMAT, "file": path.name, "sha256": sha256_file(Path(temps[0])), **meta}
        Path(temps[1]).write_text(json.dumps(info, indent=2))
        os.replace(temps[0], path)
        os.replace(temps[1], sidecar(path))
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def recorded_sha256(path: Path) -> tuple[Path, str]:
    """(the file that records the sha256 of checkpoint ``path``, that sha256): the .json sidecar a run
    wrote beside it or, for the weights of a zoo model (swapbench.zoo), its folder's manifest.json."""
    side = sidecar(path)
    manifest = path.parent / ZOO_MANIFEST
    if not side.is_file() and manifest.is_file():
        side = manifest
    if not side.is_file():
        raise UserError(f"checkpoint {path} has no {side.name} beside it with its sha256, so it cannot be checked; "
                        f"copy the .json a run wrote with it (or evaluate the run by its MLflow run id)")
    try:
        record = json.loads(side.read_text())
        if side.name == ZOO_MANIFEST:
            record = record["weights"] if record["weights"].get("file") == path.name else {}
        expected = record.get("sha256")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        expected = None
    if not expected:
        raise UserError(f"{side} holds no sha256 of {path.name}; it is damaged, copy the .json the run wrote"
                        + (" (or restore the zoo model's folder)" if side.name == ZOO_MANIFEST else ""))
    return side, expected


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta) from a checkpoint written by :func:`save_checkpoint`; checks the sidecar's hash."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the .safetensors file a run wrote")
    side, expected = recorded_sha256(path)
    actual = sha256_file(path)
    if expected != actual:
        raise UserError(
            f"checkpoint {path} has sha256 {actual} but {side.name} records {expected}; "
            f"the file is corrupt or was replaced, use another checkpoint"
        )
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    if header.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by swapbench (format {header.get('format')!r})")
    return unflatten_state(json.loads(header["skeleton"]), tensors), json.loads(header["meta"])


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint written by :func:`save_checkpoint` (its recipe, step, ...), read from the
    safetensors header alone: no tensor is loaded and the hash is not checked (:func:`load_checkpoint`
    checks it when the weights are loaded)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the .safetensors file a run wrote")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise UserError(f"checkpoint {path} is not a readable safetensors file ({exc})") from None
    if header.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by swapbench (format {header.get('format')!r})")
    return json.loads(header["meta"])
