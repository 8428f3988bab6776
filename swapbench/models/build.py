"""Recipe -> networks. Registered constructors receive the settings their signature asks for."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from swapbench.checkpoint import load_checkpoint
from swapbench.errors import UserError
from swapbench.models.swap_ae import SwappingAutoencoder
from swapbench.recipe import Recipe
from swapbench.registry import DISCRIMINATORS, ENCODERS, GENERATORS, Registry


def build_from(registry: Registry, name: str, available: Mapping[str, Any]) -> Any:
    """Call the entry ``name`` with the settings in ``available`` that its signature accepts.

    A constructor that takes ``**kwargs`` receives everything. A required parameter that no setting
    provides is a user error naming it.
    """
    factory = registry.get(name)
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory(**available)
    kwargs = {k: v for k, v in available.items() if k in params}
    missing = [
        k for k, p in params.items()
        if p.default is inspect.Parameter.empty and k not in kwargs
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if missing:
        raise UserError(f"{registry.kind} '{name}' needs settings the recipe does not provide: {', '.join(missing)}")
    return factory(**kwargs)


def model_settings(recipe: Recipe) -> dict[str, Any]:
    m = recipe.model
    return {
        "resolution": recipe.data.resolution,
        "channels": m.channels,
        "max_channels": m.max_channels,
        "structure_channels": m.structure_channels,
        "structure_downsample": m.structure_downsample,
        "texture_dim": m.texture_dim,
        "generator_blocks": m.generator_blocks,
        "backbone": m.backbone,
        "backbone_weights": m.backbone_weights,
    }


def build_autoencoder(recipe: Recipe) -> SwappingAutoencoder:
    settings = model_settings(recipe)
    encoder = build_from(ENCODERS, recipe.model.encoder, settings)
    generator = build_from(GENERATORS, recipe.model.generator, settings)
    return SwappingAutoencoder(encoder, generator)


def build_discriminator(recipe: Recipe) -> nn.Module:
    return build_from(DISCRIMINATORS, recipe.model.discriminator, model_settings(recipe))


def build_cooccur_discriminator(recipe: Recipe) -> nn.Module | None:
    name = recipe.model.cooccur_discriminator
    if name is None:
        return None
    co = recipe.cooccur
    settings = {"patch_size": co.patch_size, "channels": co.channels, "max_channels": recipe.model.max_channels}
    return build_from(DISCRIMINATORS, name, settings)


def load_autoencoder(path, prefer_ema: bool = True, map_location: str = "cpu") -> tuple[SwappingAutoencoder, Recipe, dict[str, Any]]:
    """(model in eval mode, its recipe, checkpoint metadata) from a swapbench checkpoint.

    The EMA weights are used when the checkpoint has them and ``prefer_ema`` is set.
    """
    state, meta = load_checkpoint(path, map_location=map_location)
    recipe = Recipe.model_validate(meta["recipe"])
    model = build_autoencoder(recipe)
    key = "ema" if prefer_ema and "ema" in state else "autoencoder"
    model.load_state_dict(state[key])
    meta = {**meta, "weights": key}
    return model.eval(), recipe, meta
