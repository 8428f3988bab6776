"""Images a person looks at: the swap grid."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import make_grid

from swapbench.models.swap_ae import SwappingAutoencoder


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> [0, 255] uint8, same shape."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def swap_grid(model: SwappingAutoencoder, structure_images: torch.Tensor, texture_images: torch.Tensor) -> np.ndarray:
    """A (g+1) x (g+1) grid as HWC uint8: the top row holds the texture sources B_j, the left column
    the structure sources A_i, and cell (i, j) the swap G(s(A_i), t(B_j)). The diagonal-free layout
    makes texture transfer readable along rows and structure preservation along columns."""
    device = next(model.parameters()).device
    a, b = structure_images.to(device), texture_images.to(device)
    g = a.shape[0]
    s = model.encode(a).structure
    t = model.encode(b).texture
    cells = model.decode(s.repeat_interleave(g, 0), t.repeat(g, *[1] * (t.ndim - 1)))  # row i, column j
    blank = torch.full_like(a[:1], 1.0)
    rows = [torch.cat([blank, b])]
    for i in range(g):
        rows.append(torch.cat([a[i : i + 1], cells[i * g : (i + 1) * g]]))
    grid = make_grid(to_uint8(torch.cat(rows)).cpu(), nrow=g + 1, padding=2, pad_value=255)
    return grid.permute(1, 2, 0).numpy()
