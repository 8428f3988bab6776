"""When does a swap work? The rule of DESIGN.md's "A protocol that can tell", as one function over a run's
logged scores (``<score>``, ``<score>_ci_low/_ci_high`` and ``control/<control>/<score>...``).

A swap works only where it beats copy A on texture transfer, copy B on structure, and the middle control
on both, each with the 95 % intervals apart (the model's interval entirely on the better side of the
control's). The middle control is the pixel blend 0.5 A + 0.5 B, and for the re-encoding scores the
decoder at the codes' midpoint where the run logged it (a code halfway between A's and B's re-encodes
as far from both as a half-copy, and the pixel blend is no middle in code space).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from swapbench.registry import METRICS

# texture-transfer and structure scores the rule is read on, by data (synthetic: the part scores)
RULE_SCORES = {
    "photos": (("swap_texture_dist", "swap_structure_dist"), ("swap_reencode_texture", "swap_reencode_structure")),
    "synthetic": (("gt_colour_error", "gt_layout"), ("gt_pattern", "gt_layout"),
                  ("swap_texture_dist", "swap_structure_dist")),
}


@dataclass
class Comparison:
    score: str
    control: str
    model: tuple[float, float, float]  # value, low, high
    other: tuple[float, float, float]
    beats: bool | None  # None: a value or interval is missing

    def line(self) -> str:
        word = {True: "beats", False: "does not beat", None: "cannot be compared with"}[self.beats]
        return (f"{self.score} {_fmt(self.model)} {word} {self.control} {_fmt(self.other)}")


@dataclass
class Verdict:
    texture: str
    structure: str
    works: bool | None  # None: some comparison could not be made (a score, control or interval missing)
    comparisons: list[Comparison] = field(default_factory=list)

    def why(self) -> str:
        """One line: what failed (or that every comparison passed)."""
        failed = [c for c in self.comparisons if c.beats is False]
        missing = [c for c in self.comparisons if c.beats is None]
        if self.works:
            return f"beats copy A on {self.texture}, copy B on {self.structure} and the middle on both, intervals apart"
        if failed:
            return "; ".join(c.line() for c in failed)
        return "not decidable: " + "; ".join(c.line() for c in missing)


def _fmt(v: tuple[float, float, float]) -> str:
    value, lo, hi = v
    if math.isnan(value):
        return "(missing)"
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]" if not (math.isnan(lo) or math.isnan(hi)) else f"{value:.3g} (no interval)"


def _get(scores: Mapping[str, float], name: str) -> tuple[float, float, float]:
    def one(key: str) -> float:
        v = scores.get(key)
        return float("nan") if v is None else float(v)

    return one(name), one(f"{name}_ci_low"), one(f"{name}_ci_high")


def beats(scores: Mapping[str, float], score: str, control: str) -> Comparison:
    """Whether the model's ``score`` is better than ``control``'s with the two 95 % intervals apart."""
    model, other = _get(scores, score), _get(scores, f"control/{control}/{score}")
    if any(math.isnan(x) for x in (*model, *other)):
        return Comparison(score, control, model, other, None)
    better = model[2] < other[1] if METRICS.direction(score) == "down" else model[1] > other[2]
    return Comparison(score, control, model, other, bool(better))


def middle_control(scores: Mapping[str, float], score: str) -> str:
    """The middle control a score is compared with: code_midpoint for a re-encoding score where logged, else blend."""
    if score.startswith("swap_reencode_") and f"control/code_midpoint/{score}" in scores:
        return "code_midpoint"
    return "blend"


def swap_works(scores: Mapping[str, float], texture: str = "swap_texture_dist",
               structure: str = "swap_structure_dist") -> Verdict:
    """The verdict of the rule on one run's (or one variant's aggregated) scores."""
    comparisons = [beats(scores, texture, "copy_a"), beats(scores, structure, "copy_b"),
                   beats(scores, texture, middle_control(scores, texture)),
                   beats(scores, structure, middle_control(scores, structure))]
    results = [c.beats for c in comparisons]
    works = False if False in results else (None if None in results else True)
    return Verdict(texture, structure, works, comparisons)
