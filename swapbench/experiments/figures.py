"""Figures a paper prints, made from runs MLflow holds.

- ``swap_comparison``: the same (structure, texture) test pairs swapped by several trained runs,
  side by side (the paper's qualitative ablation figure).
- ``metric_curve``: scores against one setting over a sweep's runs (e.g. score vs texture_dim).

Every figure is written with a ``<figure>.json`` beside it that names the runs, their commits and
the pairs it shows, so a figure in results/ can be traced back to what made it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from swapbench.data import data_differences
from swapbench.errors import UserError
from swapbench.visualize import labelled_columns


@dataclass
class RunModel:
    run_id: str
    label: str
    commit: str
    model: torch.nn.Module
    recipe: object  # swapbench.recipe.Recipe


def load_run_models(run_ids: list[str], labels: list[str] | None = None) -> list[RunModel]:
    """Each run's final checkpoint (EMA weights when present) or zoo model (zoo:NAME), labelled by ``labels``,
    its variant tag, or its zoo name."""
    from swapbench.models.build import load_autoencoder
    from swapbench.tracking import checkpoint_of, get_run
    from swapbench.zoo import is_zoo_ref

    if labels is not None and len(labels) != len(run_ids):
        raise UserError(f"{len(labels)} labels for {len(run_ids)} runs; give one label per run or none")
    loaded = []
    for i, rid in enumerate(run_ids):
        from_zoo = is_zoo_ref(rid)  # a zoo model is in no run of this store; its checkpoint names its commit
        tags = {} if from_zoo else get_run(rid).data.tags
        model, recipe, meta = load_autoencoder(checkpoint_of(rid))
        label = labels[i] if labels else rid if from_zoo else tags.get("swapbench.variant", recipe.name)
        commit = meta.get("git_commit") if from_zoo else tags.get("swapbench.git_commit")
        loaded.append(RunModel(rid, label, commit or "unknown", model, recipe))
    for run in loaded[1:]:
        differ = data_differences(run.recipe, loaded[0].recipe)
        if differ:
            raise UserError(f"run {run.run_id} has other test images than run {loaded[0].run_id} "
                            f"(data.{', data.'.join(differ)} differ); a swap figure compares runs on the same data")
    return loaded


@torch.no_grad()
def swap_comparison(runs: list[RunModel], images: torch.Tensor, pairs: list[tuple[int, int]],
                    cell: int = 128, pad: int = 4) -> Image.Image:
    """Rows are pairs (A, B); columns are A (structure), B (texture), then G(s(A), t(B)) of each run."""
    a = images[[p[0] for p in pairs]]
    b = images[[p[1] for p in pairs]]
    columns = [a, b]
    for run in runs:
        model = run.model.eval()
        device = next(model.parameters()).device
        columns.append(model.swap(a.to(device), b.to(device)).cpu())
    return labelled_columns(columns, ["structure", "texture", *[r.label for r in runs]], cell, pad)


def figure_swaps(run_ids: list[str], out: str | Path, n: int = 6, labels: list[str] | None = None,
                 cell: int = 128) -> Path:
    """Render and save the cross-run swap figure and its provenance JSON; returns the PNG path."""
    from swapbench.data import test_images
    from swapbench.data.pairs import draw_pairs

    if not run_ids:
        raise UserError("no runs given; pass --runs RUN_A,RUN_B,...")
    out = png_output_path(out)
    runs = load_run_models(run_ids, labels)
    recipe = runs[0].recipe
    images = test_images(recipe)
    pairs = draw_pairs(n, images.shape[0], recipe.eval.pairs_seed)
    swap_comparison(runs, images, pairs, cell=cell).save(out)
    write_provenance(out, {
        "figure": "swaps", "pairs": [list(p) for p in pairs], "pairs_seed": recipe.eval.pairs_seed,
        "dataset": recipe.data.dataset, "resolution": recipe.data.resolution,
        "runs": [{"run_id": r.run_id, "label": r.label, "git_commit": r.commit} for r in runs],
    })
    return out


def metric_curve(df: pd.DataFrame, x: str, metrics: list[str]):
    """A matplotlib figure: one panel per metric, mean ± std over seeds against setting ``x``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from swapbench.evaluation.metrics import arrow, direction

    col = f"params.{x}"
    if col not in df.columns:
        raise UserError(f"the runs have no setting '{x}'; name a recipe key such as model.texture_dim")
    xs = pd.to_numeric(df[col], errors="coerce")
    if xs.isna().any():
        raise UserError(f"setting '{x}' is not numeric in every run ({sorted(set(df[col].astype(str)))}); "
                        "a curve needs numbers on its x axis")
    missing = [m for m in metrics if f"metrics.{m}" not in df.columns]
    if missing:
        raise UserError(f"no run logged {', '.join(missing)}; logged scores: "
                        f"{', '.join(sorted(c[8:] for c in df.columns if c.startswith('metrics.') and direction(c[8:])))}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        stats = df.assign(_x=xs).groupby("_x")[f"metrics.{m}"].agg(["mean", "std", "count"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3)
        if stats.index.min() > 0 and stats.index.max() / stats.index.min() >= 16:
            ax.set_xscale("log", base=2)
        ax.set_title(f"{m} {arrow(m)}")
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figure_curve(out: str | Path, x: str, metrics: list[str], experiment: str | None = None,
                 sweep: str | None = None) -> Path:
    """Plot ``metrics`` against setting ``x`` over the finished runs of a sweep or experiment."""
    from swapbench.experiments.leaderboard import load_runs

    out = png_output_path(out)
    df = load_runs(experiment, sweep)
    fig = metric_curve(df, x, metrics)
    fig.savefig(out, dpi=120)
    write_provenance(out, {
        "figure": "curve", "x": x, "metrics": metrics, "sweep": sweep, "experiment": experiment,
        "runs": [{"run_id": r["run_id"], "x": r[f"params.{x}"], "git_commit": r.get("tags.swapbench.git_commit"),
                  **{m: _number(r[f"metrics.{m}"]) for m in metrics}} for _, r in df.iterrows()],
    })
    return out


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


def png_output_path(out: str | Path) -> Path:
    from swapbench.outputs import writable_file

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UserError(f"figures are written as PNG; give --out a .png path, not '{out}'")
    writable_file(out.with_suffix(".json"), "--out's provenance file")
    return writable_file(out, "--out")


def write_provenance(png: Path, record: dict) -> None:
    png.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str))
