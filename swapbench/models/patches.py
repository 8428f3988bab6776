"""Random patch crops for the co-occurrence discriminator, sampled as the authors' training does.

Each crop of an image has its own width and its own height, each drawn uniformly in
[size_min, size_max] x the image side, a centre drawn so the crop stays inside the image, and a
left-right flip with probability 1/2. Every crop is resampled (bilinear) onto an ``out_size`` x
``out_size`` grid whose outer sample points lie on the crop's edges (the grid spans the crop edge to
edge), with zeros outside the image, as ``grid_sample`` does with ``align_corners=False``.

All crops of a batch come from one ``grid_sample`` call over an (n * out_size) x out_size grid per
image, so images are never copied per crop and no Python loop runs per sample. The draws come from
the ``generator`` passed in (the trainer's crop generator, part of its checkpointed state).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropBoxes:
    """Crop geometry in normalised image coordinates ([-1, 1] spans the image), each (B, n).

    ``width``/``height`` are fractions of the image side; ``cx``/``cy`` the crop centres; ``flip``
    is -1 for a mirrored crop and +1 otherwise."""

    width: torch.Tensor
    height: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    flip: torch.Tensor


def draw_boxes(batch: int, n: int, size_min: float, size_max: float, *, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> CropBoxes:
    """``n`` crop boxes for each of ``batch`` images: width and height drawn separately."""
    u = torch.rand(batch, n, 5, device=device, generator=generator)
    width = size_min + (size_max - size_min) * u[..., 0]
    height = size_min + (size_max - size_min) * u[..., 1]
    cx = (2 * u[..., 2] - 1) * (1 - width)
    cy = (2 * u[..., 3] - 1) * (1 - height)
    flip = torch.where(u[..., 4] < 0.5, -1.0, 1.0)
    return CropBoxes(width, height, cx, cy, flip)


def crop_boxes(images: torch.Tensor, boxes: CropBoxes, out_size: int) -> torch.Tensor:
    """The crops ``boxes`` describes, resized to ``out_size``: (B, n, C, out_size, out_size).
    Differentiable with respect to ``images``."""
    b, c = images.shape[:2]
    n = boxes.width.shape[1]
    unit = torch.linspace(-1.0, 1.0, out_size, device=images.device)  # edge to edge of the crop
    gx = boxes.cx[..., None] + (boxes.flip * boxes.width)[..., None] * unit  # (B, n, p): x per column
    gy = boxes.cy[..., None] + boxes.height[..., None] * unit  # (B, n, p): y per row
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), dim=-1)  # (B, n, p, p, 2)
    grid = grid.reshape(b, n * out_size, out_size, 2).to(images.dtype)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(b, c, n, out_size, out_size).transpose(1, 2)


def random_crops(images: torch.Tensor, n: int, size_min: float, size_max: float, out_size: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random crops per image (see the module docstring): (B, n, C, out_size, out_size)."""
    boxes = draw_boxes(images.shape[0], n, size_min, size_max, device=images.device, generator=generator)
    return crop_boxes(images, boxes, out_size)
