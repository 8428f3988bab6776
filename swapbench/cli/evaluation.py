"""``swapbench evaluate``, ``leaderboard``, ``compare`` and ``archive``: scoring trained models, tabulating runs
and keeping their records."""

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
    split: Annotated[Optional[str], typer.Option(help="test, validation (scores logged as val/<score>) or both "
                                                 "(default: the recipe's eval.split).")] = None,
) -> None:
    """Score a trained model again (e.g. with metrics added since it was trained)."""
    from swapbench.experiments.pipeline import evaluate_checkpoint
    from swapbench.tracking import checkpoint_of

    names = csv(metrics)
    if metrics is not None and not names:
        raise UserError(f"--metrics '{metrics}' names no metric; give comma-separated names (`swapbench registry metric`) "
                        "or leave it out for the recipe's")
    scores, meta = evaluate_checkpoint(checkpoint_of(target), names, log_to_run=log, n=n, split=split)
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
    split: Annotated[str, typer.Option(help="The split whose scores to tabulate: test or validation (never mixed).")] = "test",
) -> None:
    """One table per set of comparable runs: a row per variant (mean ± std over seeds), a column per score."""
    from swapbench.experiments.leaderboard import build_tables, load_runs, render
    from swapbench.outputs import writable_file

    if out_file is not None:
        writable_file(out_file, "--out")
    text = render(build_tables(load_runs(experiment, sweep), csv(metrics), split=split), fmt)
    if out_file is None:
        print(text, end="")
    else:
        from swapbench.outputs import replace_text

        out_file.parent.mkdir(parents=True, exist_ok=True)
        replace_text(out_file, text)
        out.print(f"wrote {out_file}")


@app.command()
def compare(run_a: str, run_b: str) -> None:
    """What differs between two runs' resolved recipes, and their scores side by side."""
    from swapbench.experiments.leaderboard import compare_runs

    settings, scores = compare_runs(run_a, run_b)
    print("settings that differ:\n" + (settings.to_markdown(index=False) if len(settings) else "(none)"))
    print("\nscores:\n" + (scores.to_markdown(index=False) if len(scores) else "(none)"))


archive_app = typer.Typer(help="Run records (ids, tags, params, final scores) kept as JSON files beside the tables "
                          "they back, so cited run ids can be looked up after the MLflow store is gone.",
                          no_args_is_help=True)
app.add_typer(archive_app, name="archive")


@archive_app.command("write")
def archive_write(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for <experiment>.json files (e.g. results/runs).")],
    experiment: Annotated[Optional[list[str]], typer.Option(help="An MLflow experiment to archive; repeat for "
                                                            "several (default: every experiment with runs).")] = None,
    merge: Annotated[bool, typer.Option("--merge", help="Keep the runs an existing file holds that this store does "
                                        "not (an experiment run in several stores); this store's record wins.")] = False,
) -> None:
    """Write every run of the experiments (id, name, status, times, swapbench tags, params, final metrics)
    to one JSON file per experiment; an existing file is replaced by the store's current records, or with
    --merge, added to."""
    from swapbench.experiments.archive import archive
    from swapbench.outputs import writable_folder

    writable_folder(out_dir, "--out")  # created only once every experiment was read
    for path in archive(experiment, out_dir, merge=merge):
        out.print(f"wrote {path}")


@archive_app.command("show")
def archive_show(
    run_id: Annotated[str, typer.Argument(help="A run id, or its first 8 or more characters.")],
    folder: Annotated[Path, typer.Option("--dir", help="Folder of archive files.")] = Path("results/runs"),
) -> None:
    """An archived run: its experiment, name, code, status and times, then its scores with intervals."""
    from swapbench.experiments.archive import find_run
    from swapbench.experiments.leaderboard import NOT_SCORES

    if not folder.is_dir():
        raise UserError(f"no archive folder {folder}; give --dir, or write one with `swapbench archive write --out {folder}`")
    run = find_run(run_id, folder)
    if run is None:
        raise UserError(f"no run '{run_id}' in the archive files of {folder}; `swapbench archive write` adds a store's runs")
    tags = run["tags"]
    out.print(f"run {run['run_id']} ({run['run_name']}), experiment {run['experiment']}, {run['status']}, "
              f"{run['start_time']} to {run['end_time']}")
    out.print(f"recipe {tags.get('swapbench.recipe')}, variant {tags.get('swapbench.variant')}, "
              f"trained at {tags.get('swapbench.git_commit')}, scored at {tags.get('swapbench.score_git_commit')}")
    totals = run.get("training_totals")  # records written before training_totals existed have none
    if totals:
        seconds = {"CPU minutes": totals.get("train/cpu_seconds"), "wall minutes": totals.get("train/seconds")}
        shown = [f"{s / 60:.1f} {unit}" for unit, s in seconds.items() if s is not None]
        out.print("training: " + ", ".join([*shown, f"{int(totals['parts'])} part(s)"]))
    scores = {k: v for k, v in run["metrics"].items() if not k.startswith(NOT_SCORES) and not k.endswith(("_n", "_n_sources"))}
    scores = {k: scores[k] for k in sorted(scores, key=lambda k: (k.startswith("control/"), k))}  # controls last
    out.print(scores_table("final scores", scores))


@app.command()
def claims(
    out_file: Annotated[Path, typer.Option("--out", help="The Markdown file to write (results/claims.md).")] = Path("results/claims.md"),
    runs_dir: Annotated[Path, typer.Option("--runs", help="Folder of run records (`swapbench archive write`).")] = Path("results/runs"),
    zoo_dir: Annotated[Path, typer.Option("--zoo", help="Folder of zoo models, whose manifests are records too.")] = Path("zoo"),
) -> None:
    """The paper's claims with a verdict per scale (holds / does not hold / inconclusive, and why), numbers with
    intervals, controls, run ids and commits, from the committed run records alone."""
    from swapbench.experiments.claims import write_claims
    from swapbench.outputs import writable_file

    if not runs_dir.is_dir():
        raise UserError(f"no run-record folder {runs_dir}; give --runs, or write one with `swapbench archive write --out {runs_dir}`")
    writable_file(out_file, "--out")
    write_claims(out_file, runs_dir, zoo_dir)
    out.print(f"wrote {out_file}")
