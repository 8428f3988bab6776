"""Image manipulation with a trained Swapping Autoencoder: what the paper's users do with the model.

Every edit is encode -> change the codes -> decode, through ``SwappingAutoencoder.encode`` and
``decode``; nothing here touches the networks' insides.

- :func:`swap_texture`: the structure of A with a texture interpolated from A's own toward B's
  (``alpha`` 0 reconstructs A, 1 is the full swap G(s(A), t(B))).
- :func:`interpolate`: from A to B in the structure code, the texture code, or both.
- :func:`paste_structure`: a region edit. Inside a mask the structure code of ``source`` replaces
  that of ``target``; the texture stays the target's. The structure code is spatial, so the edit
  stays local.
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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

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


@torch.no_grad()
def encode(model: SwappingAutoencoder, images: torch.Tensor, batch_size: int = 64) -> Codes:
    """The codes of ``images``, encoded ``batch_size`` at a time (for sets larger than one batch)."""
    device = _device(model)
    parts = [model.encode(images[i : i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
    return Codes(torch.cat([p.structure for p in parts]), torch.cat([p.texture for p in parts]))


@torch.no_grad()
def _decode(model: SwappingAutoencoder, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
    return model.decode(structure, texture).float().cpu()


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape[0] != b.shape[0] and b.shape[0] != 1:
        raise UserError(f"{what}: {a.shape[0]} images against {b.shape[0]}; give as many, or one to use for all")


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
    _check_pair(structure_images, texture_images, "swap_texture")
    a = encode(model, structure_images)
    b = encode(model, texture_images)
    return _decode(model, a.structure, torch.lerp(a.texture, b.texture.expand_as(a.texture), alpha))


@torch.no_grad()
def interpolate(model: SwappingAutoencoder, a: torch.Tensor, b: torch.Tensor, alphas: Sequence[float],
                part: str = "both") -> torch.Tensor:
    """(len(alphas), N, 3, H, W): A's codes moved toward B's by each alpha, in the structure code,
    the texture code, or both (``part``). alpha 0 reconstructs A; alpha 1 with ``both`` reconstructs
    B, with ``structure`` is G(s(B), t(A)), with ``texture`` G(s(A), t(B))."""
    if part not in PARTS:
        raise UserError(f"part '{part}' is not one of {', '.join(PARTS)}")
    _check_pair(a, b, "interpolate")
    ca, cb = encode(model, a), encode(model, b)
    sb, tb = cb.structure.expand_as(ca.structure), cb.texture.expand_as(ca.texture)
    frames = []
    for alpha in alphas:
        s = torch.lerp(ca.structure, sb, alpha) if part in ("both", "structure") else ca.structure
        t = torch.lerp(ca.texture, tb, alpha) if part in ("both", "texture") else ca.texture
        frames.append(_decode(model, s, t))
    return torch.stack(frames)


@torch.no_grad()
def paste_structure(model: SwappingAutoencoder, target: torch.Tensor, source: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """Region edit: inside ``mask`` (N or 1, 1, H, W) in [0, 1], at image resolution, the structure
    code of ``source`` replaces that of ``target`` (soft at the mask's edges, after area-downsampling
    it to the code's grid); the texture code stays the target's."""
    _check_pair(target, source, "paste_structure")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != target.shape[-2:]:
        raise UserError(f"the mask must be (N, 1, {target.shape[-2]}, {target.shape[-1]}) like the images; "
                        f"got {tuple(mask.shape)}")
    ct, cs = encode(model, target), encode(model, source)
    weight = F.interpolate(mask.float().clamp(0, 1).to(ct.structure.device), size=ct.structure.shape[-2:],
                           mode="area")
    return _decode(model, torch.lerp(ct.structure, cs.structure.expand_as(ct.structure), weight), ct.texture)


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
    for group, name in ((with_attribute, "with"), (without_attribute, "without")):
        if group.shape[0] < 1:
            raise UserError(f"attribute_direction needs at least one image {name} the attribute")
    return (encode(model, with_attribute).texture.mean(0) - encode(model, without_attribute).texture.mean(0)).cpu()


@torch.no_grad()
def edit_texture(model: SwappingAutoencoder, images: torch.Tensor, direction: torch.Tensor,
                 strengths: Sequence[float]) -> torch.Tensor:
    """(len(strengths), N, 3, H, W): G(s(x), t(x) + strength * direction) for each strength."""
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
    if domain_images.shape[0] < 1:
        raise UserError("translate_domain needs at least one image of the target domain")
    codes = encode(model, images)
    mean = encode(model, domain_images).texture.mean(0, keepdim=True)
    return _decode(model, codes.structure, mean.expand_as(codes.texture))


# ---------------------------------------------------------------------------------------------
# Image files and masks at a model's resolution
# ---------------------------------------------------------------------------------------------

def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """(1, 3, R, R) in [-1, 1]: the file's centred square crop, resized (bilinear, antialiased) as
    the datasets resize; a missing or unreadable file is a one-line error naming it."""
    from swapbench.data.photos import crop_resize
    from swapbench.metrics.standalone import read_image

    photo = torch.from_numpy(read_image(Path(path))).permute(2, 0, 1)
    h, w = photo.shape[1:]
    side = min(h, w)
    return crop_resize(photo, (h - side) // 2, (w - side) // 2, side, resolution, flip=False).unsqueeze(0)


def load_images(paths: Sequence[str | Path], resolution: int) -> torch.Tensor:
    """Every file of ``paths`` (files, or folders of images) as one (N, 3, R, R) batch."""
    from swapbench.data.folder import EXTENSIONS, find_images

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
    return torch.cat([load_image(f, resolution) for f in files])


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
    """(1, 1, R, R) in [0, 1] from an image file (white = edit, black = keep), cropped and resized
    as :func:`load_image` does."""
    gray = (load_image(path, resolution).mean(1, keepdim=True) + 1) / 2
    if gray.max() < 0.5:
        raise UserError(f"mask {path} has no white area (nothing to edit); white marks the region to change")
    return gray
