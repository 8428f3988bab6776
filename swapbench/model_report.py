"""What a recipe's networks are: parameter count, forward cost and code shapes (`swapbench model`).

The networks are built on PyTorch's meta device, so no weights are drawn and nothing is computed;
``torch.utils.flop_counter.FlopCounterMode`` counts the floating-point operations of each forward
pass from the shapes alone (a multiply-add counts as two).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from swapbench.errors import UserError
from swapbench.recipe import Recipe


def _count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _gflop(fn, *args) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() / 1e9


def network_report(recipe: Recipe) -> dict[str, Any]:
    """Per network: parameters and forward GFLOP per image; the structure and texture code shapes.

    Per image means: encoder and image discriminator on one image of ``data.resolution`` px, the
    generator from that image's codes, the patch discriminator on one image's ``cooccur.n_crops``
    crops (their features and the MLP on each (reference, crop) pair; computing the reference
    features is the same cost per crop again and is not included).
    """
    from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator

    if recipe.model.family != "swap_ae":
        raise UserError(f"recipe {recipe.name} trains model.family '{recipe.model.family}'; `swapbench model` "
                        f"describes Swapping Autoencoder recipes (model.family swap_ae)")
    res = recipe.data.resolution
    with torch.device("meta"):
        autoencoder = build_autoencoder(recipe).eval()
        discriminator = build_discriminator(recipe).eval()
        cooccur = build_cooccur_discriminator(recipe)
        image = torch.zeros(1, 3, res, res)
        with torch.no_grad():
            structure, texture = autoencoder.encode(image)
    rows = {
        "encoder": {"params": _count_params(autoencoder.encoder), "gflop": _gflop(autoencoder.encoder, image)},
        "generator": {"params": _count_params(autoencoder.generator),
                      "gflop": _gflop(autoencoder.generator, structure, texture)},
        "discriminator": {"params": _count_params(discriminator), "gflop": _gflop(discriminator, image)},
    }
    if cooccur is not None:
        cooccur.eval()
        p, n = recipe.cooccur.patch_size, recipe.cooccur.n_crops
        with torch.device("meta"):
            crops = torch.zeros(1, n, 3, p, p)

        def judge(c: torch.Tensor) -> torch.Tensor:
            features = cooccur.extract_features(c)
            return cooccur.discriminate(features, features)

        rows["patch_discriminator"] = {"params": _count_params(cooccur), "gflop": _gflop(judge, crops),
                                       "feature_dim": cooccur.feature_dim}
    return {
        "recipe": recipe.name,
        "resolution": res,
        "networks": rows,
        "structure_code": list(structure.shape[1:]),
        "texture_code": list(texture.shape[1:]),
    }
