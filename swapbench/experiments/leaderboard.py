"""Leaderboard tables from what MLflow holds: one row per variant, one column per score.

Rows are FINISHED runs grouped by variant (the ``swapbench.variant`` tag a sweep sets, else the
recipe name); several seeds of a variant become mean ± std, with the union of the runs' 95 %
intervals, and the number of seeds. Below the models, reference rows give the controls (copy A, copy
B, reconstruct A, and on synthetic data the flattened true swap) on the same pairs; a swap realism
column is shown only beside texture-transfer and structure columns. Runs whose scores are not comparable
(different dataset, resolution, N or score network) are never mixed: they go into separate tables,
each with a note saying what they share. Nor are splits: a table is of one split (``split``, test by
default: the scores logged under their own names; validation: those logged as ``val/<score>``), and its
note says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from swapbench.errors import UserError
from swapbench.evaluation.metrics import (
    CONTROLS,
    COPY_CONTROLS,
    RECON_CONTROLS,
    arrow,
    direction,
    group,
    with_companions,
)
from swapbench.experiments.cells import with_interval
from swapbench.experiments.sweep import SWEEP_KEY_TAG, SWEEP_KEYS_TAG
from swapbench.recipe import RENAMED_KEYS, migrate_flat

# the settings that must be equal for two rows' scores to be comparable
# (runs scored before the held-out reference existed have no eval.reference_images: their swap_fid was
# measured against the swap sources and lands in a table of its own)
COMPARABLE_ON = ("params.data.dataset", "params.data.resolution", "params.data.test_images",
                 "params.eval.swap_pairs", "params.eval.reference_images", "params.score.inception_sha256")
FORMATS = ("md", "csv", "html", "json", "latex")


@dataclass
class Table:
    note: str  # what every row of this table shares
    frame: pd.DataFrame  # numeric: variant, runs, seeds, control, <metric>, <metric>_std/_ci_low/_ci_high/_n, run_ids, commits
    metrics: list[str]
    notes: list[str] = field(default_factory=list)  # columns left out and why


def sweep_parent(parent: str):
    """The MLflow run of sweep parent ``parent``; an unknown id is a user error."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.get_run(parent)
    except MlflowException:
        raise UserError(f"no sweep parent run '{parent}' in {mlflow.get_tracking_uri()}; `swapbench sweep FILE` "
                        "prints it, or use --experiment") from None


def sweep_runs(df: pd.DataFrame, parent) -> pd.DataFrame:
    """The runs of sweep ``parent`` (its MLflow run): its children, and for each key the parent records (tag
    ``swapbench.sweep_keys``) that no child of its own has, the latest finished run with that key (a
    finished run the sweep reused from an earlier version of its file)."""
    keys = set(filter(None, parent.data.tags.get(SWEEP_KEYS_TAG, "").split(",")))
    key_column = f"tags.{SWEEP_KEY_TAG}"
    parents = df.get("tags.mlflow.parentRunId", pd.Series(index=df.index, dtype=object))
    sweep_keys = df.get(key_column, pd.Series(index=df.index, dtype=object))
    own = df[parents == parent.info.run_id]
    reused = df[sweep_keys.isin(keys - set(own.get(key_column, ())))]  # never its own: their keys are taken out
    reused = reused.sort_values("start_time").drop_duplicates(key_column, keep="last")
    return pd.concat([own, reused])


def load_runs(experiment: str | None = None, sweep: str | None = None, uri: str | None = None) -> pd.DataFrame:
    """FINISHED runs of an experiment, of a sweep (a parent run's children and the runs it reused, see
    :func:`sweep_runs`), or of every experiment."""
    import mlflow

    from swapbench.store import use_store
    from swapbench.tracking import tracking_uri

    use_store(uri or tracking_uri(), create=False)  # an unreachable server is a one-line error, not minutes of retries
    kwargs: dict = {"filter_string": "attributes.status = 'FINISHED'"}
    parent = sweep_parent(sweep) if sweep else None
    if parent is not None:
        kwargs.update(experiment_ids=[parent.info.experiment_id])
    elif experiment:
        if mlflow.get_experiment_by_name(experiment) is None:
            raise UserError(f"no MLflow experiment '{experiment}' in {mlflow.get_tracking_uri()}; "
                            f"`mlflow experiments search` or `mlflow ui` lists them")
        kwargs["experiment_names"] = [experiment]
    else:
        kwargs["search_all_experiments"] = True
    df = mlflow.search_runs(**kwargs)
    if "tags.swapbench.recipe" in df.columns:  # only training runs (not sweep parents or other tools' runs)
        df = df[df["tags.swapbench.recipe"].notna()]
    else:
        df = df.iloc[0:0]
    if parent is not None and not df.empty:
        df = sweep_runs(df, parent)
    if df.empty:
        raise UserError("no finished runs to tabulate; run a recipe first or check --experiment / --sweep")
    return current_param_columns(df)


