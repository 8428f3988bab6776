"""``swapbench project`` and ``swapbench figure swaps|curve``: studies across trained runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import (
    MAX_CELL,
    MAX_IMAGES,
    MAX_ROWS,
    MAX_STEPS,
    DeviceOption,
    OldEncoderRun,
    OldSaeRun,
    OldSg2Run,
    RunsOption,
    app,
    csv,
    out,
    trained_runs,
)
from swapbench.errors import UserError

figure_app = typer.Typer(help="Figures from runs in MLflow: cross-run swaps, score-vs-setting curves.",
                         no_args_is_help=True)
app.add_typer(figure_app, name="figure")

@app.command()
def project(
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated inversion methods (`swapbench registry inversion`; "
                                                   "default: those registered with default=True).")] = None,
    n: Annotated[int, typer.Option("--n", min=2, max=MAX_IMAGES, help="Test images to invert (the same for every method).")] = 32,
    steps: Annotated[Optional[int], typer.Option(min=1, max=MAX_STEPS, help="Optimisation steps of sg2_w / sg2_wplus (default 1000).")] = None,
    run: RunsOption = None,
    device: DeviceOption = "auto",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    sae_run: OldSaeRun = None,
    sg2_run: OldSg2Run = None,
    encoder_run: OldEncoderRun = None,
) -> None:
    """Invert the same N test images with every method at batch size 1: seconds per image, reconstruction
    and swap scores, speed-up of the SAE's one pass, and the optimisers' quality-vs-steps curve."""
    from swapbench.experiments.projection import run_projection

    runs = trained_runs(run)
    chosen = None if methods is None else csv(methods) or []
    _, markdown, run_id = run_projection(chosen, n, runs, steps=steps, device=device, progress=progress)
    print(markdown, end="")
    out.print(f"logged to MLflow run {run_id} (experiment 'projection')")


@figure_app.command("swaps")
def figure_swaps(
    runs: Annotated[str, typer.Option(help="Comma-separated MLflow run ids or zoo:NAME models, one column each.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write (a .json with provenance goes beside it).")],
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_ROWS, help="Test (structure, texture) pairs, one row each.")] = 6,
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated column labels (default: each run's variant).")] = None,
    cell: Annotated[int, typer.Option(min=16, max=MAX_CELL, help="Pixels per image in the figure.")] = 128,
) -> None:
    """The same test pairs swapped by several runs side by side (the paper's qualitative ablation figure)."""
    from swapbench.experiments.figures import figure_swaps as make

    path = make(csv(runs) or [], out_file, n=n, labels=csv(labels), cell=cell)
    out.print(f"wrote {path} and {path.with_suffix('.json')}")


@figure_app.command("curve")
def figure_curve(
    x: Annotated[str, typer.Option("--x", help="Recipe setting (model.texture_dim) or logged number (train/cpu_seconds) on the x axis.")],
    metrics: Annotated[str, typer.Option(help="Comma-separated scores, one panel each.")],
    out_file: Annotated[Path, typer.Option("--out", help="PNG file to write (a .json with provenance goes beside it).")],
    sweep: Annotated[Optional[str], typer.Option(help="The runs of this sweep (its parent run id): its child runs and the finished runs it reused.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="The runs of this MLflow experiment.")] = None,
    run: Annotated[Optional[str], typer.Option(help="The scored checkpoints of this one run (--x step or images): its scores at the end of training and those `swapbench evaluate CHECKPOINT` logged at each checkpoint's step.")] = None,
) -> None:
    """Scores against a setting or a logged cost over a sweep, or over one run's scored checkpoints,
    with the copy controls drawn across (mean ± std over seeds, or each point's 95 % interval and name
    when each x has one run)."""
    from swapbench.experiments.figures import figure_curve as make

    if run and (sweep or experiment):
        raise UserError("--run draws one run's checkpoints; leave out --sweep and --experiment with it")
    path = make(out_file, x, csv(metrics) or [], experiment=experiment, sweep=sweep, run=run)
    out.print(f"wrote {path} and {path.with_suffix('.json')}")
