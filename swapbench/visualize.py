"""Images a person looks at: the swap grid, and labelled columns of images (figures, reconstruction strips)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from swapbench.models.swap_ae import SwappingAutoencoder


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> [0, 255] uint8, same shape."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


GRID_MIN_CELL = 64  # px on screen of a swap grid's cell: a 32 px model's grid is drawn at 2x


@torch.no_grad()
def swap_grid(model: SwappingAutoencoder, structure_images: torch.Tensor, texture_images: torch.Tensor,
              min_cell: int = GRID_MIN_CELL) -> np.ndarray:
    """The paper's swap grid as HWC uint8: the top row holds the texture sources B_j, the left column
    the structure sources A_i, and cell (i, j) the swap G(s(A_i), t(B_j)): every cell of row i should
    keep A_i's layout and every cell of column j take B_j's texture. Images smaller than ``min_cell`` are
    enlarged by a whole factor, nearest neighbour (each pixel becomes a square block; nothing is
    smoothed or invented), so every cell is at least ``min_cell`` px."""
    device = next(model.parameters()).device
    a, b = structure_images.to(device), texture_images.to(device)
    n_a, n_b = a.shape[0], b.shape[0]
    s = model.encode(a).structure
    t = model.encode(b).texture
    cells = model.decode(s.repeat_interleave(n_b, 0), t.repeat(n_a, *[1] * (t.ndim - 1)))  # row i, column j
    blank = torch.full_like(a[:1], 1.0)
    rows = [torch.cat([blank, b])]
    for i in range(n_a):
        rows.append(torch.cat([a[i : i + 1], cells[i * n_b : (i + 1) * n_b]]))
    tiles = to_uint8(torch.cat(rows)).cpu()
    factor = -(-min_cell // tiles.shape[-1])  # ceil: the smallest whole factor that reaches min_cell
    if factor > 1:
        tiles = tiles.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    grid = make_grid(tiles, nrow=n_b + 1, padding=2, pad_value=255)
    return grid.permute(1, 2, 0).numpy()


def labelled_columns(columns: list[torch.Tensor], labels: list[str], cell: int = 128, pad: int = 4) -> Image.Image:
    """A sheet with one column per (N, 3, H, W) image batch in [-1, 1], row i holding image i of every
    column (as many rows as the shortest column has images), each tile resized to ``cell`` px
    (nearest) and each column named by its label on top."""
    if len(columns) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(columns)} columns")
    n_rows = min(c.shape[0] for c in columns)
    header = max(18, cell // 5)
    sheet = Image.new("RGB", (pad + len(columns) * (cell + pad), header + pad + n_rows * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(10, cell // 8))
    for j, (col, text) in enumerate(zip(columns, labels)):
        x0 = pad + j * (cell + pad)
        box = draw.textbbox((0, 0), text, font=font)
        draw.text((x0 + max(0, (cell - (box[2] - box[0])) // 2), (header - (box[3] - box[1])) // 2 - box[1]),
                  text, fill="black", font=font)
        tiles = to_uint8(col[:n_rows]).permute(0, 2, 3, 1).cpu().numpy()
        for i in range(n_rows):
            tile = Image.fromarray(tiles[i]).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (x0, header + pad + i * (cell + pad)))
    return sheet
