"""Registered scores (see swapbench.registry.METRICS), which way each one is better, and what a
model must be able to do for a score to apply to it."""

from collections.abc import Callable

# lower is better for distances and errors, higher for PSNR; a table marks the best value by these
LOWER_IS_BETTER = frozenset({
    "recon_l1", "recon_lpips_alex", "recon_lpips_vgg", "swap_fid", "swap_kid", "swap_fid_vs_structure",
    "sifid", "swap_structure_dist", "swap_texture_dist", "gt_swap_lpips", "sample_fid", "sample_kid", "seconds_per_image",
})
HIGHER_IS_BETTER = frozenset({"recon_psnr", "gt_swap_psnr", "speedup", "swap_reencode_structure",
                              "swap_reencode_texture"})

# what a swap score measures: realism alone rewards copying, so a table that shows a realism score
# also shows a texture-transfer and a structure score (and the controls)
SWAP_REALISM = ("swap_fid", "swap_kid", "swap_fid_vs_structure")
TEXTURE_TRANSFER = ("swap_texture_dist", "swap_reencode_texture", "sifid")
STRUCTURE_KEPT = ("swap_structure_dist", "swap_reencode_structure")

# what each control outputs for pair (A_i, B_i), in place of the swap G(s(A_i), t(B_i)); every swap
# score is logged for each as control/<name>/<score>
CONTROLS = {
    "copy_a": "copy the structure image: output A_i (perfect structure, no texture transfer)",
    "copy_b": "copy the texture image: output B_i (perfect texture, no structure kept)",
    "recon_a": "reconstruct the structure image: output G(E(A_i)) (the model's own image of A_i, no swap)",
}


def with_companions(columns: list[str], available: list[str]) -> list[str]:
    """``columns`` plus, when one of them is a swap realism score, every available texture-transfer and
    structure score (in that order after the realism columns)."""
    if not any(c in SWAP_REALISM for c in columns):
        return list(columns)
    extra = [c for c in (*TEXTURE_TRANSFER, *STRUCTURE_KEPT) if c in available and c not in columns]
    return list(columns) + extra


def direction(name: str) -> str | None:
    """'down' when lower is better, 'up' when higher is better, None for anything else."""
    if name in LOWER_IS_BETTER:
        return "down"
    if name in HIGHER_IS_BETTER:
        return "up"
    return None


def needs(*methods: str) -> Callable:
    """Mark a metric as applying only to models with these methods (e.g. 'reconstruct', 'swap', 'sample')."""
    def mark(fn):
        fn.model_needs = methods
        return fn
    return mark


def applies_to(metric: Callable, model) -> bool:
    return all(hasattr(model, m) for m in getattr(metric, "model_needs", ()))
