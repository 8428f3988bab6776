"""Leaderboard tables from what MLflow holds: one row per variant, one column per score.

Rows are FINISHED runs grouped by variant (the ``swapbench.variant`` tag a sweep sets, else the
recipe name); several seeds of a variant become mean ± std. Runs whose scores are not comparable
(different dataset, resolution, N or score network) are never mixed: they go into separate tables,
each with a note saying what they share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from swapbench.errors import UserError
from swapbench.metrics import direction

# the settings that must be equal for two rows' scores to be comparable
COMPARABLE_ON = ("params.data.dataset", "params.data.resolution", "params.data.test_images",
                 "params.eval.swap_pairs", "params.score.inception_sha256")
FORMATS = ("md", "csv", "html", "json", "latex")


@dataclass
class Table:
    note: str  # what every row of this table shares
    frame: pd.DataFrame  # numeric: variant, runs, seeds, <metric>, <metric>_std, <metric>_n, run_ids, commits
    metrics: list[str]


def load_runs(experiment: str | None = None, sweep: str | None = None, uri: str | None = None) -> pd.DataFrame:
    """FINISHED runs of an experiment, of a sweep (children of a parent run), or of every experiment."""
    import mlflow

    from swapbench.tracking import tracking_uri, use_store

    use_store(uri or tracking_uri())  # an unreachable server is a one-line error, not minutes of retries
    kwargs: dict = {"filter_string": "attributes.status = 'FINISHED'"}
    if sweep:
        kwargs.update(search_all_experiments=True,
                      filter_string=f"attributes.status = 'FINISHED' and tags.mlflow.parentRunId = '{sweep}'")
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
    if df.empty:
        raise UserError("no finished runs to tabulate; run a recipe first or check --experiment / --sweep")
    return df


def score_columns(df: pd.DataFrame, metrics: list[str] | None = None) -> list[str]:
    available = [c[len("metrics."):] for c in df.columns if c.startswith("metrics.")]
    if metrics:
        missing = [m for m in metrics if m not in available]
        if missing:
            raise UserError(f"no run logged {', '.join(missing)}; logged scores: "
                            f"{', '.join(sorted(m for m in available if direction(m)))}")
        return list(metrics)
    return sorted(m for m in available if direction(m))


def build_tables(df: pd.DataFrame, metrics: list[str] | None = None) -> list[Table]:
    metrics = score_columns(df, metrics)
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
        tables.append(Table(note, _aggregate(part, metrics), metrics))
    return tables


def _aggregate(part: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    rows = []
    for variant, runs in part.groupby("variant", sort=True):
        row = {"variant": variant, "runs": len(runs)}
        for m in metrics:
            values = runs[f"metrics.{m}"].dropna()
            row[m] = values.mean() if len(values) else float("nan")
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
            n_col = f"metrics.{m}_n"
            row[f"{m}_n"] = int(runs[n_col].dropna().iloc[0]) if n_col in runs and runs[n_col].notna().any() else None
        row["run_ids"] = " ".join(runs["run_id"])
        commits = runs.get("tags.swapbench.git_commit", pd.Series(dtype=str)).dropna()
        row["commits"] = " ".join(sorted({c[:12] for c in commits}))
        rows.append(row)
    return pd.DataFrame(rows)


def best_rows(table: Table) -> dict[str, int]:
    """Index of the best row per metric, by the metric's direction."""
    best = {}
    for m in table.metrics:
        col = table.frame[m]
        if col.notna().any():
            best[m] = int(col.idxmin() if direction(m) == "down" else col.idxmax())
    return best


def _display(table: Table, bold: tuple[str, str]) -> pd.DataFrame:
    best = best_rows(table)
    out = pd.DataFrame({"variant": table.frame["variant"], "runs": table.frame["runs"]})
    for m in table.metrics:
        arrow = "↓" if direction(m) == "down" else "↑" if direction(m) == "up" else ""
        n = table.frame[f"{m}_n"].dropna()
        header = f"{m} {arrow}" + (f" (N={int(n.iloc[0])})" if len(n) else "")
        cells = []
        for i, row in table.frame.iterrows():
            if pd.isna(row[m]):
                cells.append("-")
                continue
            text = f"{row[m]:.4g}" + (f" ± {row[f'{m}_std']:.2g}" if pd.notna(row[f"{m}_std"]) else "")
            cells.append(f"{bold[0]}{text}{bold[1]}" if best.get(m) == i else text)
        out[header] = cells
    out["run ids"] = table.frame["run_ids"]
    out["commit"] = table.frame["commits"]
    return out


def render(tables: list[Table], fmt: str = "md") -> str:
    """The tables as Markdown, CSV, HTML, JSON or LaTeX (best values marked in md/html/latex)."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([{"note": t.note, "best": best_rows(t), "rows": json.loads(t.frame.to_json(orient="records"))}
                           for t in tables], indent=1)
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
    return "\n\n".join(parts) + "\n"


def compare_runs(run_a: str, run_b: str, uri: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(settings that differ, scores side by side) of two runs."""
    from swapbench.tracking import get_run

    runs = [get_run(rid, uri) for rid in (run_a, run_b)]
    pa, pb = runs[0].data.params, runs[1].data.params
    keys = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k) and k not in ("name", "description"))
    settings = pd.DataFrame({"setting": keys, run_a[:8]: [pa.get(k, "-") for k in keys],
                             run_b[:8]: [pb.get(k, "-") for k in keys]})
    ma, mb = runs[0].data.metrics, runs[1].data.metrics
    names = sorted(m for m in set(ma) | set(mb) if direction(m))
    scores = pd.DataFrame({"score": names, run_a[:8]: [ma.get(m) for m in names], run_b[:8]: [mb.get(m) for m in names]})
    return settings, scores
