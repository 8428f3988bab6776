"""ImageNet VGG-16 features for the optimisation-based style transfers, from the hash-checked VGG-16
backbone that LPIPS was calibrated on (:func:`swapbench.nn.lpips.backbone_state`):
nothing is downloaded, and no torchvision weights are needed.

Layers are named as in the style-transfer papers: ``relu1_1`` ... ``relu5_3`` (the ReLU after each
convolution; Gatys et al.'s "conv4_2" is the rectified response, ``relu4_2`` here). Input: images in
[-1, 1], normalised with ImageNet's mean and std (what LPIPS's scaling layer does to [-1, 1] inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swapbench.nn.lpips import backbone_state

# convolutions per block of VGG-16 (13 in all); a 2x2 pool follows every block but the last
BLOCKS = (2, 2, 3, 3, 3)
LAYERS = tuple(f"relu{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS) for i in range(n))
# ImageNet mean and std mapped to [-1, 1] inputs (LPIPS's ScalingLayer constants)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class VGG16Features(nn.Module):
    """``forward(images, layers)`` -> {layer: (N, C, h, w)}; runs only as deep as the deepest layer asked for.
    ``pool``: 'max' (the trained network) or 'avg' (Gatys et al. 2016 replace max-pooling by average pooling
    for better gradients)."""

    def __init__(self, pool: str = "max"):
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        self.pool = pool
        state = backbone_state("vgg")
        if len(state) != len(LAYERS):
            raise RuntimeError(f"the LPIPS VGG backbone has {len(state)} convolutions, VGG-16 has {len(LAYERS)}")
        self.convs = nn.ModuleList()
        for w, b in state:
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2)
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.copy_(b)
            self.convs.append(conv)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor, layers: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        unknown = [name for name in layers if name not in LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG-16 layer(s) {unknown}; layers are {', '.join(LAYERS)}")
        last = max(LAYERS.index(name) for name in layers)
        x = (images - self.shift) / self.scale
        out, k = {}, 0
        for b, n in enumerate(BLOCKS):
            if b > 0:
                x = F.max_pool2d(x, 2) if self.pool == "max" else F.avg_pool2d(x, 2)
            for _ in range(n):
                x = F.relu(self.convs[k](x))
                if LAYERS[k] in layers:
                    out[LAYERS[k]] = x
                if k == last:
                    return out
                k += 1
        return out
