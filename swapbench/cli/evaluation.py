"""``swapbench evaluate``, ``leaderboard`` and ``compare``: scoring trained models and tabulating runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import app, csv, out, scores_table
from swapbench.errors import UserError


@app.command()
def evaluate(
    target: Annotated[str, typer.Argument(help="An MLflow run id, a checkpoint .safetensors file, or zoo:NAME (`swapbench zoo list`).")],
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated metric names (default: the recipe's).")] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the scores into the run that made the checkpoint.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    n: Annotated[Optional[int], typer.Option("--n", min=2, help="Test images and swap pairs to use (default: the recipe's).")] = None,
) -> None:
    """Score a trained model again (e.g. with metrics added since it was trained)."""
    from swapbench.experiments.pipeline import evaluate_checkpoint
    from swapbench.tracking import checkpoint_of

    names = csv(metrics)
    if metrics is not None and not names:
        raise UserError(f"--metrics '{metrics}' names no metric; give comma-separated names (`swapbench registry metric`) "
                        "or leave it out for the recipe's")
    scores, meta = evaluate_checkpoint(checkpoint_of(target), names, log_to_run=log, n=n)
    if as_json:
        print(json.dumps({"run_id": meta.get("run_id"), "scores": scores}))
    else:
        out.print(f"run {meta.get('run_id') or ('zoo:' + meta['zoo'] if meta.get('zoo') else None)}, {meta['weights']} weights")
        out.print(scores_table(f"scores of {meta['recipe']['name']}", scores))


@app.command()
def leaderboard(
    experiment: Annotated[Optional[str], typer.Option(help="Only this MLflow experiment.")] = None,
    sweep: Annotated[Optional[str], typer.Option(help="Only the runs of this sweep (its parent run id): its child runs and the finished runs it reused.")] = None,
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated scores (default: every score logged).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, csv, html, json or latex.")] = "md",
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write to this file instead of printing.")] = None,
) -> None:
    """One table per set of comparable runs: a row per variant (mean ± std over seeds), a column per score."""
    from swapbench.experiments.leaderboard import build_tables, load_runs, render
    from swapbench.outputs import writable_file

    if out_file is not None:
        writable_file(out_file, "--out")
    text = render(build_tables(load_runs(experiment, sweep), csv(metrics)), fmt)
    if out_file is None:
        print(text, end="")
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text)
        out.print(f"wrote {out_file}")


@app.command()
def compare(run_a: str, run_b: str) -> None:
    """What differs between two runs' resolved recipes, and their scores side by side."""
    from swapbench.experiments.leaderboard import compare_runs

    settings, scores = compare_runs(run_a, run_b)
    print("settings that differ:\n" + (settings.to_markdown(index=False) if len(settings) else "(none)"))
    print("\nscores:\n" + (scores.to_markdown(index=False) if len(scores) else "(none)"))
