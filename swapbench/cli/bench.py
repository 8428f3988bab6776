"""``swapbench bench``: what training, embedding, scoring and data loading cost on this machine
(measured in :mod:`swapbench.bench`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import MAX_PROCESSES, OldEncoderRun, OldSaeRun, OldSg2Run, app, err, out, trained_runs


@app.command("bench")
def bench(
    only: Annotated[Optional[str], typer.Option(help="Comma-separated sections: train,embed,score,data,scaling,profile (default all).")] = None,
    recipe: Annotated[Optional[list[str]], typer.Option("--recipe", help="Recipe whose training step is measured (repeatable; replaces the defaults).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the table as JSON to this file.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes, every column present (CI); not for comparing machines.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, max=MAX_PROCESSES, help="torch threads for every measurement (default: torch's).")] = None,
    run: Annotated[Optional[list[str]], typer.Option("--run", help="A trained run (MLflow run id, checkpoint or zoo:NAME; "
                                                     "repeatable, one per model family, read from its recipe): embedding "
                                                     "times its family's methods on it, scoring scores it (one run), "
                                                     "instead of fresh models.")] = None,
    score_recipe: Annotated[Optional[str], typer.Option(help="Scoring: the recipe of the fresh model scored when no --run is given (default small).")] = None,
    device: Annotated[str, typer.Option(help="cpu, or cuda: the peaks, training steps and scores measured on the GPU (with --only train,score).")] = "cpu",
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log the table to MLflow (--no-log: print and --json only, e.g. where MLflow is not installed).")] = True,
    record: Annotated[Optional[Path], typer.Option(help="Measure nothing: log this --no-log bench JSON (made on another machine) to MLflow.")] = None,
    sae_run: OldSaeRun = None,
    sg2_run: OldSg2Run = None,
    encoder_run: OldEncoderRun = None,
) -> None:
    """Measure what training, embedding, scoring and data loading cost on this machine, each next to a
    limit measured in the same process; print the table, log it to MLflow (experiment 'bench')."""
    import shlex

    from swapbench.bench import bench_settings, parse_only, render_markdown, run_bench

    if record is not None:
        from swapbench.bench import record as record_report

        recorded = record_report(record)
        print(render_markdown(recorded))
        out.print(f"logged {record} to MLflow run {recorded.run_id} (experiment 'bench')")
        return
    sections = parse_only(only)
    settings = bench_settings(quick, recipe, score_recipe)
    report = run_bench(sections, settings, quick=quick, threads=threads, json_path=json_path,
                       runs=trained_runs(run), command="swapbench " + shlex.join(sys.argv[1:]), device=device,
                       log_run=log, log=lambda text: err.print(text, markup=False, highlight=False))
    print(render_markdown(report))
    logged = f"logged to MLflow run {report.run_id} (experiment 'bench')" if log else "not logged to MLflow (--no-log)"
    out.print(logged + (f"; wrote {json_path}" if json_path else ""))
