"""Training rows: images/s of full training steps through the real trainer, their FLOPs counted over
exactly the timed steps, against the machine's limits measured just before; and the torchrun rows.

The timed window starts with a lazy-R1 step (the trainer's step counter is moved to a multiple of
``loss.r1_interval``; it only decides when R1 runs) and covers one whole interval unless
``train_steps`` or ``train_seconds`` cut it short. One R1 interval then costs
``R1 step + (interval - 1) x mean plain step`` (the exact wall time of the interval when the window
covered it), and images/s = batch x interval / that. The window's state (networks, optimisers, EMA,
RNG) is copied before it and restored after it, and the same steps on the same batches run again
under the FLOP counter: the count is of exactly the timed work. A family with a second lazy
regulariser on another interval (StyleGAN2's path length) is averaged exactly only by a window that
covers the whole R1 interval.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from swapbench.bench.machine import PeakMemory, count_flops, peak_flops, rss_bytes, synchronize
from swapbench.recipe import BenchConfig, Recipe, load_recipe

TRAIN_COLUMNS = ("recipe", "device", "batch", "resolution", "r1_interval", "steps_timed", "images_per_second",
                 "seconds_plain_step", "seconds_r1_step", "gflop_per_image", "achieved_gflops", "conv_peak_gflops",
                 "matmul_peak_gflops", "of_conv_peak", "of_matmul_peak", "peak_memory_mib",
                 "memory_above_start_mib", "note")
PROFILE_COLUMNS = ("recipe", "rank", "operator", "calls_per_step", "self_ms_per_step", "share_of_step")
SCALING_COLUMNS = ("recipe", "processes", "threads_per_process", "batch", "steps_timed", "images_per_second",
                   "vs_one_process", "note")


# Datasets that read the user's images (data.root); a recipe of theirs with no root is measured on the
# shipped photo crops at its own resolution (which make their own square crops), and its row says so.
NEEDS_ROOT = ("folder", "lmdb")
STAND_IN_DATASET = "photos"


def bench_recipe(name: str, overrides: list[str]) -> Recipe:
    """``name`` with ``overrides``; a recipe whose dataset needs a data.root it lacks reads the shipped
    photo crops instead (a step or a score costs the same whatever the images)."""
    own = load_recipe(name)
    if own.data.dataset in NEEDS_ROOT and own.data.root is None:
        overrides = [*overrides, f"data.dataset={STAND_IN_DATASET}", "data.preprocess=square"]
    return load_recipe(name, overrides)


def training_recipe(name: str, settings: BenchConfig, device: torch.device, threads: int) -> Recipe:
    """The recipe as benchmarked: on ``device`` at the bench's thread count; on the CPU a recipe of
    256 px or more trains at ``cpu_batch_at_256`` (noted in its row)."""
    overrides = [f"device={device.type}", f"train.threads={threads}"]
    recipe = bench_recipe(name, overrides)
    if device.type == "cpu" and recipe.data.resolution >= 256 and recipe.train.batch_size > settings.cpu_batch_at_256:
        recipe = bench_recipe(name, [*overrides, f"train.batch_size={settings.cpu_batch_at_256}"])
    return recipe


def r1_interval(trainer) -> int:
    """The interval of the trainer's lazy R1, 1 when it has none."""
    r1 = trainer.regularizers().get("r1")
    return r1.interval if r1 is not None else 1


def warmed_up(trainer, settings: BenchConfig, steps: int) -> list:
    """Draw the warm-up and ``steps`` more batches from the trainer's loader, put its networks in training
    mode and run the warm-up steps; the ``steps`` batches still to run."""
    batches_iter = iter(trainer.loader())
    batches = [next(batches_iter) for _ in range(settings.warmup_steps + steps)]
    for net in trainer.networks().values():
        net.train()
    for batch in batches[: settings.warmup_steps]:
        trainer.train_step(batch)
    return batches[settings.warmup_steps :]


