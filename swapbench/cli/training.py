"""``swapbench run``, ``train`` and ``resume``: the commands that train (and may run under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import SetOption, app, out, scores_table


def _report(summary, title: str, resumed: bool = False) -> None:
    if summary.run_id is None:  # a torchrun process other than rank 0, which reports
        return
    out.print(summary.describe(resumed=resumed))
    if summary.scores:
        out.print(scores_table(title, summary.scores))


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe file or name (see `swapbench recipes list`).")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")] = True,
) -> None:
    """Train a recipe, then score it; everything is logged to one MLflow run."""
    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe

    r = load_recipe(recipe, set_ or [])
    _report(train_and_evaluate(r, progress=progress), f"scores of {r.name}")


@app.command()
def train(
    recipe: Annotated[str, typer.Argument(help="Recipe file or name.")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train a recipe without scoring it (`swapbench evaluate` scores it later)."""
    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe

    r = load_recipe(recipe, set_ or [])
    _report(train_and_evaluate(r, evaluate_after=False, progress=progress), f"scores of {r.name}")


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The MLflow run id of an interrupted run.")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint to continue from (default: <tracking.checkpoint_dir>/<run id>/last.safetensors).")] = None,
    evaluate_after: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Score the model when training is done, as `run` does.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Resume a run MLflow still shows as RUNNING (its process died without ending it).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Continue an interrupted run (Ctrl-C, kill, a crash) in the same MLflow run, exactly where its
    last checkpoint left it; then score it."""
    from swapbench.experiments.pipeline import resume_run

    summary = resume_run(run_id, checkpoint, evaluate_after=evaluate_after, progress=progress, force=force)
    _report(summary, f"scores of {run_id}", resumed=True)
