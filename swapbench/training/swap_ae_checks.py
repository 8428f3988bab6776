"""The cross-checks of the Swapping Autoencoder family (``model.family: swap_ae``): settings that each
pass their own bounds but cannot go together. Registered with its trainer (``check=``), they run when a
recipe of the family is validated, before any work starts; each problem is a ValueError that names the
settings and the fix."""

from __future__ import annotations

from swapbench.recipe import Recipe, is_pow2


def check_swap_ae(recipe: Recipe) -> None:
    """Sizes (structure code, texture branch, LPIPS input, patch crops) and the co-occurrence settings."""
    res = recipe.data.resolution
    sd = recipe.model.structure_downsample
    if not is_pow2(sd) or res % sd != 0 or res // sd < 2:
        raise ValueError(
            f"model.structure_downsample={sd} must be a power of two that divides data.resolution={res} "
            f"and leaves a structure code of at least 2x2 (e.g. {res // 2 if is_pow2(res) else 16})"
        )
    side, convs = res // sd, recipe.encoder.texture_convs if recipe.model.encoder == "swap_ae" else 0
    for _ in range(convs):
        if side < 3:
            need = 3
            for _ in range(convs - 1):
                need = 2 * need + 1
            raise ValueError(
                f"encoder.texture_convs={convs} needs a structure code of at least {need} px, but data.resolution={res} "
                f"/ model.structure_downsample={sd} gives {res // sd}; lower encoder.texture_convs or "
                f"model.structure_downsample"
            )
        side = (side - 3) // 2 + 1
    if recipe.loss.recon_lpips > 0:
        from swapbench.nn.lpips import MIN_SIDE  # torch: only for recipes that use LPIPS

        if res < MIN_SIDE[recipe.loss.recon_lpips_net]:
            raise ValueError(
                f"loss.recon_lpips_net={recipe.loss.recon_lpips_net} needs images of at least "
                f"{MIN_SIDE[recipe.loss.recon_lpips_net]} px, but data.resolution={res}; use recon_lpips_net=vgg "
                f"or a larger resolution"
            )
    co = recipe.cooccur
    if recipe.loss.cooccur_reference == "per_crop" and co.n_ref != co.n_crops:
        raise ValueError(
            f"loss.cooccur_reference=per_crop pairs reference crop i with judged crop i, so cooccur.n_ref="
            f"{co.n_ref} must equal cooccur.n_crops={co.n_crops}"
        )
    if recipe.model.cooccur_discriminator is None:
        for key in ("cooccur", "patch_r1"):
            if getattr(recipe.loss, key) > 0:
                raise ValueError(
                    f"loss.{key}={getattr(recipe.loss, key)} needs the co-occurrence discriminator, "
                    f"but model.cooccur_discriminator is null; set loss.{key}=0 or name one"
                )
    else:
        if co.patch_size > res:
            raise ValueError(
                f"cooccur.patch_size={co.patch_size} is larger than data.resolution={res}; "
                f"use at most {res}"
            )
        if not is_pow2(co.patch_size):
            raise ValueError(f"cooccur.patch_size={co.patch_size} must be a power of two >= 4")
        if co.crop_min > co.crop_max:
            raise ValueError(
                f"cooccur.crop_min={co.crop_min} is larger than cooccur.crop_max={co.crop_max}"
            )
        if co.crop_min * res < 2:
            raise ValueError(
                f"cooccur.crop_min={co.crop_min} gives crops under 2 px at data.resolution={res}; "
                f"raise it to at least {2 / res:.3g}"
            )
