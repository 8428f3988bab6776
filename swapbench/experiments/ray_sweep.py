"""Sweeps on a Ray cluster: ``swapbench sweep FILE --ray ADDRESS`` (docs/distributed.md).

Every pending run of the sweep becomes one Ray task that asks for the resources its recipe needs
(``train.threads`` CPUs, default 1; one GPU for ``device: cuda``, or ``auto`` on a cluster that has GPUs),
and Ray places the tasks on whatever nodes the cluster has. The runs are child runs of the sweep's
parent run, exactly as with ``--jobs``, so the leaderboard reads a Ray sweep like a local one.

Before anything is submitted the cluster is checked:

- the MLflow store must be one every node reaches: a sqlite file or a file store on this machine's disk
  is refused for a cluster of more than one node, and so is a server on this machine's loopback address
  when the nodes are on other machines;
- ``tracking.checkpoint_dir`` (made absolute here) must be one folder that every node reads and writes:
  a marker file written here must be readable on every node, and each node's marker readable here.
  Checkpoints and each run's tracking journal live there, which is what lets a run continue on another node.

A lost worker loses nothing. A task whose process (or node) dies is retried by Ray, up to
:data:`MAX_RETRIES` times; the retry finds the run its first attempt opened (the tag
``swapbench.ray_task``, unique to the submission), and continues it as ``swapbench resume --force``
does: from the run's last checkpoint, in the same MLflow run, logging no step twice. An attempt that died
before its first checkpoint starts that run over (training is deterministic; the steps it logged are not
logged again). A run that fails with an error is not retried: Ray retries only dead processes
(``retry_exceptions=False``), and a user error (a bad data folder on that node, say) comes back as a
value, reported in one line once every task has ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from swapbench.errors import UserError
from swapbench.experiments.jobs import Job, job_recipe, train_job

RAY_TASK_TAG = "swapbench.ray_task"  # on a child run: the Ray submission it belongs to (a retry finds it by this)
MAX_RETRIES = 3  # attempts after the first when a task's worker process or node dies
PROBE_SECONDS = 120.0  # how long the submit-time check may wait for every node to answer
MARKER = ".swapbench-shared-"


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError('--ray needs the Ray package on this machine and every node: pip install -e ".[ray]" '
                        "(or pip install ray); without a cluster, use --jobs N") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address that refuses connections is a one-line error in seconds (Ray's own client
    waits about a minute first)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", ray://...: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address} ({exc.strerror or type(exc).__name__}); start its head "
                        "(`ray start --head --port 6379`) and pass HEAD_ADDRESS:6379, or use --jobs N on this machine") from None


def connect(address: str) -> list[dict[str, Any]]:
    """Join the Ray cluster at ``address`` as its driver; returns its alive nodes."""
    import logging

    ray = import_ray()
    _reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0][:200]}); "
                        "check the address `ray start --head` printed") from None
    return [n for n in ray.nodes() if n.get("Alive")]


LOCAL_STORES = ("sqlite:", "file:")
LOOPBACK = ("127.", "localhost", "[::1]", "::1")


def check_store(uri: str, nodes: list[dict[str, Any]]) -> None:
    """Refuse a tracking store that some of the cluster's nodes cannot reach."""
    from swapbench.store import scrub

    local = uri.startswith(LOCAL_STORES) or "://" not in uri
    if local and len(nodes) > 1:
        raise UserError(f"the MLflow store {scrub(uri)} is a file on this machine's disk, which the other nodes of this "
                        f"{len(nodes)}-node Ray cluster cannot write; run `mlflow server` on an ADDRESS every node "
                        "reaches (docs/distributed.md) and set MLFLOW_TRACKING_URI=http://ADDRESS:5000")
    hosts = {n.get("NodeManagerAddress") for n in nodes}
    server = uri.split("://", 1)[-1].split("@")[-1].split("/")[0]
    if not local and server.startswith(LOOPBACK) and len(hosts) > 1:  # nodes on several machines
        raise UserError(f"the MLflow server {scrub(uri)} is on a loopback address, which the cluster's nodes "
                        f"({', '.join(sorted(map(str, hosts)))}) do not reach; serve it on an address they reach "
                        "(docs/distributed.md) and set MLFLOW_TRACKING_URI to it")


