"""Reading the authors' released checkpoints (taesungp/swapping-autoencoder-pytorch) into swapbench.

Their model's ``save`` writes one state dict: ``E.*`` (encoder), ``G.*`` (generator), ``D.*`` (image
discriminator), ``Dpatch.*`` (patch discriminator) and the counter ``num_discriminator_iters``. Every
swapbench parameter has exactly one key there, named by rules that follow their module names (below);
their fixed FIR kernels are buffers with keys of their own, which swapbench rebuilds from the recipe
instead. A key of theirs that no rule names, or a rule's key that the file lacks, is an error naming
the keys; so is a shape that differs other than by size-1 axes (their modulated weights carry a
leading batch axis of 1).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from swapbench.errors import UserError
from swapbench.models.widths import table_side
from swapbench.nn.layers import ConvLayer, ModulatedConv2d
from swapbench.recipe import Recipe

# the recipe settings that must hold for a recipe to build the authors' networks
AUTHORS_ARCHITECTURE = {"model.widths": "paper", "model.resample": "fir", "encoder.padding": "reflect",
                        "generator.noise": True, "generator.rgb_every_scale": False, "generator.fourier": 0,
                        "discriminator.mbstd": 0, "model.encoder": "swap_ae", "model.generator": "swap_ae",
                        "model.discriminator": "stylegan2", "model.cooccur_discriminator": "cooccur"}
COUNTER_KEY = "num_discriminator_iters"

_CONV_PARTS = [(r"\bconv\.weight$", "Conv.weight"), (r"\bconv\.bias$", "Conv.bias"), (r"\bact_bias$", "Act.bias")]
_STYLED_PARTS = [(r"conv\.affine\.", "conv.modulation."), (r"noise_strength$", "noise.weight"),
                 (r"(conv[12])\.bias$", r"\1.activate.bias")]


def _sub_all(name: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        name = re.sub(pattern, repl, name)
    return name


def _conv_layer(rest: str) -> str:
    """Inside one of their ConvLayers (a Sequential of Blur, Conv, Act): ours is conv / act_bias."""
    return _sub_all(rest, _CONV_PARTS)


def _d_block_name(side_log2: int, offset: int) -> str:
    """Their name of the residual block that halves a 2^side_log2 map (StyleGAN2's rosinality names)."""
    return str(offset - side_log2) if side_log2 <= offset - 1 else f"{2 ** side_log2}x{2 ** side_log2}"


def official_key(key: str, recipe: Recipe) -> str:
    """The authors' state-dict key of swapbench parameter ``key`` (prefixed autoencoder./discriminator./cooccur.)."""
    net, _, rest = key.partition(".")
    steps = recipe.model.structure_downsample.bit_length() - 1
    if net == "autoencoder":
        part, _, rest = rest.partition(".")
        if part == "encoder":
            head, _, tail = rest.partition(".")
            if head == "stem":
                return "E.FromRGB." + _conv_layer(tail)
            if head == "trunk":
                i, _, tail = tail.partition(".")
                return f"E.DownToSpatialCode.ResBlockDownBy{2 ** int(i)}." + _conv_layer(tail)
            if head == "structure_head":
                return "E.ToSpatialCode." + _conv_layer(tail)
            if head == "texture_head":
                j, _, tail = tail.partition(".")
                return f"E.DownToGlobalCode.ConvLayerDownBy{2 ** (steps + int(j))}." + _conv_layer(tail)
            if head == "texture_out":
                return "E.ToGlobalCode.0." + tail
        if part == "generator":
            head, _, tail = rest.partition(".")
            if head == "input_modulation":
                return "G.SpatialCodeModulation." + tail
            if head in ("blocks", "up_blocks"):
                i, _, tail = tail.partition(".")
                block = f"HeadResnetBlock{i}" if head == "blocks" else f"UpsamplingResBlock{2 ** (4 + int(i))}"
                tail = _conv_layer(tail) if tail.startswith("skip.") else _sub_all(tail, _STYLED_PARTS)
                return f"G.{block}.{tail}"
            if head == "to_rgb":
                return "G.ToRGB." + tail.replace("conv.affine.", "conv.modulation.")
    if net == "discriminator":
        head, _, tail = rest.partition(".")
        if head == "stem":
            return "D.stylegan2_D.convs.0." + _conv_layer(tail)
        if head == "blocks":
            k, _, tail = tail.partition(".")
            side = table_side(recipe.data.resolution).bit_length() - 1 - int(k)
            return f"D.stylegan2_D.convs.{_d_block_name(side, 9)}." + _conv_layer(tail)
        if head == "final_conv":
            return "D.stylegan2_D.final_conv." + _conv_layer(tail)
        if head == "head":
            k, _, tail = tail.partition(".")
            return f"D.stylegan2_D.final_linear.{int(k) - 1}.{tail}"
    if net == "cooccur":
        head, _, tail = rest.partition(".")
        if head == "encoder":
            k, _, tail = tail.partition(".")
            k, top = int(k), recipe.cooccur.patch_size.bit_length() - 1
            blocks = top - 2
            name = "0" if k == 0 else _d_block_name(top - (k - 1), 7) if k <= blocks else str(4 + k - blocks)
            return f"Dpatch.convs.{name}." + _conv_layer(tail)
        if head == "classifier":
            return "Dpatch.pairlinear." + tail
    raise ValueError(f"no rule names the authors' key of swapbench parameter {key}")


def fixed_buffer_keys(networks: dict[str, nn.Module], recipe: Recipe) -> list[str]:
    """Their keys of fixed FIR kernels (buffers in their modules, constants in ours)."""
    keys = []
    for net_name, net in networks.items():
        for name, module in net.named_modules():
            if isinstance(module, ConvLayer) and module.downsample:
                theirs = official_key(f"{net_name}.{name}.conv.weight", recipe)
                keys.append(theirs.removesuffix("Conv.weight") + "Blur.kernel")
            elif isinstance(module, ModulatedConv2d) and module.upsample:
                keys.append(official_key(f"{net_name}.{name}.weight", recipe).removesuffix("weight") + "blur.kernel")
    keys.append("G.ToRGB.upsample.kernel")
    return keys


def check_authors_architecture(recipe: Recipe, recipe_ref: str) -> None:
    flat = recipe.flat()
    wrong = [f"{k}={flat[k]!r} (needs {v!r})" for k, v in AUTHORS_ARCHITECTURE.items() if flat[k] != v]
    if wrong:
        raise UserError(f"recipe {recipe_ref} does not build the authors' networks: {', '.join(wrong)}; use one of "
                        f"church_256, bedroom_256, ffhq_512, ffhq_1024, mountain_512 or set those values")


def _same_up_to_unit_axes(a: torch.Size, b: torch.Size) -> bool:
    return [d for d in a if d != 1] == [d for d in b if d != 1]


def _describe(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def convert_state(official: dict[str, Any], networks: dict[str, nn.Module], recipe: Recipe,
                  source: str = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """Their state dict -> {network name: swapbench state dict}; every key accounted for, or a UserError."""
    ours = {f"{n}.{k}": v for n, net in networks.items() for k, v in net.state_dict().items()}
    theirs_of = {k: official_key(k, recipe) for k in ours}
    expected = set(theirs_of.values()) | set(fixed_buffer_keys(networks, recipe)) | {COUNTER_KEY}
    present = set(official)
    missing = sorted(expected - present - {COUNTER_KEY})
    leftover = sorted(present - expected)
    if missing:
        raise UserError(f"{source} lacks {len(missing)} key(s) the recipe's networks need: {_describe(missing)}; "
                        f"pick the recipe of the launcher that trained it")
    if leftover:
        raise UserError(f"{source} has {len(leftover)} key(s) the recipe's networks do not have: {_describe(leftover)}; "
                        f"pick the recipe of the launcher that trained it")
    converted: dict[str, dict[str, torch.Tensor]] = {n: {} for n in networks}
    for key, theirs in theirs_of.items():
        value = official[theirs]
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: {theirs} is a {type(value).__name__}, not a tensor")
        target = ours[key]
        if value.numel() != target.numel() or not _same_up_to_unit_axes(value.shape, target.shape):
            raise UserError(f"{source}: {theirs} has shape {list(value.shape)} but the recipe's network needs "
                            f"{list(target.shape)} (swapbench {key}); pick the recipe of the launcher that trained it")
        net, _, name = key.partition(".")
        converted[net][name] = value.detach().to(dtype=target.dtype).reshape(target.shape)
    return converted


def read_official(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the authors' latest_checkpoint.pth (or NNk_checkpoint.pth)")
    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle's protocol before it refuses it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises UnpicklingError, RuntimeError, EOFError ... for bad files
        raise UserError(f"{path} is not a state dict that torch.load(weights_only=True) reads: not a torch file, or "
                        f"one holding Python objects besides tensors; pass the authors' latest_checkpoint.pth") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not the state dict of the authors' model")
    return state


def import_official(checkpoint: str | Path, recipe: Recipe, recipe_ref: str, out: str | Path) -> Path:
    """Convert the authors' checkpoint for ``recipe`` into a swapbench checkpoint at ``out``."""
    from swapbench import __version__
    from swapbench.checkpoint import save_checkpoint, sha256_file
    from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator

    check_authors_architecture(recipe, recipe_ref)
    path, out = Path(checkpoint), Path(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out} must end in .safetensors (its metadata goes to {out.with_suffix('.json').name})")
    official = read_official(path)
    with torch.device("meta"):  # only the layout is needed: no weights are drawn
        networks = {"autoencoder": build_autoencoder(recipe), "discriminator": build_discriminator(recipe),
                    "cooccur": build_cooccur_discriminator(recipe)}
    # convert_state returns exactly each network's state-dict keys, at each one's shape
    state: dict[str, Any] = convert_state(official, networks, recipe, source=str(path))
    counter = official.get(COUNTER_KEY)
    d_steps = int(counter.reshape(-1)[0]) if isinstance(counter, torch.Tensor) and counter.numel() else 0
    state.update({"step": 0, "images_seen": 0})
    meta = {"step": 0, "images_seen": 0, "recipe": recipe.to_dict(), "recipe_hash": recipe.hash(),
            "git_commit": None, "swapbench_version": __version__, "run_id": None,
            "imported_from": {"file": path.name, "sha256": sha256_file(path), "format": "swapping-autoencoder-pytorch",
                              "discriminator_iterations": d_steps}}
    return save_checkpoint(out, state, meta)
