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
from swapbench.outputs import make_parent, replace_text, replacing
from swapbench.recipe import RENAMED_KEYS
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
    with replacing(make_parent(out)) as tmp:
        swap_comparison(runs, images, pairs, cell=cell).save(tmp)
    write_provenance(out, {
        "figure": "swaps", "pairs": [list(p) for p in pairs], "pairs_seed": recipe.eval.pairs_seed,
        "dataset": recipe.data.dataset, "resolution": recipe.data.resolution,
        "runs": [{"run_id": r.run_id, "label": r.label, "git_commit": r.commit} for r in runs],
    })
    return out


def curve_x(df: pd.DataFrame, x: str) -> pd.Series:
    """The x value of every run: the recipe setting ``x``, else the logged number ``x`` (a cost such as
    ``train/cpu_seconds``, so that runs with different settings can share one cost axis). Runs read back
    carry today's keys (see :data:`swapbench.recipe.RENAMED_KEYS`), so a moved setting goes by its new key."""
    if x in RENAMED_KEYS:
        raise UserError(f"the setting {x} is now {RENAMED_KEYS[x]}; name it so (older runs are read under it too)")
    col = f"params.{x}" if f"params.{x}" in df.columns else f"metrics.{x}"
    if col not in df.columns:
        raise UserError(f"the runs have no setting or logged number '{x}'; name a recipe key such as "
                        "model.texture_dim or a logged number such as train/cpu_seconds")
    xs = pd.to_numeric(df[col], errors="coerce")
    if xs.isna().any():
        missing = df[col].isna()
        if missing.any():  # runs that never had the setting (another family's, or an older schema's)
            raise UserError(f"{int(missing.sum())} of the {len(df)} runs have no '{x}' (first: run "
                            f"{df[missing].iloc[0].get('run_id', '?')}); choose the runs with --experiment or --sweep")
        raise UserError(f"'{x}' is not numeric in every run ({sorted({str(v) for v in df[col]})}); "
                        "a curve needs numbers on its x axis")
    return xs


def shared_controls(df: pd.DataFrame, metric: str) -> list[str]:
    """The controls logged with ``metric`` (``control/<name>/<metric>``) by every run, with one value for
    all of them (copying A or B on the same pairs); a control whose value differs between runs (the
    model's own reconstruction) belongs to each model, and one that some runs lack cannot be shown to
    hold for them: neither is drawn across the figure."""
    names = sorted({c.split("/")[1] for c in df.columns if c.startswith("metrics.control/") and c.endswith(f"/{metric}")})
    values = {n: df[f"metrics.control/{n}/{metric}"] for n in names}
    return [n for n, v in values.items() if v.notna().all() and v.round(9).nunique() == 1]


def metric_curve(df: pd.DataFrame, x: str, metrics: list[str]):
    """A matplotlib figure: one panel per metric against ``x`` (see :func:`curve_x`).

    Where several runs share an x value (seeds), the point is their mean with ± their std; where every
    x value has one run, the point carries that run's own 95 % interval (``<metric>_ci_low/_high``)
    and, when the runs are a sweep's variants, the variant's name. The reference rows the evaluator
    logs with a score (``control/<name>/<metric>``: copying A, copying B) are drawn as horizontal
    lines with their intervals shaded, so a model's point reads against them; a control whose value
    differs between runs (the model's own reconstruction) is a per-model row and is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from swapbench.evaluation.metrics import arrow, direction

    missing = [m for m in metrics if f"metrics.{m}" not in df.columns]
    if missing:
        logged = sorted(c[8:] for c in df.columns if c.startswith("metrics.") and direction(c[8:]))
        raise UserError(f"no run logged {', '.join(missing)}; logged scores: {', '.join(logged) or '(none)'}")
    xs = curve_x(df, x)
    one_run_each = xs.is_unique
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 4.0), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        col = f"metrics.{m}"
        if one_run_each and f"{col}_ci_low" in df.columns:
            order = xs.sort_values().index
            y = df.loc[order, col]
            err = [(y - df.loc[order, f"{col}_ci_low"]).clip(lower=0).fillna(0),
                   (df.loc[order, f"{col}_ci_high"] - y).clip(lower=0).fillna(0)]
            ax.errorbar(xs[order], y, yerr=err, fmt="o", capsize=3, label="model (95 % interval)")
            if "tags.swapbench.variant" in df.columns:
                for i in order:
                    ax.annotate(str(df.at[i, "tags.swapbench.variant"]), (xs[i], df.at[i, col]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
        else:
            stats = df.assign(_x=xs).groupby("_x")[col].agg(["mean", "std"]).sort_index()
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                        label="model (mean ± std over seeds)")
        for k, control in enumerate(shared_controls(df, m)):
            base = f"metrics.control/{control}/{m}"
            colour = f"C{k + 1}"
            ax.axhline(df[base].mean(), color=colour, linestyle="--", linewidth=1, label=f"control: {control}")
            if f"{base}_ci_low" in df.columns:
                ax.axhspan(df[f"{base}_ci_low"].mean(), df[f"{base}_ci_high"].mean(), color=colour, alpha=0.12)
        if xs.min() > 0 and xs.max() / xs.min() >= 16:
            ax.set_xscale("log", base=2)
        ax.set_title(f"{m} {arrow(m)}")
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_curve(out: str | Path, x: str, metrics: list[str], experiment: str | None = None,
                 sweep: str | None = None, run: str | None = None) -> Path:
    """Plot ``metrics`` against ``x`` (a setting or a logged number) over the finished runs of a sweep
    or experiment, or over the scored checkpoints of one ``run`` (x: ``step`` or ``images``); a .json
    beside the PNG holds every plotted value with its run id."""
    from swapbench.experiments.leaderboard import load_run_history, load_runs

    out = png_output_path(out)
    df = load_run_history(run) if run else load_runs(experiment, sweep)
    fig = metric_curve(df, x, metrics)
    with replacing(make_parent(out)) as tmp:
        fig.savefig(tmp, dpi=120)
    xs = curve_x(df, x)
    write_provenance(out, {
        "figure": "curve", "x": x, "metrics": metrics, "sweep": sweep, "experiment": experiment, "run": run,
        "runs": [{"run_id": r["run_id"], "variant": r.get("tags.swapbench.variant"), "x": _number(xs[i]),
                  "git_commit": r.get("tags.swapbench.git_commit"),
                  **{f"{m}{part}": _number(r.get(f"metrics.{m}{part}")) for m in metrics for part in CURVE_PARTS}}
                 for i, r in df.iterrows()],
        "controls": {f"{name}/{m}{part}": _number(df[f"metrics.control/{name}/{m}{part}"].mean())
                     for m in metrics for name in shared_controls(df, m) for part in CURVE_PARTS
                     if f"metrics.control/{name}/{m}{part}" in df.columns},
    })
    return out


CURVE_PARTS = ("", "_ci_low", "_ci_high")  # what the provenance keeps of each plotted score


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
    replace_text(png.with_suffix(".json"), json.dumps(record, indent=1, default=str))