def current_param_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Runs logged before a setting moved to its component's section (RENAMED_KEYS) carry its old key:
    one column per setting, under today's key."""
    for old, new in RENAMED_KEYS.items():
        before, now = f"params.{old}", f"params.{new}"
        if before in df.columns:
            df = df.assign(**{now: df[before] if now not in df.columns else df[now].fillna(df[before])})
            df = df.drop(columns=before)
    return df


NOT_SCORES = ("train/", "system/", "eval/")  # logged numbers of a run that are not scores of its model


def load_run_history(run_id: str, uri: str | None = None) -> pd.DataFrame:
    """One row per scored checkpoint of a run (scores are logged at the step of the checkpoint they are
    of: the end of training, and each checkpoint scored with ``swapbench evaluate``), shaped like
    :func:`load_runs` (``metrics.<score>``, controls included) with ``metrics.step`` and
    ``metrics.images`` (step x batch size) for the x axis and ``tags.swapbench.variant`` naming the
    checkpoint."""
    import mlflow

    from swapbench.store import use_store
    from swapbench.tracking import get_run, tracking_uri

    run = get_run(run_id, use_store(uri or tracking_uri(), create=False))
    client = mlflow.MlflowClient()
    rows: dict[int, dict] = {}
    for key in run.data.metrics:
        if key.startswith(NOT_SCORES):
            continue
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
        for m in history:  # in logging order, so a step scored twice keeps its latest value
            rows.setdefault(m.step, {})[f"metrics.{key}"] = m.value
    if not rows:
        raise UserError(f"run {run_id} logged no scores; score it with `swapbench evaluate {run_id}`")
    batch = int(run.data.params.get("train.batch_size", 0) or 0)
    records = [{**row, "metrics.step": step,
                "metrics.images": step * batch, "run_id": run_id,
                "tags.swapbench.variant": f"{step * batch / 1000:g}k images",
                "tags.swapbench.git_commit": run.data.tags.get("swapbench.git_commit")}
               for step, row in sorted(rows.items())]
    return pd.DataFrame.from_records(records)


