"""Process-level facts a run records or depends on: device, threads, seeds, git commit."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from swapbench.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is a user error."""
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"device '{name}' is not one swapbench can use; give auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but torch sees no CUDA GPU; ask for device cpu or auto "
                        "(--set device=cpu for a recipe, --device cpu for a command)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str:
    """The commit of the swapbench checkout (with '-dirty' if it has uncommitted changes), or 'unknown'."""
    env = os.environ.get("SWAPBENCH_GIT_COMMIT")
    if env:
        return env
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", *a], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
