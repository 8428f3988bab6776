"""Registered scores (see swapbench.registry.METRICS) and which way each one is better."""

# lower is better for distances and errors, higher for PSNR; a table marks the best value by these
LOWER_IS_BETTER = frozenset({
    "recon_l1", "recon_lpips_alex", "recon_lpips_vgg", "swap_fid", "swap_kid", "swap_fid_vs_structure",
    "sifid", "gt_swap_lpips", "embed_seconds", "embed_lpips",
})
HIGHER_IS_BETTER = frozenset({"recon_psnr", "gt_swap_psnr", "speedup"})


def direction(name: str) -> str | None:
    """'down' when lower is better, 'up' when higher is better, None for anything else."""
    if name in LOWER_IS_BETTER:
        return "down"
    if name in HIGHER_IS_BETTER:
        return "up"
    return None
