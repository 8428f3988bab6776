"""The Swapping Autoencoder behind one encode/decode interface, used by the trainer, the evaluator
and the editing operations alike."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Codes(NamedTuple):
    structure: torch.Tensor  # (N, structure_channels, H / structure_downsample, W / structure_downsample)
    texture: torch.Tensor  # (N, texture_dim)


class SwappingAutoencoder(nn.Module):
    """E splits an image into (structure, texture); G maps any (structure, texture) pair to an image."""

    def __init__(self, encoder: nn.Module, generator: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.generator = generator

    def encode(self, images: torch.Tensor) -> Codes:
        structure, texture = self.encoder(images)
        return Codes(structure, texture)

    def decode(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        return self.generator(structure, texture)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(images))

    def swap(self, structure_images: torch.Tensor, texture_images: torch.Tensor) -> torch.Tensor:
        """G(s(A), t(B)): the layout of each A rendered with the texture of the matching B."""
        return self.decode(self.encode(structure_images).structure, self.encode(texture_images).texture)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(images)
