"""Sweeps: a base recipe, a grid (or named list) of ``--set`` overrides and seeds, run as child runs
of one MLflow parent run, skipping what already finished.

    base: swap_ae                 # recipe name or path
    description: texture code size
    set: [train.images=2000]      # applied to every variant
    seeds: [0, 1]
    grid:                         # cartesian product; each combination is a variant
      model.texture_dim: [8, 64, 256]
    variants:                     # and/or named variants
      no_cooc: [model.cooccur_discriminator=null, loss.cooccur=0, loss.patch_r1=0]

Every variant and seed is validated before the first one trains. A child run is identified by a
key over (variant, seed, resolved recipe hash); running the sweep again skips every key that has a
FINISHED run anywhere in the sweep's experiment, and continues a KILLED run of a key from its last
checkpoint in the same MLflow run (one run per model), so an interrupted sweep resumes without redoing work,
and a sweep file that gains variants (a new parent: the parent stands for one set of keys, recorded in
its tag ``swapbench.sweep_keys``) trains only the new ones and counts the finished runs as its own.

With ``--jobs N`` the runs train in N worker processes; with ``--ray ADDRESS`` they are tasks on a Ray
cluster (swapbench.experiments.ray_sweep, docs/distributed.md). Ctrl-C or ``kill`` (SIGINT or SIGTERM) of the
sweep process stops the whole sweep: no queued run starts, each running one is asked (SIGTERM) to stop at
its next step boundary with a checkpoint and ends KILLED, as does the parent run; a second signal stops
them at once. The workers ignore a terminal's Ctrl-C themselves, so that each is asked exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swapbench.errors import UserError, did_you_mean
from swapbench.experiments.jobs import SWEEP_KEY_TAG, Job, train_job
from swapbench.recipe import Seed, list_recipes, load_recipe, yaml_problem

SWEEP_KEYS_TAG = "swapbench.sweep_keys"  # on the parent: its jobs' keys, comma-separated
MAX_JOBS = 470  # keys of 16 characters and commas within MLflow's 8,000-character tag values


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="Base recipe name or path (relative paths: from the sweep file's folder).")
    description: str = Field("", description="What the sweep compares.")
    experiment: str | None = Field(None, description="MLflow experiment; null uses 'sweep-<file name>'.")
    set: list[str] = Field(default_factory=list, description="Overrides applied to every variant.")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, description="Seeds run for every variant.")
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict, description="key -> values (at least one); the cartesian product.")
    variants: dict[str, list[str]] = Field(default_factory=dict, description="name -> overrides.")


def _value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else ("null" if v is None else str(v))


def find_sweep(ref: str | Path) -> Path:
    """A sweep file by path, or by name from the shipped recipes/sweeps/ folder."""
    if Path(ref).is_file():
        return Path(ref).resolve()
    known = list_recipes(sweeps=True)
    name = str(ref).removesuffix(".yaml").removeprefix("recipes/")
    name = name if name.startswith("sweeps/") else f"sweeps/{name}"
    if name in known:
        return known[name]
    raise UserError(f"sweep '{ref}' not found{did_you_mean(name, known)}; give a path to a sweep YAML file "
                    f"or one of: {', '.join(sorted(known)) or '(none shipped)'}")


def load_sweep(path: str | Path) -> tuple[SweepFile, list[Job], Path]:
    """Parse the sweep file and resolve every job's recipe (all errors surface here)."""
    path = find_sweep(path)
    text = ""
    try:
        text = path.read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise UserError(f"sweep {path.name} must be a YAML mapping (base, set, seeds, grid, variants), "
                            f"not a {type(data).__name__}")
        spec = SweepFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"sweep {path.name}: {'.'.join(map(str, err['loc']))}: {err['msg']}; "
                        "fix the sweep file (keys: base, description, experiment, set, seeds, grid, variants)") from None
    except UnicodeDecodeError:
        raise UserError(f"sweep {path.name} is not a text file (it holds binary data); give a YAML sweep file") from None
    except yaml.YAMLError as exc:
        where, what = yaml_problem(exc, text)
        raise UserError(f"sweep {path.name}{where} is not valid YAML ({what}); fix that line") from None
    variants: dict[str, list[str]] = {}
    if spec.grid:
        keys = list(spec.grid)
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            overrides = [f"{k}={_value(v)}" for k, v in zip(keys, values)]
            variants[",".join(overrides)] = overrides
    variants.update(spec.variants)
    if not variants:
        variants = {"base": []}
    base = spec.base if Path(spec.base).is_absolute() else str(path.parent / spec.base)
    base = base if Path(base).is_file() else spec.base
    jobs = []
    for name, overrides in variants.items():
        for seed in spec.seeds:
            all_overrides = [*spec.set, *overrides, f"seed={seed}"]
            recipe = load_recipe(base, all_overrides)
            key = hashlib.sha256(json.dumps([name, seed, recipe.hash()]).encode()).hexdigest()[:16]
            jobs.append(Job(name, seed, all_overrides, recipe, key))
    if len(jobs) > MAX_JOBS:
        raise UserError(f"sweep {path.name} has {len(jobs)} runs (variants x seeds); one sweep holds at most {MAX_JOBS}: "
                        "split it into several sweep files with the same experiment")
    return spec, jobs, path