def time_steps(trainer, settings: BenchConfig, device: torch.device, *, count: bool = True,
               memory_baseline: int | None = None) -> dict[str, Any]:
    """Warm up, then time a window of steps that starts with a lazy-R1 step; optionally count the FLOPs
    of exactly those steps. Under torchrun every process stops at the same step (when any has used
    up the time budget)."""
    from swapbench.training.distributed import any_process

    recipe = trainer.recipe
    interval = r1_interval(trainer)
    window = settings.train_steps or max(interval, 2)
    batches = warmed_up(trainer, settings, window)
    trainer.step = math.ceil(trainer.step / interval) * interval  # the window starts with an R1 step
    snapshot = copy.deepcopy(trainer.state_dict()) if count else None

    times, r1_flags = [], []
    with PeakMemory(device, memory_baseline) as memory:
        for batch in batches:
            r1_flags.append(trainer.step % interval == 0)
            synchronize(device)
            start = time.perf_counter()
            trainer.train_step(batch)
            synchronize(device)
            times.append(time.perf_counter() - start)
            if any_process(len(times) >= 2 and sum(times) > settings.train_seconds, device):
                break
    timed = batches[: len(times)]
    flops = None
    if count:
        trainer.load_state_dict(snapshot)
        flops = [count_flops(lambda b=b: trainer.train_step(b)) for b in timed]

    per_step = recipe.train.batch_size  # images of one step, all processes together
    r1_times = [t for t, r in zip(times, r1_flags) if r]
    plain_times = [t for t, r in zip(times, r1_flags) if not r]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    if interval > 1 and r1_times and plain_times:
        interval_seconds = mean(r1_times) + (interval - 1) * mean(plain_times)
        interval_flops = (None if flops is None else
                          mean([f for f, r in zip(flops, r1_flags) if r])
                          + (interval - 1) * mean([f for f, r in zip(flops, r1_flags) if not r]))
        images, seconds, flop_total = per_step * interval, interval_seconds, interval_flops
    else:
        images, seconds, flop_total = per_step * len(times), sum(times), None if flops is None else sum(flops)
    peak_mib, above_mib = memory.mib()
    covered = len(times) >= interval
    return {
        "batch": recipe.train.batch_size, "resolution": recipe.data.resolution,
        "r1_interval": interval if interval > 1 else None, "steps_timed": len(times),
        "images_per_second": images / seconds,
        "seconds_plain_step": mean(plain_times), "seconds_r1_step": mean(r1_times),
        # flops are counted in this process: its share of the batch
        "gflop_per_image": None if flop_total is None else flop_total / (images / trainer.world_size) / 1e9,
        "peak_memory_mib": peak_mib, "memory_above_start_mib": above_mib,
        "interval_covered": covered,
    }


def train_row(name: str, settings: BenchConfig, device: torch.device, threads: int) -> dict[str, Any]:
    """One training row: the machine's limits, then the recipe's step timed and counted."""
    from swapbench.trackers import Tracker
    from swapbench.training.trainer import build_trainer

    recipe = training_recipe(name, settings, device, threads)
    baseline = rss_bytes() if device.type == "cpu" else None
    trainer = build_trainer(recipe, device=device, tracker=Tracker())
    torch.set_num_threads(threads)  # a recipe's train.threads was set to this; keep it so in any case
    peaks = peak_flops(device, settings.peak_repeats)  # just before the window, at the same thread count
    measured = time_steps(trainer, settings, device, memory_baseline=baseline)
    del trainer
    achieved = None if measured["gflop_per_image"] is None else measured["gflop_per_image"] * measured["images_per_second"]
    notes = []
    own = load_recipe(name)
    if recipe.train.batch_size != own.train.batch_size:
        notes.append(f"batch {recipe.train.batch_size} instead of the recipe's {own.train.batch_size} on the CPU")
    if recipe.data.dataset != own.data.dataset:
        notes.append(f"{recipe.data.dataset} crops in place of its {own.data.dataset} dataset (no data.root)")
    if measured["r1_interval"] and not measured["interval_covered"]:
        notes.append(f"{measured['steps_timed']} of {measured['r1_interval']} steps timed; "
                     "interval = R1 step + (interval - 1) x mean plain step")
    row = {
        "recipe": name, "device": str(device), **measured,
        "achieved_gflops": achieved, "conv_peak_gflops": peaks["conv_gflops"], "matmul_peak_gflops": peaks["matmul_gflops"],
        "of_conv_peak": None if achieved is None else achieved / peaks["conv_gflops"],
        "of_matmul_peak": None if achieved is None else achieved / peaks["matmul_gflops"],
        "note": "; ".join(notes),
    }
    return {c: row.get(c) for c in TRAIN_COLUMNS}


