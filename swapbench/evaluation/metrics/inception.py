"""The TF FID Inception (2015-12-05) that clean-fid and StyleGAN2-ADA use, loaded offline.

The TorchScript file comes from :mod:`swapbench.weights` (hash-checked). Its child ``net.layers`` is
the Inception Sequential: conv, conv_1, conv_2, pool0, conv_3, conv_4 (192 channels), pool1,
mixed ... mixed_10, pool2 (2048-d). Input convention (as clean-fid's ``InceptionV3W``): float images
in [0, 255], normalised as (x - 128) / 128 by the caller.

- :meth:`InceptionFeatures.pool`: 2048-d pool features after clean-fid's "clean" resize (PIL bicubic
  to 299x299 on float data), for FID and KID; with ``resize="legacy_pytorch"`` after clean-fid's
  legacy_pytorch resize (torch bilinear, as pytorch-fid), for the authors' protocol score.
- :meth:`InceptionFeatures.conv4`: the 192-channel ``conv_4`` map at the image's own resolution
  (no resize), for SIFID.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import nn

from swapbench.weights import WEIGHT_FILES, resolve

CONV4_LAYERS = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4")


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float (N, 3, H, W) -> uint8 (N, H, W, 3), rounded as when saving a PNG."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


RESIZE_MODES = ("clean", "legacy_pytorch")


@functools.lru_cache(maxsize=None)
def _resizer(mode: str):
    from cleanfid.resize import build_resizer

    with warnings.catch_warnings():  # its torch resizer would otherwise silence every warning of the process
        return build_resizer(mode)


def clean_resize(images_uint8: list[np.ndarray] | np.ndarray, mode: str = "clean") -> torch.Tensor:
    """clean-fid's resize ("clean" or "legacy_pytorch") of uint8 HWC images: float (N, 3, 299, 299) in [0, 255]."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    fn = _resizer(mode)
    writable = (img if img.flags.writeable else img.copy() for img in images_uint8)  # torch warns on read-only arrays
    out = np.stack([np.asarray(fn(img), dtype=np.float32).reshape(299, 299, 3) for img in writable])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class PoolFeatureExtractor(nn.Module):
    """Resized float images (N, 3, 299, 299) in [0, 255] -> (N, 2048): what clean-fid's
    ``custom_feat_extractor`` receives and must return."""

    def __init__(self, layers: nn.Module):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - 128) / 128).reshape(x.shape[0], 2048)


@functools.lru_cache(maxsize=None)
def _load(device: str) -> nn.Module:
    path, _ = resolve("inception")
    with warnings.catch_warnings():  # torch.jit.load's deprecation note
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    return module.net.layers.eval().to(device)


class InceptionFeatures:
    """Pool and conv_4 features of the hash-checked Inception, in batches, without gradients."""

    sha256 = WEIGHT_FILES["inception"].sha256

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 32):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.layers = _load(str(self.device))
        self.extractor = PoolFeatureExtractor(self.layers)

    def pool(self, images: torch.Tensor, resize: str = "clean") -> np.ndarray:
        """(N, 2048) float64 pool features of [-1, 1] images, through the clean (or legacy_pytorch) resize."""
        return self.pool_uint8(list(to_uint8_hwc(images)), resize)

    @torch.no_grad()
    def pool_uint8(self, images: list[np.ndarray], resize: str = "clean") -> np.ndarray:
        """(N, 2048) float64 pool features of uint8 HWC images of any sizes (as read from files)."""
        out = []
        for i in range(0, len(images), self.batch_size):
            x = clean_resize(images[i : i + self.batch_size], resize).to(self.device)
            out.append(self.extractor(x).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))

    @torch.no_grad()
    def conv4(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 192, h, w) conv_4 maps of [-1, 1] images at their own resolution (uint8-rounded first)."""
        x = torch.from_numpy(to_uint8_hwc(images)).permute(0, 3, 1, 2).float()
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            h = (x[i : i + self.batch_size].to(self.device) - 128) / 128
            for name in CONV4_LAYERS:
                h = getattr(self.layers, name)(h)
            out.append(h.double().cpu())
        return torch.cat(out)


def conv4_samples(resolution: int) -> int:
    """Spatial samples (h * w) of the conv_4 map for a square image of this side."""
    side = (resolution - 3) // 2 + 1  # conv: 3x3 stride 2
    side -= 2  # conv_1: 3x3
    side = (side - 3) // 2 + 1  # conv_2 keeps the size (padding 1); pool0: 3x3 stride 2
    side -= 2  # conv_4: 3x3
    return max(side, 0) ** 2
