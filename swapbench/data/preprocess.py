"""The authors' preprocessing of training images (``data.preprocess``), for datasets of image files.

A mode names a scaling, a crop, or both, in this order, as the authors' data pipeline applies them
(names as theirs):

- scaling, with PIL's bicubic filter, to ``load_size`` (``data.load_size``; null means
  ``data.resolution``): ``resize`` makes the image load_size x load_size; ``scale_width`` makes its
  width load_size (height int(load_size * h / w); an image already load_size wide and at least the
  crop size tall is kept); ``scale_shortside`` makes its shorter side load_size (both sides rounded).
- ``crop`` (alone, or ``..._and_crop``): a square of ``data.resolution`` px at a uniformly random
  position of the scaled image; the test split takes the centred square instead.
  ``..._and_centercrop``: the largest centred square, in both splits (with ``scale_shortside`` this
  is how StyleGAN2's dataset tool prepares LSUN, which uses a Lanczos filter where this uses bicubic).
- then a left-right flip with probability 1/2 when ``data.hflip`` (training split only), and the
  mapping of 0..255 to [-1, 1].

A mode without a crop must produce data.resolution x data.resolution images (the recipe checks
load_size; an image of another aspect ratio under ``scale_width``/``scale_shortside`` is a user error
naming it). The authors also round every side to a multiple of 16 afterwards; a square of a power of
two >= 16 px, which is all swapbench trains on, is left unchanged by that.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from swapbench.errors import UserError

MODES = ("resize", "resize_and_crop", "scale_width", "scale_width_and_crop", "scale_shortside",
         "scale_shortside_and_crop", "scale_shortside_and_centercrop", "crop")


def random_crop(mode: str) -> bool:
    """Whether ``mode`` places its training crop at random."""
    return mode.endswith("crop") and not mode.endswith("centercrop")


def scaled_size(width: int, height: int, mode: str, load_size: int, crop_size: int) -> tuple[int, int]:
    """(width, height) after the scaling part of ``mode`` (unchanged when it has none)."""
    if mode.startswith("resize"):
        return load_size, load_size
    if mode.startswith("scale_width"):
        if width == load_size and height >= crop_size:
            return width, height
        return load_size, int(load_size * height / width)
    if mode.startswith("scale_shortside"):
        factor = load_size / min(width, height)
        return round(width * factor), round(height * factor)
    return width, height


def preprocess(image: np.ndarray, mode: str, load_size: int, crop_size: int, *, train: bool, hflip: bool,
               uniforms: list[float], name: str = "image") -> torch.Tensor:
    """``image`` (H, W, 3) uint8 RGB -> (3, crop_size, crop_size) float in [-1, 1].

    ``uniforms``: three numbers in [0, 1) that place the crop (top, left) and decide the flip, drawn
    by the dataset from its per-item generator so an item is the same on any machine and worker."""
    if mode not in MODES:
        raise UserError(f"data.preprocess '{mode}' is not one of the authors' modes: {', '.join(MODES)}")
    h, w = image.shape[:2]
    new_w, new_h = scaled_size(w, h, mode, load_size, crop_size)
    pil = Image.fromarray(image)
    if (new_w, new_h) != (w, h):
        pil = pil.resize((new_w, new_h), Image.BICUBIC)
    if mode.endswith("centercrop"):  # the largest centred square, in training too
        side = min(new_w, new_h)
        left, top = (new_w - side) // 2, (new_h - side) // 2
        pil = pil.crop((left, top, left + side, top + side))
        new_w = new_h = side
    if random_crop(mode):
        if new_w < crop_size or new_h < crop_size:
            raise UserError(
                f"{name} is {new_w}x{new_h} px after data.preprocess={mode} (load_size {load_size}), smaller than the "
                f"{crop_size} px crop; raise data.load_size or remove the image"
            )
        if train:
            top = int(uniforms[0] * (new_h - crop_size + 1))
            left = int(uniforms[1] * (new_w - crop_size + 1))
        else:
            top, left = int(round((new_h - crop_size) / 2)), int(round((new_w - crop_size) / 2))
        pil = pil.crop((left, top, left + crop_size, top + crop_size))
    elif (new_w, new_h) != (crop_size, crop_size):
        raise UserError(
            f"{name} is {new_w}x{new_h} px after data.preprocess={mode}, not the {crop_size}x{crop_size} the recipe "
            f"trains on; use {mode.removesuffix('_and_crop')}_and_crop or resize"
        )
    out = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 127.5 - 1
    if train and hflip and uniforms[2] < 0.5:
        out = out.flip(-1)
    return out
