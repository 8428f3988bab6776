"""The swap grid a run logs is large enough to see: cells of at least 64 px, small images enlarged by a
whole factor with nearest neighbour (each pixel a square block), the model untouched."""

from __future__ import annotations

import pytest
import torch

from swapbench.models.build import build_autoencoder
from swapbench.recipe import load_recipe
from swapbench.visualize import GRID_MIN_CELL, swap_grid, to_uint8


def _grid_side(g: int, cell: int) -> int:
    return (g + 1) * (cell + 2) + 2  # make_grid: 2 px padding around and between cells


@pytest.mark.parametrize("side, cell", [(16, 64), (24, 72), (32, 64), (64, 64)])
def test_cells_are_at_least_64_px_and_whole_multiples(tiny, side, cell):
    from swapbench.recipe import recipe_from_dict

    recipe = recipe_from_dict(tiny.to_dict(), [f"data.resolution={side}", "cooccur.patch_size=8"])
    model = build_autoencoder(recipe).eval()
    images = torch.rand(4, 3, side, side) * 2 - 1
    grid = swap_grid(model, images[:2], images[2:])
    assert grid.shape == (_grid_side(2, cell), _grid_side(2, cell), 3) and cell >= GRID_MIN_CELL
    # the left column's first structure image, enlarged: every source pixel is a block of factor x factor
    k = cell // side
    top_left = cell + 2 + 2  # row 1 (row 0 holds the texture sources), column 0
    block = torch.from_numpy(grid[top_left: top_left + cell, 2: 2 + cell]).permute(2, 0, 1)
    assert torch.equal(block, to_uint8(images[0]).repeat_interleave(k, 1).repeat_interleave(k, 2))


def test_the_quickstart_grid_has_64_px_cells():
    recipe = load_recipe("quickstart")
    model = build_autoencoder(recipe).eval()
    g, side = recipe.eval.grid_size, recipe.data.resolution
    images = torch.rand(2 * g, 3, side, side) * 2 - 1
    grid = swap_grid(model, images[:g], images[g:])
    assert side == 32 and grid.shape[:2] == (_grid_side(g, 64), _grid_side(g, 64))


def test_a_grid_of_two_structures_and_three_textures_holds_every_swap(tiny):
    """Rectangular grids (as `swapbench edit grid` draws them): row i, column j is G(s(A_i), t(B_j))."""
    model = build_autoencoder(tiny).eval()
    side = tiny.data.resolution
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, side, side) * 2 - 1, torch.rand(3, 3, side, side) * 2 - 1
    grid = swap_grid(model, a, b, min_cell=side)
    assert grid.shape == (3 * (side + 2) + 2, 4 * (side + 2) + 2, 3)
    with torch.no_grad():
        want = model.decode(model.encode(a[1:2]).structure, model.encode(b[2:3]).texture)
    row, col = 2, 3  # structure 1 (row 0 holds the textures), texture 2 (column 0 holds the structures)
    cell = grid[2 + row * (side + 2): 2 + row * (side + 2) + side, 2 + col * (side + 2): 2 + col * (side + 2) + side]
    assert torch.equal(torch.from_numpy(cell).permute(2, 0, 1), to_uint8(want[0]))
