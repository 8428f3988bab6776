"""How a score is written in every table swapbench prints (leaderboards, claims, `swapbench project` and
`swapbench swaps`): the value, its 95 % interval where the row has one (``<score>_ci_low`` /
``<score>_ci_high``), and the spread over seeds where asked (``<score>_std``); "-" where the row has no value."""

from __future__ import annotations

import pandas as pd


def with_interval(row: pd.Series, score: str, std: bool = False) -> str:
    """``0.4754 [0.448, 0.498]`` (`` ± 0.0094`` with ``std``) from ``row``'s ``score`` columns."""
    value = row.get(score)
    if value is None or pd.isna(value):
        return "-"
    text = f"{value:.4g}"
    low, high = row.get(f"{score}_ci_low"), row.get(f"{score}_ci_high")
    if low is not None and pd.notna(low):
        text += f" [{low:.3g}, {high:.3g}]"
    spread = row.get(f"{score}_std") if std else None
    if spread is not None and pd.notna(spread):
        text += f" ± {spread:.2g}"
    return text