def resources(recipe, cluster_gpus: float) -> dict[str, float]:
    """What one run's task asks Ray for: train.threads CPUs (1 when unset) and one GPU where it trains on CUDA."""
    gpu = recipe.device == "cuda" or (recipe.device == "auto" and cluster_gpus > 0)
    return {"num_cpus": recipe.train.threads or 1, "num_gpus": 1 if gpu else 0}


def check_fits(jobs: list[Job], nodes: list[dict[str, Any]]) -> None:
    """Every run's request fits on some node (else Ray would wait for such a node for ever)."""
    gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
    for job in jobs:
        need = resources(job.recipe, gpus)
        if not any(n["Resources"].get("CPU", 0) >= need["num_cpus"] and n["Resources"].get("GPU", 0) >= need["num_gpus"]
                   for n in nodes):
            gpu = " and 1 GPU" if need["num_gpus"] else ""
            raise UserError(f"run {job.variant} seed {job.seed} asks for {need['num_cpus']:g} CPUs{gpu} (train.threads, "
                            "device), which no node of the Ray cluster has; lower train.threads, set device=cpu, or add "
                            "such a node")


def _probe(folders: list[str], token: str) -> list[str]:
    """On one node: can it read the driver's marker in each folder, and write its own there?"""
    import ray

    node = ray.get_runtime_context().get_node_id()
    problems = []
    for folder in folders:
        marker = Path(folder) / f"{MARKER}{token}"
        try:
            if marker.read_text() != token:
                raise OSError("marker differs")
            (Path(folder) / f"{MARKER}{token}.{node}").write_text(node)
        except OSError as exc:
            problems.append(f"{folder} ({exc.strerror or exc})")
    return problems


