"""Recipe -> networks. Registered constructors receive the settings their signature asks for: the sizes
that several networks share (:func:`model_settings`) and the fields of the recipe section their component
declares when it registers (encoder 'swap_ae': ``encoder``, generator 'swap_ae': ``generator``, ...).

A model family's scored network (what evaluation, publishing and :func:`load_model` build) comes from the
``model`` registry (:data:`swapbench.registry.MODELS`); the Swapping Autoencoder's is registered here, the
StyleGAN2 baselines' in baselines/. None of this imports the training loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from swapbench.checkpoint import load_checkpoint
from swapbench.errors import UserError
from swapbench.models.swap_ae import SwappingAutoencoder
from swapbench.recipe import Recipe
from swapbench.registry import DISCRIMINATORS, ENCODERS, GENERATORS, MODELS

# the model.* settings that are sizes every network may read (the rest of model.* names the components)
SHARED_SIZES = ("channels", "max_channels", "structure_channels", "structure_downsample", "texture_dim", "widths",
                "resample")


def model_settings(recipe: Recipe) -> dict[str, Any]:
    """The shared sizes: the image side (``resolution``, from data.resolution) and :data:`SHARED_SIZES`."""
    return {"resolution": recipe.data.resolution, **recipe.model.model_dump(include=set(SHARED_SIZES))}


@MODELS.register("swap_ae", checkpoint_key="autoencoder",
                 description="The Swapping Autoencoder: encoder (structure code, texture vector) and generator.")
def build_autoencoder(recipe: Recipe) -> SwappingAutoencoder:
    settings = model_settings(recipe)
    encoder = ENCODERS.build_from(recipe.model.encoder, settings, recipe.sections())
    generator = GENERATORS.build_from(recipe.model.generator, settings, recipe.sections())
    return SwappingAutoencoder(encoder, generator)


def build_discriminator(recipe: Recipe) -> nn.Module:
    return DISCRIMINATORS.build_from(recipe.model.discriminator, model_settings(recipe), recipe.sections())


def build_cooccur_discriminator(recipe: Recipe) -> nn.Module | None:
    name = recipe.model.cooccur_discriminator
    if name is None:
        return None
    # it works at the patch side: its own section (``cooccur``) holds its sizes, and of the shared ones it
    # reads the width rule and resampling, and model.max_channels as the cap of its uniform widths
    shared = model_settings(recipe)
    settings = {"widths": shared["widths"], "resample": shared["resample"], "model_max_channels": shared["max_channels"]}
    return DISCRIMINATORS.build_from(name, settings, recipe.sections())


# Settings that issue 13 added to model.*: a stored recipe without them was written before the networks
# became the authors' architecture. Families whose networks did not change read such a recipe with the
# values that rebuild their old networks; a Swapping Autoencoder checkpoint of that time is refused. (Such
# a recipe has the layout of its time: model.discriminator_mbstd becomes discriminator.mbstd when it
# is validated, as every key of RENAMED_KEYS.)
PARITY_MARKER = "widths"
PRE_PARITY_VALUES = {"widths": "uniform", "resample": "average", "discriminator_mbstd": 4}


def recipe_of_checkpoint(meta: Mapping[str, Any], path) -> Recipe:
    """The recipe stored in a checkpoint's metadata, refusing Swapping Autoencoder checkpoints whose
    networks predate the paper-parity architecture (they cannot be loaded into today's networks)."""
    stored = dict(meta["recipe"])
    model = dict(stored.get("model", {}))
    if PARITY_MARKER not in model:
        if model.get("family", "swap_ae") == "swap_ae":
            raise UserError(
                f"checkpoint {path} predates swapbench's paper-parity networks (the encoder, generator and "
                f"discriminators changed to the authors' architecture) and cannot be loaded into them; retrain "
                f"its recipe with this version, or use a swapbench release from before that change to score it"
            )
        stored["model"] = {**model, **PRE_PARITY_VALUES}
    return Recipe.model_validate(stored)


def load_model(path, prefer_ema: bool = True, map_location: str = "cpu") -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """(scored network in eval mode, its recipe, checkpoint metadata) from a swapbench checkpoint of
    any model family: the autoencoder of a swap_ae run, the generator of a stylegan2 run, ...

    The EMA weights are used when the checkpoint has them and ``prefer_ema`` is set.
    """
    state, meta = load_checkpoint(path, map_location=map_location)
    recipe = recipe_of_checkpoint(meta, path)
    model = MODELS.get(recipe.model.family)(recipe)
    key = "ema" if prefer_ema and "ema" in state else MODELS.checkpoint_key(recipe.model.family)
    if key not in state:
        raise UserError(f"checkpoint {path} has no '{key}' network for a '{recipe.model.family}' model; it was not "
                        "written by that family's trainer, pass a checkpoint a swapbench run wrote")
    try:
        model.load_state_dict(state[key])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"checkpoint {path} does not fit the architecture its recipe describes "
                        f"({first[-1].strip()[:160] if first else 'shape mismatch'}); the file was changed or written "
                        "by another swapbench version, use the checkpoint its run wrote") from None
    meta = {**meta, "weights": key}
    return model.eval(), recipe, meta


def load_autoencoder(path, prefer_ema: bool = True, map_location: str = "cpu") -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Like :func:`load_model`, for a model that encodes and swaps (a user error otherwise)."""
    model, recipe, meta = load_model(path, prefer_ema, map_location)
    if not (hasattr(model, "reconstruct") and hasattr(model, "swap")):
        raise UserError(f"{path} holds a '{recipe.model.family}' model, which cannot reconstruct or swap images; "
                        "pass a swap_ae (or sg2_encoder) run")
    return model, recipe, meta