def score_columns(df: pd.DataFrame, metrics: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(columns to show, notes). A swap realism column comes with the texture-transfer and structure
    columns and the controls; where the runs lack those (scored before they existed), the realism
    column is left out with a note, because realism alone rewards copying."""
    available = [c[len("metrics."):] for c in df.columns if c.startswith("metrics.")]
    if metrics:
        missing = [m for m in metrics if m not in available]
        if missing:
            raise UserError(f"no run logged {', '.join(missing)}; logged scores: "
                            f"{', '.join(sorted(m for m in available if direction(m)))}")
        columns = list(metrics)
    else:
        columns = sorted(m for m in available if direction(m))
    columns = with_companions(columns, [m for m in available if df[f"metrics.{m}"].notna().any()])
    notes = []
    realism = [c for c in columns if c in group("realism")]
    if realism:
        has_texture = any(c in columns for c in group("texture"))
        has_structure = any(c in columns for c in group("structure"))
        has_controls = all(f"control/{c}/{m}" in available for c in COPY_CONTROLS for m in realism)
        if not (has_texture and has_structure and has_controls):
            columns = [c for c in columns if c not in realism]
            notes.append(f"{', '.join(realism)} not shown: these runs lack a texture-transfer score, a structure score "
                         f"or the copy controls, and realism alone rewards copying; rescore them with `swapbench evaluate`")
    return columns, notes


def of_split(df: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The runs' scores of one split, under the scores' own names: test keeps the unprefixed metric columns
    and drops every ``val/`` one; validation keeps only the ``val/`` columns, prefix removed. A split no run
    was scored on is a user error (tables never fall back to the other split)."""
    from swapbench.data import SCORE_SPLITS

    if split not in SCORE_SPLITS:
        raise UserError(f"--split {split} is not a split of scores; use {' or '.join(SCORE_SPLITS)}")
    val = "metrics." + SCORE_SPLITS["validation"]
    metric_cols = [c for c in df.columns if c.startswith("metrics.")]
    if split == "test":
        keep = [c for c in metric_cols if not c.startswith(val)]
        rename = {}
    else:
        keep = [c for c in metric_cols if c.startswith(val)]
        rename = {c: "metrics." + c[len(val):] for c in keep}
    scored = [c for c in keep if df[c].notna().any() and not c.removeprefix("metrics.").startswith(NOT_SCORES)]
    if not scored and metric_cols:
        raise UserError(f"no run here was scored on the {split} split; score them with "
                        f"`swapbench evaluate RUN_ID --split {split}`")
    others = [c for c in df.columns if not c.startswith("metrics.")]
    out = df[others + keep].rename(columns=rename)
    out["split"] = split
    return out


def build_tables(df: pd.DataFrame, metrics: list[str] | None = None, split: str = "test") -> list[Table]:
    df = of_split(df, split)
    metrics, notes = score_columns(df, metrics)
    df = df.copy()
    variant = df.get("tags.swapbench.variant")
    recipe = df.get("tags.swapbench.recipe", pd.Series("?", index=df.index))
    df["variant"] = (variant.fillna(recipe) if variant is not None else recipe).fillna("?")
    keys = [c for c in COMPARABLE_ON if c in df.columns]
    for c in keys:
        df[c] = df[c].fillna("-")
    tables = []
    groups = df.groupby(keys, sort=True) if keys else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        note = ", ".join(f"{k.removeprefix('params.')}={str(v)[:12]}" for k, v in zip(keys, key))
        note += f", scores of the {split} split"
        frame = pd.concat([_aggregate(part, metrics), _control_rows(part, metrics)], ignore_index=True)
        tables.append(Table(note, frame, metrics, notes))
    return tables


def _summary(runs: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean over runs, std over runs, and the union of the runs' 95 % intervals."""
    def values(c: str) -> pd.Series:
        return runs[c].dropna() if c in runs else pd.Series(dtype=float)

    v, lo, hi = values(column), values(f"{column}_ci_low"), values(f"{column}_ci_high")
    return {"mean": v.mean() if len(v) else float("nan"),
            "std": v.std(ddof=1) if len(v) > 1 else float("nan"),
            "lo": lo.min() if len(lo) == len(v) and len(v) else float("nan"),
            "hi": hi.max() if len(hi) == len(v) and len(v) else float("nan")}


def _row(name: str, runs: pd.DataFrame, metrics: list[str], prefix: str = "") -> dict:
    seeds = runs["params.seed"].dropna().nunique() if "params.seed" in runs else len(runs)
    row = {"variant": name, "runs": len(runs), "seeds": int(seeds), "control": bool(prefix)}
    for m in metrics:
        summary = _summary(runs, f"metrics.{prefix}{m}")
        row[m], row[f"{m}_std"], row[f"{m}_ci_low"], row[f"{m}_ci_high"] = (
            summary["mean"], summary["std"], summary["lo"], summary["hi"])
        n_col = f"metrics.{m}_n"
        row[f"{m}_n"] = int(runs[n_col].dropna().iloc[0]) if n_col in runs and runs[n_col].notna().any() else None
        src_col = f"metrics.{m}_n_sources"  # where images share sources (crops of photographs): how many
        row[f"{m}_n_sources"] = (int(runs[src_col].dropna().iloc[0])
                                 if src_col in runs and runs[src_col].notna().any() else None)
    row["run_ids"] = " ".join(runs["run_id"])
    commits = runs.get("tags.swapbench.git_commit", pd.Series(dtype=str)).dropna()
    row["commits"] = " ".join(sorted({c[:12] for c in commits}))
    return row


def _aggregate(part: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    return pd.DataFrame([_row(variant, runs, metrics) for variant, runs in part.groupby("variant", sort=True)])


def _control_rows(part: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One reference row per control, over every run of the table (copy controls depend only on the data
    and pairs, except their re-encoding scores, which use each run's encoder; recon_a is each run's own
    reconstruction): never ranked. A control none of the table's runs logged (truth_flat on photos, in a
    frame that also holds synthetic runs) gets no row."""
    rows = []
    for control in [*CONTROLS, *RECON_CONTROLS]:
        columns = [f"metrics.control/{control}/{m}" for m in metrics]
        if any(c in part and part[c].notna().any() for c in columns):
            rows.append(_row(f"control: {control}", part, metrics, prefix=f"control/{control}/"))
    return pd.DataFrame(rows)


def best_rows(table: Table) -> dict[str, int]:
    """Index of the best model row per metric, by the metric's direction, only where its interval does
    not overlap any other model row's interval (control rows are never ranked; no interval, no mark)."""
    best = {}
    models = table.frame[~table.frame["control"].astype(bool)]
    for m in table.metrics:
        col = models[m].dropna()
        if col.empty or direction(m) is None:  # a column without a direction has no best
            continue
        i = int(col.idxmin() if direction(m) == "down" else col.idxmax())
        lo, hi = models.loc[i, f"{m}_ci_low"], models.loc[i, f"{m}_ci_high"]
        others = models.drop(index=i)
        others = others[others[m].notna()]
        if pd.isna(lo) or pd.isna(hi) or others[[f"{m}_ci_low", f"{m}_ci_high"]].isna().any().any():
            continue
        if ((others[f"{m}_ci_low"] > hi) | (others[f"{m}_ci_high"] < lo)).all():
            best[m] = i
    return best


def _display(table: Table, bold: tuple[str, str]) -> pd.DataFrame:
    best = best_rows(table)
    out = pd.DataFrame({"variant": table.frame["variant"], "seeds": table.frame["seeds"]})
    for m in table.metrics:
        n = table.frame[f"{m}_n"].dropna()
        src = table.frame[f"{m}_n_sources"].dropna() if f"{m}_n_sources" in table.frame else pd.Series(dtype=float)
        header = f"{m} {arrow(m)}" + (f" (N={int(n.iloc[0])}" + (f", {int(src.iloc[0])} sources" if len(src) else "")
                                      + ")" if len(n) else "")
        cells = []
        for i, row in table.frame.iterrows():
            text = with_interval(row, m, std=True)
            cells.append(f"{bold[0]}{text}{bold[1]}" if best.get(m) == i else text)
        out[header] = cells
    out["run ids"] = [("(reference row)" if c else r) for c, r in zip(table.frame["control"], table.frame["run_ids"])]
    out["commit"] = table.frame["commits"]
    return out


LEGEND = ("Each model row: mean over its runs (seeds column) with the union of the runs' 95 % intervals "
          "(bootstrap; jackknife for FID and KID) in brackets and ± the std over seeds; bold marks the best only "
          "where its interval "
          "overlaps no other model row's. Rows 'control: ...' are references on the same pairs, never "
          "ranked: copy_a outputs the structure image A, copy_b the texture image B, recon_a the model's "
          "reconstruction of A, blend the pixel blend 0.5 A + 0.5 B, code_midpoint the decoder at the midpoint of A's and "
          "B's codes (re-encoding scores), truth_flat (synthetic data) the true swap with every pattern flattened to its mean "
          "colour, thumbnail_4x each test image downsampled 4x and upsampled back (reconstruction scores).")


def render(tables: list[Table], fmt: str = "md") -> str:
    """The tables as Markdown, CSV, HTML, JSON or LaTeX (best values marked in md/html/latex)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([{"note": t.note, "omitted": t.notes, "best": best_rows(t),
                            "rows": json.loads(t.frame.to_json(orient="records"))} for t in tables], indent=1)
    if fmt == "csv":
        frames = [t.frame.assign(comparable_on=t.note) for t in tables]
        return pd.concat(frames, ignore_index=True).to_csv(index=False)
    parts = []
    for t in tables:
        if fmt == "md":
            parts.append(f"Runs with {t.note}:\n\n" + _display(t, ("**", "**")).to_markdown(index=False))
        elif fmt == "html":
            parts.append(f"<p>Runs with {t.note}:</p>\n" + _display(t, ("<b>", "</b>")).to_html(index=False, escape=False))
        else:
            parts.append(f"% runs with {t.note}\n" + _display(t, ("\\textbf{", "}")).to_latex(index=False, escape=False))
    if len(tables) > 1:
        parts.insert(0, f"{len(tables)} tables: these runs differ in settings that make their scores incomparable.")
    comment = "% " if fmt == "latex" else ""
    parts += [comment + LEGEND] + [comment + note for note in (tables[0].notes if tables else [])]
    return "\n\n".join(parts) + "\n"


def compare_runs(run_a: str, run_b: str, uri: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(settings that differ, scores side by side) of two runs."""
    from swapbench.tracking import get_run

    runs = [get_run(rid, uri) for rid in (run_a, run_b)]
    pa, pb = (migrate_flat(run.data.params) for run in runs)  # a run logged before a rename: today's keys
    keys = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k) and k not in ("name", "description"))
    settings = pd.DataFrame({"setting": keys, run_a[:8]: [pa.get(k, "-") for k in keys],
                             run_b[:8]: [pb.get(k, "-") for k in keys]})
    ma, mb = runs[0].data.metrics, runs[1].data.metrics
    names = sorted(m for m in set(ma) | set(mb) if direction(m))
    scores = pd.DataFrame({"score": names, run_a[:8]: [ma.get(m) for m in names], run_b[:8]: [mb.get(m) for m in names]})
    return settings, scores