def check_shared(folders: set[Path], nodes: list[dict[str, Any]]) -> None:
    """Each folder is one storage that every node reads and writes (checked with marker files)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from swapbench.outputs import writable_folder

    token = uuid.uuid4().hex
    created = [f for f in folders if not f.exists()]
    problems: list[str] = []
    for folder in folders:
        writable_folder(str(folder), "tracking.checkpoint_dir", keep=True)
        (folder / f"{MARKER}{token}").write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(sorted(map(str, folders)), token) for n in nodes}
        done, waiting = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_SECONDS)
        address = {n["NodeID"]: n["NodeManagerAddress"] for n in nodes}
        for node, ref in refs.items():
            if ref in waiting:
                problems.append(f"node {address[node]} did not answer within {PROBE_SECONDS:g} s")
                continue
            problems += [f"node {address[node]} cannot use {p}" for p in ray.get(ref)]
            problems += [f"node {address[node]}'s file in {f} is not seen here" for f in folders
                         if not (f / f"{MARKER}{token}.{node}").is_file() and not any(str(f) in p for p in problems)]
    finally:
        for folder in folders:
            for marker in folder.glob(f"{MARKER}{token}*"):
                marker.unlink(missing_ok=True)
        for folder in created if problems else ():  # a refused sweep leaves nothing behind
            with contextlib.suppress(OSError):
                folder.rmdir()
    if problems:
        raise UserError(f"tracking.checkpoint_dir must be one folder every node reads and writes (a run retried on another "
                        f"node continues from its checkpoint there), but {'; '.join(problems[:3])}; put it on shared "
                        "storage mounted at the same path on every node: start the sweep from a folder there, or give "
                        "the sweep file set: [tracking.checkpoint_dir=/shared/checkpoints]")


@dataclasses.dataclass(frozen=True)
class UserFailure:
    """A run that failed for a user error: returned by its task, not raised, so that Ray never retries it."""

    message: str


def _ray_run(job: Job, experiment: str, parent: str, submission: str, threads: int, cwd: str,
             uri: str) -> str | UserFailure:
    """One sweep run as a Ray task (first attempt or a retry after its worker died), logging to ``uri``
    (the store the sweep's driver uses; a node's own environment may name none)."""
    from swapbench.tracking import connect as connect_store

    os.environ["MLFLOW_TRACKING_URI"] = uri
    if os.path.isdir(cwd):  # the sweep's own folder, where it is shared: relative paths mean what they mean there
        os.chdir(cwd)
    try:
        recipe = job_recipe(job, experiment)
        earlier = _earlier_attempt(uri, connect_store(uri, experiment), submission)
        if earlier is None:
            return train_job(job, experiment, parent, threads, {RAY_TASK_TAG: submission})
        return _continue(recipe, earlier, threads)
    except UserError as exc:
        return UserFailure(str(exc))


def _earlier_attempt(uri: str, experiment_id: str, submission: str):
    import mlflow

    runs = mlflow.MlflowClient(uri).search_runs([experiment_id], f"tags.`{RAY_TASK_TAG}` = '{submission}'")
    return runs[0] if runs else None


def _continue(recipe, run, threads: int) -> str:
    """A retry: continue the run the dead attempt opened, from its last checkpoint (or from the start)."""
    import torch

    from swapbench.experiments.pipeline import resume_run, train_and_evaluate
    from swapbench.tracking import local_checkpoint

    run_id = run.info.run_id
    if run.info.status == "FINISHED":  # the worker died after the run ended, before its answer came back
        return run_id
    torch.set_num_threads(threads)
    checkpoint = local_checkpoint(recipe.tracking.checkpoint_dir, run_id)
    if checkpoint.is_file():
        return resume_run(run_id, checkpoint, progress=False, force=True).run_id
    return train_and_evaluate(recipe, progress=False, run_id=run_id).run_id


def on_cluster(jobs: list[Job]) -> list[Job]:
    """The jobs as the cluster runs them: relative checkpoint folders made absolute from here, so that every
    node (and a retry on another one) uses the one shared folder."""
    return [dataclasses.replace(job, recipe=job_recipe(
        job, checkpoint_dir=str(Path(job.recipe.tracking.checkpoint_dir).resolve()))) for job in jobs]


def join_cluster(address: str, uri: str, jobs: list[Job]) -> list[dict[str, Any]]:
    """Join the cluster and check it can run ``jobs`` (store, resources, shared checkpoints) before any run
    or parent run exists; returns its alive nodes. The caller ends with ``ray.shutdown()``."""
    nodes = connect(address)
    check_store(uri, nodes)
    check_fits(jobs, nodes)
    check_shared({Path(job.recipe.tracking.checkpoint_dir) for job in on_cluster(jobs)}, nodes)
    return nodes


def run_on_ray(todo: list[Job], experiment: str, parent: str, nodes: list[dict[str, Any]], address: str, uri: str,
               echo=print) -> list[str]:
    """Run ``todo`` as Ray tasks on the cluster joined by :func:`join_cluster`; returns the child run ids."""
    ray = import_ray()
    todo = on_cluster(todo)
    gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
    cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
    folders = sorted({job.recipe.tracking.checkpoint_dir for job in todo})
    echo(f"  Ray cluster {address}: {len(nodes)} nodes, {cpus:g} CPUs, {gpus:g} GPUs; checkpoints in "
         f"{', '.join(folders)} (checked: every node reads and writes it)")
    task = ray.remote(_ray_run)
    refs = {}
    for job in todo:
        need = resources(job.recipe, gpus)
        ref = task.options(name=f"swapbench {job.variant} seed {job.seed} {job.key}", max_retries=MAX_RETRIES,
                           retry_exceptions=False, **need).remote(
            job, experiment, parent, uuid.uuid4().hex, int(need["num_cpus"]), os.getcwd(), uri)
        refs[ref] = job
    return _collect(ray, refs, echo)


def _collect(ray, refs: dict, echo) -> list[str]:
    """Wait for every task; report each as it ends. Failures are raised once all have ended."""
    children, failures, bug = [], [], None
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            job = refs[done[0]]
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # an error that is not the user's: keep its traceback
                bug = bug or exc
                result = UserFailure(f"{type(exc.cause).__name__}: {str(exc.cause).splitlines()[0][:300]}"
                                     if exc.cause is not None else str(exc).splitlines()[0])
            except ray.exceptions.RayError as exc:  # its worker or node died more than MAX_RETRIES + 1 times
                result = UserFailure(f"lost after {MAX_RETRIES + 1} attempts ({type(exc).__name__})")
            if isinstance(result, UserFailure):
                failures.append(f"{job.variant} seed {job.seed}: {result.message}")
                echo(f"  {job.variant} seed {job.seed}: failed: {result.message}")
            else:
                children.append(result)
                echo(f"  {job.variant} seed {job.seed}: run {result} finished")
    except KeyboardInterrupt:  # the driver is stopped: so are the sweep's tasks (their runs end KILLED)
        for ref in pending:
            ray.cancel(ref)
        raise
    if bug is not None:
        raise bug
    if failures:
        raise UserError(f"{len(failures)} of {len(refs)} runs of the sweep failed ({'; '.join(failures[:3])}); fix that "
                        "and run the sweep again: its finished runs are skipped")
    return children