def latest_by_key(client, experiment_id: str, status: str, accept) -> dict[str, str]:
    """sweep key -> the latest run of ``experiment_id`` in ``status``, under any parent, among the runs that
    ``accept(key, run)`` takes."""
    from swapbench.tracking import every_run

    found: dict[str, str] = {}
    for run in every_run(client, experiment_id, f"attributes.status = '{status}'"):  # oldest first: the latest wins
        key = run.data.tags.get(SWEEP_KEY_TAG)
        if key is not None and accept(key, run):
            found[key] = run.info.run_id
    return found


def finished_by_key(client, experiment_id: str, keys: set[str]) -> dict[str, str]:
    """sweep key -> the latest FINISHED run of ``experiment_id`` with that key, under any parent."""
    return latest_by_key(client, experiment_id, "FINISHED", lambda key, run: key in keys)


def interrupted_by_key(client, experiment_id: str, jobs: list[Job]) -> dict[str, str]:
    """sweep key -> the latest KILLED run of ``experiment_id`` with that key whose last checkpoint is still where
    it trained it (:func:`swapbench.tracking.local_checkpoint`). Rerunning the sweep continues such a run in its
    own MLflow run (as ``swapbench resume`` would) instead of training the model again in a second run."""
    from swapbench.tracking import local_checkpoint

    folders = {j.key: j.recipe.tracking.checkpoint_dir for j in jobs}
    return latest_by_key(client, experiment_id, "KILLED", lambda key, run: key in folders
                         and local_checkpoint(folders[key], run.info.run_id).is_file())


def _experiment(spec: SweepFile, path: Path) -> str:
    return spec.experiment or f"sweep-{path.stem}"


def _run_job(job: Job, experiment: str, parent: str, threads: int | None) -> str:
    if _Worker.stopping:  # queued before the sweep was stopped: never started
        raise KeyboardInterrupt
    _Worker.in_run = True
    try:
        return train_job(job, experiment, parent, threads)
    except KeyboardInterrupt:
        _Worker.stopping = True
        raise
    finally:
        _Worker.in_run = False


class _Worker:
    """A sweep worker process's state: whether it is in a run, and whether it was asked to stop."""

    in_run = False
    stopping = False


