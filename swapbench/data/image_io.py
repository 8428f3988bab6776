"""Reading image files: the one place swapbench decodes an image file into pixels.

Every reader of user images (the ``folder`` and ``lmdb`` datasets, ``swapbench score``, the editing
commands) decodes through :func:`to_rgb_array`, so a file gives the same pixels everywhere, and
reports an unreadable file with the same one-line :func:`read_error`. The conversions are listed in
:mod:`swapbench.data.folder`'s docstring.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from swapbench.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_SIDE = 8  # an image whose shorter side is under this many pixels is unusable


def over_white(im: Image.Image) -> Image.Image:
    """An image with transparency composited over white, as RGB."""
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """An opened image as uint8 RGB (H, W, 3), after the conversions of swapbench.data.folder's docstring."""
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        gray = np.asarray(im).astype(np.float64)
        gray = np.clip(gray, 0, 65535) / 257.0
    elif mode == "F":
        gray = np.clip(np.asarray(im).astype(np.float64), 0, 255)
    else:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
            rgb = over_white(im)
        else:
            rgb = im if mode == "RGB" else im.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8).copy()
    gray = np.rint(gray).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def load_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` fully into uint8 RGB (H, W, 3). Raises whatever PIL raises for a bad file."""
    with Image.open(path) as im:
        im.load()
        return to_rgb_array(im)


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines included) as one space."""
    return re.sub(r"\s+", " ", text).strip()


def read_error(exc: BaseException) -> str:
    """Why a file could not be decoded, in a few words for a one-line message."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file PIL can read"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels ({one_line(str(exc))})"
    if isinstance(exc, FileNotFoundError):
        return "file not found (a broken link?)"
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB (H, W, 3) of one file, or a one-line error naming it."""
    if not path.is_file():
        raise UserError(f"image file {path} does not exist; check the path")
    try:
        return load_rgb(path)
    except Exception as exc:  # any decoding failure is the input's problem
        raise UserError(f"cannot read image file {path} ({read_error(exc)}); replace or remove it") from None


def find_images(root: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``root``, sorted; hidden names are skipped."""
    found = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a link back to a folder already searched
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(EXTENSIONS):
                found.append((rel_dir / name).as_posix())
    return sorted(found)
