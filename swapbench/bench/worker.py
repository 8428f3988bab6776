"""One process of a torchrun scaling row: ``python -m torch.distributed.run --nproc_per_node N -m
swapbench.bench.worker JOB_JSON``. Every process trains its share of each batch (gradients averaged
as in ``swapbench run`` under torchrun) and all stop at the same step; rank 0 writes the timing to
``job["out"]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(job_text: str) -> None:
    from swapbench.bench.training import time_steps, training_recipe
    from swapbench.recipe import BenchConfig
    from swapbench.training import distributed
    from swapbench.training.trainer import build_trainer

    job = json.loads(job_text)
    settings = BenchConfig.model_validate(job["settings"])
    torch.set_num_threads(job["threads"])
    procs, device = distributed.start(torch.device("cpu"))
    try:
        recipe = training_recipe(job["recipe"], settings, device, job["threads"])
        trainer = build_trainer(recipe, device=device, rank=procs.rank, world_size=procs.world_size)
        measured = time_steps(trainer, settings, device, count=False)
        if procs.is_main:
            Path(job["out"]).write_text(json.dumps(measured))
    finally:
        distributed.finish()


if __name__ == "__main__":
    main(sys.argv[1])
