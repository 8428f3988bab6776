"""``swapbench sweep``: every variant x seed of a sweep file as child runs of one MLflow parent run."""

from __future__ import annotations

from typing import Annotated

import typer

from swapbench.cli.common import MAX_PROCESSES, app, out


@app.command()
def sweep(
    file: Annotated[str, typer.Argument(help="Sweep YAML file, or a name from recipes/sweeps/.")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=MAX_PROCESSES, help="Worker processes; each gets (usable cores) / jobs torch threads, usable cores being the process's CPU affinity (taskset).")] = 1,
    ray: Annotated[str | None, typer.Option("--ray", metavar="ADDRESS", help="Run every pending run as a task on the Ray cluster at ADDRESS (HEAD:6379, or auto); each asks for train.threads CPUs (1 if unset) and a GPU for device cuda. Needs the ray extra (pip install -e \".\\[ray]\"), an MLflow server every node reaches and tracking.checkpoint_dir on shared storage; see docs/distributed.md.")] = None,
) -> None:
    """Run every variant x seed of a sweep as child runs of one MLflow parent run; a run that already finished in the
    experiment (same variant, seed and recipe hash) is skipped and counted as the sweep's own."""
    from swapbench.experiments.sweep import run_sweep

    parent, children, skipped = run_sweep(file, jobs, echo=out.print, ray_address=ray)
    out.print(f"sweep parent run {parent}: {len(children)} run now, {len(skipped)} skipped as finished; "
              f"`swapbench leaderboard --sweep {parent}` tabulates it")
