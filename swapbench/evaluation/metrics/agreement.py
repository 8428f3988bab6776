"""How well a score ranks runs the way the ground truth does: Spearman's rank correlation of each
score with ``gt_swap_lpips`` (or another truth) over a set of runs, e.g. the ablations on the
synthetic data, where every swap has a known right answer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from swapbench.evaluation.metrics import direction


def rank_agreement(runs: pd.DataFrame, scores: list[str], truth: str = "gt_swap_lpips") -> pd.DataFrame:
    """One row per score: Spearman's rho with ``truth`` over the runs that logged both, and the
    agreement, rho signed so that +1 means the score orders the runs from better to worse exactly as
    the truth does (whatever the two directions), -1 exactly the reverse.

    ``runs`` has one row per run and a column per score, named plainly or as MLflow's ``metrics.<name>``.
    """
    from scipy.stats import spearmanr

    def column(name: str) -> pd.Series:
        for c in (name, f"metrics.{name}"):
            if c in runs:
                return pd.to_numeric(runs[c], errors="coerce")
        raise KeyError(f"no column {name!r} (or metrics.{name}) in the runs")

    if direction(truth) is None:
        raise ValueError(f"{truth!r} has no known direction")
    gt = column(truth)
    rows = []
    for name in scores:
        values = column(name)
        both = gt.notna() & values.notna()
        n = int(both.sum())
        rho = float(spearmanr(values[both], gt[both]).statistic) if n >= 3 else float("nan")
        same_direction = direction(name) == direction(truth)
        agreement = rho if same_direction else -rho
        rows.append({"score": name, "truth": truth, "runs": n, "spearman": rho,
                     "agreement": agreement if not np.isnan(rho) else float("nan")})
    return pd.DataFrame(rows)
