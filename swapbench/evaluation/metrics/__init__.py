"""Registered scores (see swapbench.registry.METRICS): each metric's direction, what a model needs for
it, the output it scores, its group and its description are recorded at registration; this module reads
them, and names the controls."""

from __future__ import annotations

from typing import Any

from swapbench.registry import METRICS

# what each control outputs for pair (A_i, B_i), in place of the swap G(s(A_i), t(B_i)); every swap
# score is logged for each as control/<name>/<score>
CONTROLS = {
    "copy_a": "copy the structure image: output A_i (perfect structure, no texture transfer)",
    "copy_b": "copy the texture image: output B_i (perfect texture, no structure kept)",
    "recon_a": "reconstruct the structure image: output G(E(A_i)) (the model's own image of A_i, no swap)",
    "blend": "the pixel blend 0.5 A_i + 0.5 B_i: the middle between the copies; a swap works only where it beats "
             "copy A on texture, copy B on structure and this on both",
    "code_midpoint": "the decoder at the midpoint of the codes, G((s(A_i) + s(B_i)) / 2, (t(A_i) + t(B_i)) / 2) (models "
                     "with an encoder and decoder; re-encoding scores only): the middle in code space, where a "
                     "re-encoding score is as far from both codes as a half-copy",
    "truth_flat": "the true swap with every region's pattern flattened to its mean colour (datasets with a known "
                  "swap only): A_i's layout and B_i's colours, no pattern; a swap scoring better on gt_swap_lpips "
                  "carries B_i's patterns, not only its colours",
}
# what each reconstruction control outputs for test image x_i in place of G(E(x_i)); every reconstruction
# score is logged for each as control/<name>/<score>. It needs no model: the same for every run on the same data.
RECON_CONTROLS = {
    "thumbnail_4x": "x_i area-downsampled 4x and bicubic-upsampled back: a codec of 3 numbers per 4x4 pixels "
                    "(a structure code at a quarter of the side with 8 channels holds 8); a model that "
                    "reconstructs worse does not use the room its codes have",
}
# the controls every swap score is logged with, whatever the model and data (the others need a model that
# reconstructs, or a dataset that knows its true swap)
COPY_CONTROLS = ("copy_a", "copy_b")
# controls logged only for the swap scores that name them at registration (``controls=``); every other swap
# control is logged for every swap score
OPT_IN_CONTROLS = ("code_midpoint",)


def group(name: str) -> list[str]:
    """The registered scores of group ``name`` (see swapbench.registry.MetricRegistry.GROUPS): what a score
    measures. Realism alone rewards copying, so a table that shows a 'realism' score also shows a 'texture'
    and a 'structure' score (and the controls)."""
    return METRICS.in_group(name)


def with_companions(columns: list[str], available: list[str]) -> list[str]:
    """``columns`` plus, when one of them is a swap realism score, every available texture-transfer and
    structure score (in that order after the realism columns)."""
    if not any(c in group("realism") for c in columns):
        return list(columns)
    extra = [c for c in (*group("texture"), *group("structure")) if c in available and c not in columns]
    return list(columns) + extra


def direction(name: str) -> str | None:
    """'down' when lower is better, 'up' when higher is better, None for a name that is no registered metric."""
    return METRICS.direction(name)


def arrow(name: str) -> str:
    """↓ or ↑ after a score's name in a table header ('' for a name without a direction)."""
    return {"down": "↓", "up": "↑"}.get(direction(name) or "", "")


def needs(name: str) -> tuple[str, ...]:
    """The methods ('reconstruct', 'swap', 'encode', 'sample') a model must have for metric ``name``."""
    return METRICS.needs(name)


def applies_to(name: str, model: Any) -> bool:
    return METRICS.applies_to(name, model)