def profile_rows(name: str, settings: BenchConfig, threads: int) -> list[dict[str, Any]]:
    """The ``profile_top`` operators of the recipe's CPU training step by self CPU time, over
    ``profile_steps`` steps after the warm-up (torch.profiler), per step."""
    from torch.profiler import ProfilerActivity, profile

    from swapbench.trackers import Tracker
    from swapbench.training.trainer import build_trainer

    recipe = training_recipe(name, settings, torch.device("cpu"), threads)
    trainer = build_trainer(recipe, device=torch.device("cpu"), tracker=Tracker())
    torch.set_num_threads(threads)
    batches = warmed_up(trainer, settings, settings.profile_steps)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            trainer.train_step(batch)
    wall_us = (time.perf_counter() - start) * 1e6
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[: settings.profile_top]
    steps = settings.profile_steps
    return [{"recipe": name, "rank": rank, "operator": e.key, "calls_per_step": e.count / steps,
             "self_ms_per_step": e.self_cpu_time_total / steps / 1e3, "share_of_step": e.self_cpu_time_total / wall_us}
            for rank, e in enumerate(events, 1)]


def missing_row(columns: tuple[str, ...], note: str, **known: Any) -> dict[str, Any]:
    """A row that could not be measured: every column present, the reason in 'note'."""
    return {**{c: None for c in columns}, **known, "note": note}


def cuda_row(settings: BenchConfig, threads: int) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return missing_row(TRAIN_COLUMNS, "no CUDA device", recipe=settings.cuda_recipe, device="cuda")
    return train_row(settings.cuda_recipe, settings, torch.device("cuda"), threads)


def scaling_rows(settings: BenchConfig, threads: int) -> list[dict[str, Any]]:
    """Training images/s of ``scaling_recipe`` in 1, 2, ... processes under torchrun (gloo on the CPU),
    the same cores shared out: each process gets threads // processes threads."""
    rows = []
    for n in settings.scaling_processes:
        per_process = max(1, threads // n)
        job = {"recipe": settings.scaling_recipe, "threads": per_process, "settings": settings.model_dump()}
        with tempfile.TemporaryDirectory() as tmp:
            job["out"] = str(Path(tmp) / "row.json")
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                       "-m", "swapbench.bench.worker", json.dumps(job)]
            env = {**os.environ, "OMP_NUM_THREADS": str(per_process)}
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0 or not Path(job["out"]).is_file():
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                rows.append(missing_row(SCALING_COLUMNS, f"torchrun failed: {tail[0][:200]}",
                                        recipe=settings.scaling_recipe, processes=n, threads_per_process=per_process))
                continue
            measured = json.loads(Path(job["out"]).read_text())
        rows.append({"recipe": settings.scaling_recipe, "processes": n, "threads_per_process": per_process,
                     "batch": measured["batch"], "steps_timed": measured["steps_timed"],
                     "images_per_second": measured["images_per_second"], "vs_one_process": None,
                     "note": "" if measured["interval_covered"] or not measured["r1_interval"] else
                     f"{measured['steps_timed']} of {measured['r1_interval']} steps timed (R1 step + plain steps)"})
    one = next((r["images_per_second"] for r in rows if r["processes"] == 1 and r["images_per_second"]), None)
    for row in rows:
        if one and row["images_per_second"]:
            row["vs_one_process"] = row["images_per_second"] / one
    return rows
