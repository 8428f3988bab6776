"""Image manipulation with a trained Swapping Autoencoder: what the paper's users do with the model.

Every edit is encode -> change the codes -> decode, through ``SwappingAutoencoder.encode`` and
``decode``; nothing here touches the networks' insides.

- :func:`swap_texture`: the structure of A with a texture interpolated from A's own toward B's
  (``alpha`` 0 reconstructs A, 1 is the full swap G(s(A), t(B))).
- :func:`interpolate`: from A to B in the structure code, the texture code, or both.
- :func:`paste_structure`: a region edit. Inside a mask the structure code of ``source`` replaces
  that of ``target``; the texture stays the target's. The structure code is spatial, so the edit
  stays local.
- :func:`paste_texture`: the texture counterpart of a region edit. The texture code is one vector
  per image, so it has no place to paste into: inside the mask the image is G(s(target), t(source)),
  outside G(s(target), t(target)), composited in image space with the mask.
- Global edits by texture-code arithmetic: :func:`texture_pca` (principal directions of the texture
  codes of a set of images, in units of their standard deviation), :func:`attribute_direction`
  (mean texture code of images with an attribute minus that of images without), and
  :func:`edit_texture` to move images along a direction.
- :func:`translate_domain`: each image's structure with the mean texture code of a set of images
  from another domain.
- :func:`load_image` and :func:`box_mask` / :func:`load_mask`: image files and masks at a model's
  resolution, with one-line errors for bad input.

Images are float tensors in [-1, 1], shape (N, 3, H, W), on the model's device or any device (they
are moved). Results come back on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from swapbench.data.image_io import EXTENSIONS, MIN_SIDE, find_images, read_error, read_image
from swapbench.errors import UserError
from swapbench.models.swap_ae import Codes, SwappingAutoencoder

PARTS = ("both", "structure", "texture")


def require_autoencoder(model: torch.nn.Module, name: str = "the model") -> SwappingAutoencoder:
    """``model`` if it is a Swapping Autoencoder, else a one-line error (editing needs its two codes)."""
    if not isinstance(model, SwappingAutoencoder):
        raise UserError(f"{name} holds a {type(model).__name__}, not a Swapping Autoencoder; "
                        "editing needs a swap_ae run (its structure and texture codes)")
    return model


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


BATCH = 64  # images encoded or decoded at once


@torch.no_grad()
def encode(model: SwappingAutoencoder, images: torch.Tensor, batch_size: int = BATCH) -> Codes:
    """The codes of ``images``, encoded ``batch_size`` at a time (for sets larger than one batch).
    The model must be a Swapping Autoencoder in eval mode (a model in training mode would make
    every edit depend on what else is in the batch)."""
    require_autoencoder(model)
    if model.training:
        raise UserError("the model is in training mode; call model.eval() before editing "
                        "(load_autoencoder returns it in eval mode)")
    if images.shape[0] < 1:
        raise UserError("no images to encode")
    device = _device(model)
    parts = [model.encode(images[i : i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
    return Codes(torch.cat([p.structure for p in parts]), torch.cat([p.texture for p in parts]))


@torch.no_grad()
def _decode(model: SwappingAutoencoder, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(structure[i : i + BATCH], texture[i : i + BATCH]).float().cpu()
                      for i in range(0, structure.shape[0], BATCH)])


def _pair(a: Codes, b: Codes, roles: tuple[str, str]) -> tuple[Codes, Codes]:
    """Both sides at the same count: one image on either side is used with every image of the other."""
    na, nb = a.texture.shape[0], b.texture.shape[0]
    if na == nb:
        return a, b
    if na == 1 or nb == 1:
        n = max(na, nb)
        grow = lambda c: Codes(*(t.expand(n, *t.shape[1:]) for t in c))  # noqa: E731
        return grow(a), grow(b)
    raise UserError(f"{na} {roles[0]} images against {nb} {roles[1]} images; give as many of each, "
                    f"or a single image on either side")


def _values(values: Sequence[float], what: str) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise UserError(f"no {what} given; give at least one")
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{what} {values} include a non-finite number; give finite numbers")
    return values


@torch.no_grad()
def reconstruct(model: SwappingAutoencoder, images: torch.Tensor) -> torch.Tensor:
    """G(s(x), t(x)): what every edit starts from (the reference column of an edit sheet)."""
    codes = encode(model, images)
    return _decode(model, codes.structure, codes.texture)


@torch.no_grad()
def swap_texture(model: SwappingAutoencoder, structure_images: torch.Tensor, texture_images: torch.Tensor,
                 alpha: float = 1.0) -> torch.Tensor:
    """G(s(A), lerp(t(A), t(B), alpha)): ``alpha`` 1 is the paper's swap, 0 the reconstruction of A,
    values in between blend the textures (the official code's texture_mix_alphas)."""
    a, b = _pair(encode(model, structure_images), encode(model, texture_images), ("structure", "texture"))
    return _decode(model, a.structure, torch.lerp(a.texture, b.texture, _values([alpha], "alpha")[0]))


@torch.no_grad()
def interpolate(model: SwappingAutoencoder, a: torch.Tensor, b: torch.Tensor, alphas: Sequence[float],
                part: str = "both") -> torch.Tensor:
    """(len(alphas), N, 3, H, W): A's codes moved toward B's by each alpha, in the structure code,
    the texture code, or both (``part``). alpha 0 reconstructs A; alpha 1 with ``both`` reconstructs
    B, with ``structure`` is G(s(B), t(A)), with ``texture`` G(s(A), t(B))."""
    if part not in PARTS:
        raise UserError(f"part '{part}' is not one of {', '.join(PARTS)}")
    alphas = _values(alphas, "alphas")
    ca, cb = _pair(encode(model, a), encode(model, b), ("A", "B"))
    frames = []
    for alpha in alphas:
        s = torch.lerp(ca.structure, cb.structure, alpha) if part in ("both", "structure") else ca.structure
        t = torch.lerp(ca.texture, cb.texture, alpha) if part in ("both", "texture") else ca.texture
        frames.append(_decode(model, s, t))
    return torch.stack(frames)


@torch.no_grad()
def paste_structure(model: SwappingAutoencoder, target: torch.Tensor, source: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """Region edit: inside ``mask`` (N or 1, 1, H, W) in [0, 1], at image resolution, the structure
    code of ``source`` replaces that of ``target`` (soft at the mask's edges, after area-downsampling
    it to the code's grid); the texture code stays the target's."""
    ct, cs = _pair(encode(model, target), encode(model, source), ("target", "source"))
    _check_mask(mask, target, ct.texture.shape[0])
    weight = F.interpolate(mask.float().clamp(0, 1).to(ct.structure.device), size=ct.structure.shape[-2:],
                           mode="area")
    return _decode(model, torch.lerp(ct.structure, cs.structure, weight), ct.texture)


@torch.no_grad()
def paste_texture(model: SwappingAutoencoder, target: torch.Tensor, source: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """Region edit of the texture: ``mask`` * G(s(target), t(source)) + (1 - ``mask``) * G(s(target),
    t(target)), mask as in :func:`paste_structure`. The texture code is a single vector per image, so
    the region is applied in image space to two decodes of the target's structure; outside the mask
    the result is the target's reconstruction exactly."""
    ct, cs = _pair(encode(model, target), encode(model, source), ("target", "source"))
    _check_mask(mask, target, ct.texture.shape[0])
    kept = _decode(model, ct.structure, ct.texture)
    swapped = _decode(model, ct.structure, cs.texture)
    weight = mask.float().clamp(0, 1).cpu()
    return torch.where(weight > 0, torch.lerp(kept, swapped, weight), kept)


def _check_mask(mask: torch.Tensor, target: torch.Tensor, n: int) -> None:
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != target.shape[-2:] or mask.shape[0] not in (1, n):
        raise UserError(f"the mask must be (1 or {n}, 1, {target.shape[-2]}, {target.shape[-1]}), one per edited "
                        f"image or one for all, at the images' size; got {tuple(mask.shape)}")


def change_inside_and_outside(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the mean absolute pixel change (on the [-1, 1] scale) inside and outside a region,
    weighted by ``mask`` and ``1 - mask``: how local a region edit stayed (compare the edit with
    the target's reconstruction, not the target, so that reconstruction error does not count)."""
    change = (after - before).abs().mean(1, keepdim=True)
    weight = mask.float().clamp(0, 1).expand_as(change)

    def mean(w: torch.Tensor) -> torch.Tensor:
        return (change * w).sum((1, 2, 3)) / w.sum((1, 2, 3)).clamp_min(1e-12)

    return mean(weight), mean(1 - weight)


@dataclass
class TextureDirections:
    """Principal directions of a set of texture codes: ``directions`` (k, D) orthonormal rows,
    ``std`` (k,) the codes' standard deviation along each, ``mean`` (D,) their mean."""

    mean: torch.Tensor
    directions: torch.Tensor
    std: torch.Tensor

    def direction(self, index: int) -> torch.Tensor:
        """Direction ``index`` scaled to one standard deviation (for :func:`edit_texture`)."""
        return self.directions[index] * self.std[index]


@torch.no_grad()
def texture_pca(model: SwappingAutoencoder, images: torch.Tensor, k: int) -> TextureDirections:
    """The ``k`` principal directions of the texture codes of ``images`` (the paper's global editing
    sliders), from an SVD of the centred codes."""
    textures = encode(model, images).texture.float()
    n, dim = textures.shape
    if not 1 <= k <= min(n - 1, dim):
        raise UserError(f"{k} principal directions asked of {n} texture codes of length {dim}; "
                        f"k must be between 1 and {min(n - 1, dim)} (use more images for more directions)")
    mean = textures.mean(0)
    _, singular, vh = torch.linalg.svd(textures - mean, full_matrices=False)
    return TextureDirections(mean.cpu(), vh[:k].cpu(), (singular[:k] / (n - 1) ** 0.5).cpu())


@torch.no_grad()
def attribute_direction(model: SwappingAutoencoder, with_attribute: torch.Tensor,
                        without_attribute: torch.Tensor) -> torch.Tensor:
    """mean t(with) - mean t(without): adding it to a texture code moves it by the full difference
    between the two groups' means (strength 1 in :func:`edit_texture`)."""
    return (encode(model, with_attribute).texture.mean(0) - encode(model, without_attribute).texture.mean(0)).cpu()


@torch.no_grad()
def edit_texture(model: SwappingAutoencoder, images: torch.Tensor, direction: torch.Tensor,
                 strengths: Sequence[float]) -> torch.Tensor:
    """(len(strengths), N, 3, H, W): G(s(x), t(x) + strength * direction) for each strength."""
    strengths = _values(strengths, "strengths")
    codes = encode(model, images)
    if direction.shape != codes.texture.shape[1:]:
        raise UserError(f"the direction has shape {tuple(direction.shape)}; this model's texture codes "
                        f"are {tuple(codes.texture.shape[1:])}")
    step = direction.to(codes.texture)
    return torch.stack([_decode(model, codes.structure, codes.texture + s * step) for s in strengths])


@torch.no_grad()
def translate_domain(model: SwappingAutoencoder, images: torch.Tensor, domain_images: torch.Tensor) -> torch.Tensor:
    """G(s(x), mean t(domain)): each image's structure rendered with the mean texture of a set of
    images from another domain (the paper's domain translation by a mean texture code)."""
    codes = encode(model, images)
    mean = encode(model, domain_images).texture.mean(0, keepdim=True)
    return _decode(model, codes.structure, mean.expand_as(codes.texture))


# ---------------------------------------------------------------------------------------------
# Image files and masks at a model's resolution
# ---------------------------------------------------------------------------------------------

def _centre_square(pixels: torch.Tensor, resolution: int) -> torch.Tensor:
    """(C, H, W) uint8 -> (1, C, R, R) float in [-1, 1]: the centred square crop, resized (bilinear,
    antialiased) as the datasets resize."""
    from swapbench.data.photos import crop_resize

    h, w = pixels.shape[1:]
    side = min(h, w)
    return crop_resize(pixels, (h - side) // 2, (w - side) // 2, side, resolution, flip=False).unsqueeze(0)


def _check_size(path: Path, h: int, w: int) -> None:
    if min(h, w) < MIN_SIDE:
        raise UserError(f"image file {path} is {w}x{h} px; the shorter side must be at least {MIN_SIDE} px")


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """(1, 3, R, R) in [-1, 1]: the file's centred square crop at the model's resolution (transparent
    pixels over white); a missing, unreadable or tiny file is a one-line error naming it."""
    pixels = torch.from_numpy(read_image(Path(path))).permute(2, 0, 1)
    _check_size(Path(path), *pixels.shape[1:])
    return _centre_square(pixels, resolution)


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The image files ``paths`` name: files as given, folders expanded to their images (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / name for name in find_images(p)]
            if not found:
                raise UserError(f"folder {p} holds no image files ({' '.join(EXTENSIONS)})")
            files.extend(found)
        else:
            files.append(p)
    if not files:
        raise UserError("no images given")
    return files


def load_images(paths: Sequence[str | Path], resolution: int) -> torch.Tensor:
    """Every file of ``paths`` (files, or folders of images; see :func:`image_files`) as one
    (N, 3, R, R) batch."""
    return torch.cat([load_image(f, resolution) for f in image_files(paths)])


def box_mask(box: str, resolution: int) -> torch.Tensor:
    """(1, 1, R, R) mask, 1 inside ``box`` = "left,top,right,bottom" given as fractions of the image
    side in [0, 1] (e.g. "0,0,0.5,1" is the left half), 0 outside."""
    try:
        left, top, right, bottom = (float(v) for v in box.split(","))
    except ValueError:
        raise UserError(f"box '{box}' must be four numbers left,top,right,bottom in [0, 1], e.g. 0,0,0.5,1") from None
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise UserError(f"box '{box}' must have 0 <= left < right <= 1 and 0 <= top < bottom <= 1 "
                        "(fractions of the image side)")
    mask = torch.zeros(1, 1, resolution, resolution)
    mask[..., round(top * resolution) : round(bottom * resolution), round(left * resolution) : round(right * resolution)] = 1
    if mask.sum() == 0:
        raise UserError(f"box '{box}' covers no pixel at {resolution} px; make it larger")
    return mask


def load_mask(path: str | Path, resolution: int) -> torch.Tensor:
    """(1, 1, R, R) in [0, 1] from an image file, cropped and resized as :func:`load_image` does:
    white marks the region to edit, black (or transparent) what to keep. A file with an alpha
    channel counts as painted over black, so white strokes on a transparent layer work too."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise UserError(f"mask file {path} does not exist; check the path")
    try:
        with Image.open(path) as im:
            rgba = np.asarray(im.convert("RGBA"))
    except Exception as exc:  # any decoding failure is the input's problem
        raise UserError(f"cannot read mask file {path} ({read_error(exc)}); replace it") from None
    return mask_from_rgba(rgba, resolution, f"mask {path}")


def mask_from_rgba(rgba: np.ndarray, resolution: int, name: str = "the mask") -> torch.Tensor:
    """(1, 1, R, R) in [0, 1] from uint8 RGBA pixels (H, W, 4), as :func:`load_mask` reads a file: the
    luminance over black, centre-cropped and resized like an image. A mask painted at the model's
    resolution comes back unchanged (as 0..255 / 255)."""
    rgba = np.asarray(rgba, dtype=np.float32)
    if rgba.ndim != 3 or rgba.shape[-1] != 4:
        raise UserError(f"{name} must be RGBA pixels (H, W, 4); got shape {tuple(rgba.shape)}")
    _check_size(Path(name), *rgba.shape[:2])
    gray = rgba[..., :3].mean(-1) * rgba[..., 3] / 255  # luminance over black, 0..255
    pixels = torch.from_numpy(np.rint(gray).astype(np.uint8)).unsqueeze(0)
    if pixels.shape[-2:] == (resolution, resolution):
        mask = pixels.float().unsqueeze(0) / 255
    else:
        mask = (_centre_square(pixels, resolution) + 1) / 2
    if mask.max() < 0.5:
        raise UserError(f"{name} has no white area (nothing to edit); white marks the region to change")
    return mask
