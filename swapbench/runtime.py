"""Process-level facts a run records or depends on: device, threads, seeds, git commit."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

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


def process_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished child processes (user + system)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (``taskset``, a
    container's cpuset), else every core the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_info(text: str | None = None) -> dict[str, Any]:
    """CPU model and vector extensions from /proc/cpuinfo (``text`` for tests); 'unknown' elsewhere."""
    if text is None:
        path = Path("/proc/cpuinfo")
        text = path.read_text() if path.is_file() else ""
    model, flags = platform.processor() or "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    return {"cpu_model": model, "avx512": "avx512f" in flags, "avx2": "avx2" in flags,
            "cpu_flags_known": bool(flags)}


def host_tags() -> dict[str, str]:
    """MLflow tags naming the CPU a run trains on (times mean little without it), and torch's threads."""
    info = cpu_info()
    return {"swapbench.host.cpu_model": info["cpu_model"], "swapbench.host.cpus": str(usable_cores()),
            "swapbench.host.threads": str(torch.get_num_threads()),
            "swapbench.host.avx512": str(info["avx512"]).lower() if info["cpu_flags_known"] else "unknown"}
