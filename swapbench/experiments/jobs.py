"""One run of a sweep (a variant of a recipe at one seed) and how a worker trains it, in a process of
the sweep's pool (swapbench.experiments.sweep) or as a task on a Ray cluster (swapbench.experiments.ray_sweep)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swapbench.recipe import Recipe

SWEEP_KEY_TAG = "swapbench.sweep_key"  # on a child run: its job's key (variant, seed, recipe hash)


@dataclass
class Job:
    variant: str
    seed: int
    overrides: list[str]
    recipe: Recipe
    key: str
    resume: str | None = None  # the id of this job's interrupted run, continued instead of starting anew


def job_recipe(job: Job, experiment: str | None = None, **tracking: Any) -> Recipe:
    """The recipe a sweep's run trains: the job's, logging to the sweep's ``experiment`` (and with other
    ``tracking`` settings, e.g. an absolute checkpoint folder on a cluster)."""
    tracking = {**tracking, **({"experiment": experiment} if experiment is not None else {})}
    return job.recipe.model_validate({**job.recipe.to_dict(), "tracking": {**job.recipe.tracking.model_dump(), **tracking}})


def train_job(job: Job, experiment: str, parent: str, threads: int | None, tags: dict[str, str] | None = None) -> str:
    """Train and score ``job`` in a new child run of ``parent``, or continue its interrupted run
    (``job.resume``) from that run's last checkpoint; the run id."""
    from swapbench.experiments.pipeline import resume_run, train_and_evaluate

    if threads:
        import torch

        torch.set_num_threads(threads)
    if job.resume is not None:
        return resume_run(job.resume, progress=False).run_id
    tags = {"mlflow.parentRunId": parent, "swapbench.variant": job.variant, SWEEP_KEY_TAG: job.key,
            "swapbench.seed": str(job.seed), "swapbench.overrides": " ".join(job.overrides), **(tags or {})}
    return train_and_evaluate(job_recipe(job, experiment), progress=False, tags=tags).run_id
