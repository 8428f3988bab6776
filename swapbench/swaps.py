"""Ways of swapping: structure image A and texture image B in, one image out, one interface for every method.

A method is a class in the ``swap_method`` registry (:data:`swapbench.registry.SWAPS`)::

    needs: str | None             # the model family of the trained run it uses (swap_ae, stylegan2), or None
    iterative: bool               # an optimisation per swap (its seconds are the optimiser's), or one pass
    __init__(model, settings, device)   # settings: an instance of its settings class (see swap_settings)
    swap(structure, texture) -> images  # (N, 3, H, W) in [-1, 1] each, same sizes; the result on the CPU

The Swapping Autoencoder (``sae``: G(s(A), t(B)), one encoder and one decoder pass) is registered
here; the methods the paper compared it to (Gatys et al.'s and Kolkin et al.'s style transfer,
StyleGAN2 style mixing after W+ inversion) live in ``baselines`` and register themselves as a
swapbench plugin. ``swapbench swaps`` scores them all on the same pairs.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from swapbench.errors import UserError
from swapbench.registry import SECTIONS, SWAPS


def check_pair(structure: torch.Tensor, texture: torch.Tensor) -> None:
    """Both batches (N, 3, H, W), of the same shape: every method swaps pixel-aligned images."""
    if structure.dim() != 4 or structure.shape[1] != 3:
        raise UserError(f"a structure image batch must be (N, 3, H, W), got {tuple(structure.shape)}")
    if structure.shape != texture.shape:
        raise UserError(f"the structure images are {tuple(structure.shape[-2:])} px and the texture images "
                        f"{tuple(texture.shape[-2:])} px (batches {structure.shape[0]} and {texture.shape[0]}); "
                        "resize them to one size first")


def settings_of(name: str) -> tuple[str | None, type[BaseModel] | None]:
    """(key, class) of the settings method ``name`` reads: the class it registered as ``options`` under
    ``options_key`` (tool settings, set with ``--set KEY.FIELD=VALUE``, not part of training recipes, so
    recipe hashes do not move), or the recipe section it reads (``sg2_mix``: ``inversion``); (None, None)
    for a method without settings."""
    entry = SWAPS.entry(name)
    if "options" in entry.info:
        return entry.info["options_key"], entry.info["options"]
    if entry.section is not None:
        return entry.section, SECTIONS[entry.section].settings
    return None, None


def swap_settings(name: str, overrides: dict[str, Any] | None = None) -> Any:
    """The settings object method ``name`` reads, at its defaults with ``overrides`` (keys without the
    settings key's prefix); None for a method without settings."""
    key, cls = settings_of(name)
    if cls is None:
        if overrides:
            raise UserError(f"swap method '{name}' has no settings; drop {', '.join(overrides)}")
        return None
    unknown = sorted(set(overrides or {}) - set(cls.model_fields))
    if unknown:
        from swapbench.errors import did_you_mean

        raise UserError(f"unknown setting '{key}.{unknown[0]}'{did_you_mean(unknown[0], list(cls.model_fields))}"
                        f"; settings of {name}: {', '.join(cls.model_fields)}")
    from pydantic import ValidationError

    try:
        return cls(**(overrides or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"{key}.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@SWAPS.register("sae", description="The Swapping Autoencoder: G(s(A), t(B)), one encoder pass of each image and one "
                                   "decoder pass (a trained run, zoo model or converted checkpoint of the authors').")
class AutoencoderSwap:
    needs = "swap_ae"
    iterative = False

    def __init__(self, model: nn.Module, settings: Any = None, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def swap(self, structure: torch.Tensor, texture: torch.Tensor) -> torch.Tensor:
        check_pair(structure, texture)
        return self.model.swap(structure.to(self.device), texture.to(self.device)).float().cpu()
