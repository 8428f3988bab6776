"""Width tables of the Swapping Autoencoder's networks.

``paper_*``: the channel counts of the authors' released code (taesungp/swapping-autoencoder-pytorch)
as functions of their capacity options, so a recipe that sets the same options builds networks with
the same parameter counts. ``uniform``: swapbench's single CPU table (``channel_table``).
"""

from __future__ import annotations

import math

from swapbench.nn.layers import channel_table


def paper_encoder_widths(steps: int, capacity: float, texture_dim: int) -> list[int]:
    """Width after 0, 1, ..., ``steps`` halvings: round(2^(5+i) x capacity), capped at the texture size."""
    return [min(texture_dim, int(round(2 ** (5 + i) * capacity))) for i in range(steps + 1)]


def paper_generator_width(halvings_below_image: int, capacity: float) -> int:
    """Generator width ``halvings_below_image`` halvings below the output image: 128 at the image,
    doubling per halving, at most 512, times ``capacity`` (truncated), as the authors' ``nf``."""
    return int(min(512, 128 * 2 ** halvings_below_image) * capacity)


def table_side(resolution: int) -> int:
    """The power of two nearest to ``resolution`` (the authors' discriminator rounds its size so)."""
    return 2 ** int(round(math.log2(resolution)))


def paper_discriminator_widths(resolution: int, capacity: float) -> dict[int, int]:
    """StyleGAN2's discriminator table with channel multiplier 2 x capacity, per power-of-two side."""
    m = 2.0 * capacity
    table = {}
    side = table_side(resolution)
    while side >= 4:
        if side <= 8:
            table[side] = 512
        elif side <= 32:
            table[side] = min(512, int(512 * m))
        else:
            table[side] = int(16384 / side * m)
        side //= 2
    return table


def paper_patch_widths(patch_size: int, capacity: float, max_channels: int) -> dict[int, int]:
    """The authors' patch discriminator table: 1024 x capacity / side, capped at ``max_channels`` at 16 px and below."""
    table, side = {}, patch_size
    while side >= 4:
        width = max(1, int(1024 / side * capacity))
        table[side] = min(max_channels, width) if side <= 16 else width
        side //= 2
    return table


def uniform_widths(resolution: int, channels: int, max_channels: int, min_resolution: int = 1) -> dict[int, int]:
    return channel_table(resolution, channels, max_channels, min_resolution)
