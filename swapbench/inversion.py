"""Finding the latent code of a given image (GAN inversion): one interface for every method.

A method is a class in the ``inversion`` registry::

    needs: str                 # the model family whose trained run it uses (`--run REF` of that family)
                               # (registered with default=True: compared by `swapbench project` by default;
                               # with bench=False: left out of `swapbench bench`'s default embedding rows)
    steps: int | None          # optimisation steps (None for one forward pass)
    __init__(model, settings, device)  # settings: see inversion_settings()
    invert(images) -> Inversion(latents, reconstructions, seconds, curve)
    swap(latents_a, latents_b) -> images   # A's structure (layout, coarse styles), B's texture (fine styles)

``seconds`` is the wall time of finding the latents alone (encoder passes, or the optimisation loop
with its one-off preparation such as the target's LPIPS features), with CUDA synchronised, excluding
the final decode and any quality checkpoints of ``curve``. The
Swapping Autoencoder's own encoder is registered here as ``sae``; the StyleGAN2 methods live in
``baselines`` and register themselves as a swapbench plugin.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from swapbench.registry import INVERSIONS, settings_sections


@dataclass
class Inversion:
    latents: Any  # whatever the method's swap() takes: codes, w, W+
    reconstructions: torch.Tensor  # (N, 3, H, W) on the CPU
    seconds: float  # time to find the latents
    curve: dict[int, float] = field(default_factory=dict)  # optimisers: mean LPIPS-VGG after k steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """(fn(), wall seconds) with the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def speed_reference() -> str | None:
    """The method whose seconds per image the others are compared with (the ``sae_speedup`` column of
    `swapbench project`): the one registered with ``speed_reference=True``."""
    return next((n for n in INVERSIONS.names() if INVERSIONS.entry(n).info.get("speed_reference")), None)


def default_methods() -> list[str]:
    """The methods `swapbench project` compares when none are named: those registered with ``default=True``."""
    return [n for n in INVERSIONS.names() if INVERSIONS.entry(n).info.get("default")]


def bench_methods() -> list[str]:
    """The methods `swapbench bench` times when ``bench.embed_methods`` is 'all': every registered one but
    those registered with ``bench=False``."""
    return [n for n in INVERSIONS.names() if INVERSIONS.entry(n).info.get("bench", True)]


@INVERSIONS.register("sae", default=True, speed_reference=True,
                     description="The Swapping Autoencoder's encoder: one forward pass gives (structure, texture).")
class SwapAutoencoderEncoding:
    needs = "swap_ae"
    steps = None

    def __init__(self, model: nn.Module, settings: Any = None, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def invert(self, images: torch.Tensor) -> Inversion:
        x = images.to(self.device)
        codes, seconds = timed(lambda: self.model.encode(x), self.device)
        return Inversion(codes, self.model.decode(*codes).float().cpu(), seconds)

    @torch.no_grad()
    def swap(self, latents_a: Any, latents_b: Any) -> torch.Tensor:
        return self.model.decode(latents_a.structure, latents_b.texture).float().cpu()


def inversion_settings(**values: Any) -> Any:
    """Settings of the inversion methods: the ``inversion`` recipe section that registered methods declare
    (baselines/' optimisers), at its defaults with ``values`` set; None when no method declares one."""
    declared = settings_sections().get("inversion")
    return declared.settings(**values) if declared is not None else None


def image_key(image: torch.Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class InvertedImages(nn.Module):
    """Stands in for an autoencoder in the evaluator: ``reconstruct`` and ``swap`` of images that a
    method has already inverted, looked up by content, so every score runs on the same code path as
    for a trained Swapping Autoencoder."""

    def __init__(self, method: Any, images: torch.Tensor, latents: list[Any], reconstructions: torch.Tensor):
        super().__init__()
        self.method = method
        self.index = {image_key(img): i for i, img in enumerate(images)}
        self.latents = latents
        self.recons = reconstructions
        self._anchor = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the module a device

    def _rows(self, images: torch.Tensor) -> list[int]:
        try:
            return [self.index[image_key(img)] for img in images]
        except KeyError:
            raise ValueError("an image that was not inverted was passed to an InvertedImages model") from None

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.recons[self._rows(images)].to(images.device)

    def swap(self, structure_images: torch.Tensor, texture_images: torch.Tensor) -> torch.Tensor:
        pairs = zip(self._rows(structure_images), self._rows(texture_images))
        return torch.cat([self.method.swap(self.latents[a], self.latents[b]) for a, b in pairs]).to(structure_images.device)