def _init_worker() -> None:
    """Worker initialiser. A terminal's Ctrl-C reaches the whole process group, so workers ignore SIGINT:
    the sweep process alone decides and sends SIGTERM (see :func:`_stop_workers`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_asked_to_stop)


def _worker_asked_to_stop(signum, frame) -> None:
    """SIGTERM outside the training loop (which handles it itself, with a checkpoint): a run being scored
    ends KILLED as after a Ctrl-C; an idle worker only remembers not to start another run."""
    _Worker.stopping = True
    if _Worker.in_run:
        raise KeyboardInterrupt


def _stop_workers(signum, frame) -> None:
    """The sweep process's SIGINT/SIGTERM handler: ask every worker to stop at its next step boundary
    (SIGTERM, which the training loop turns into a checkpoint and a KILLED run), then stop waiting."""
    for worker in multiprocessing.active_children():
        worker.terminate()
    raise KeyboardInterrupt


def worker_threads(jobs_in_parallel: int) -> int:
    """torch threads of each sweep worker: the process's usable cores shared among the workers
    (`taskset -c 1 swapbench sweep ...` gives 1)."""
    from swapbench.runtime import usable_cores

    return max(1, usable_cores() // jobs_in_parallel)


def _run_in_workers(todo: list[Job], experiment: str, parent: str, jobs_in_parallel: int) -> list[str]:
    threads = worker_threads(jobs_in_parallel)
    in_main_thread = threading.current_thread() is threading.main_thread()  # only there can signals be caught
    sigs = (signal.SIGINT, signal.SIGTERM) if in_main_thread else ()
    previous = {sig: signal.signal(sig, _stop_workers) for sig in sigs}
    try:
        with ProcessPoolExecutor(jobs_in_parallel, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
            futures = [pool.submit(_run_job, job, experiment, parent, threads) for job in todo]
            try:
                return [f.result() for f in futures]
            except KeyboardInterrupt:  # queued runs must not start; the running ones write their checkpoints
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_sweep(path: str | Path, jobs_in_parallel: int = 1, echo=print,
              ray_address: str | None = None) -> tuple[str, list[str], list[str]]:
    """Run (or resume) a sweep; returns (parent run id, child run ids run now, keys skipped). With
    ``ray_address`` the runs are tasks on that Ray cluster (swapbench.experiments.ray_sweep)."""

    from swapbench.tracking import tracking_uri

    if ray_address is not None and jobs_in_parallel > 1:
        raise UserError("--jobs and --ray do not go together: on a Ray cluster each run is a task and the cluster's CPUs "
                        "set how many run at once; drop --jobs")
    spec, jobs, path = load_sweep(path)
    experiment = _experiment(spec, path)
    uri = tracking_uri(jobs[0].recipe)
    if ray_address is None:
        return _run_sweep(spec, jobs, path, experiment, uri, jobs_in_parallel, echo)
    from swapbench.experiments.ray_sweep import import_ray, join_cluster

    ray = import_ray()
    try:
        nodes = join_cluster(ray_address, uri, jobs)  # before a parent run (or a store) exists
        return _run_sweep(spec, jobs, path, experiment, uri, jobs_in_parallel, echo, (ray_address, nodes))
    finally:
        ray.shutdown()


def _run_sweep(spec: SweepFile, jobs: list[Job], path: Path, experiment: str, uri: str, jobs_in_parallel: int, echo,
               cluster: tuple[str, list] | None = None) -> tuple[str, list[str], list[str]]:
    import mlflow

    from swapbench.tracking import connect

    connect(uri, experiment)
    client = mlflow.MlflowClient()
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    keys = sorted(j.key for j in jobs)
    sweep_id = hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]
    parents = client.search_runs([exp_id], f"tags.swapbench.sweep_id = '{sweep_id}'")
    if parents:
        parent = parents[0].info.run_id
        client.set_tag(parent, SWEEP_KEYS_TAG, ",".join(keys))  # parents from before the tag existed
    else:
        run = client.create_run(exp_id, run_name=path.stem,
                                tags={"swapbench.sweep_id": sweep_id, "swapbench.sweep": path.stem,
                                      SWEEP_KEYS_TAG: ",".join(keys)})
        parent = run.info.run_id
        client.log_text(parent, path.read_text(), "sweep.yaml")
    done = finished_by_key(client, exp_id, set(keys))
    todo = [j for j in jobs if j.key not in done]
    skipped = [j.key for j in jobs if j.key in done]
    if cluster is None:  # on a cluster a checkpoint may lie on another node: interrupted runs start anew there
        interrupted = interrupted_by_key(client, exp_id, todo)
        todo = [dataclasses.replace(j, resume=interrupted.get(j.key)) for j in todo]
    resumed = sum(j.resume is not None for j in todo)
    echo(f"sweep {path.stem}: parent run {parent}, {len(jobs)} runs, {len(skipped)} already finished, {len(todo)} to run"
         + (f" ({resumed} of them interrupted runs, continued from their checkpoints)" if resumed else ""))
    children = []
    try:
        if cluster is not None:
            from swapbench.experiments.ray_sweep import run_on_ray

            children = run_on_ray(todo, experiment, parent, cluster[1], cluster[0], uri, echo)
        elif jobs_in_parallel <= 1:
            for job in todo:
                echo(f"  {job.variant} seed {job.seed} ..." + (f" (continuing run {job.resume})" if job.resume else ""))
                children.append(_run_job(job, experiment, parent, None))
        else:
            children = _run_in_workers(todo, experiment, parent, jobs_in_parallel)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, with one job or several: the parent ends KILLED too
        client.set_terminated(parent, "KILLED")
        raise
    except Exception:  # a run failed (or the cluster refused the sweep): so did the sweep
        client.set_terminated(parent, "FAILED")
        raise
    client.set_terminated(parent, "FINISHED")
    return parent, children, skipped
