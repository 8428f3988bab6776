"""MLflow: the single store of results. Only rank 0 of a multi-process run writes to it.

This module opens, finds and reads runs. The store itself (checking and selecting it, retries while a
sqlite store is busy) is swapbench.store; what a run logs through (Tracker and its kinds) is
swapbench.trackers, which the trainer uses without importing this module."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from swapbench import __version__
from swapbench.checkpoint import LAST_CHECKPOINT
from swapbench.errors import UserError
from swapbench.recipe import Recipe
from swapbench.runtime import git_commit
from swapbench.store import retry_when_locked, scrub, use_store

# Tracker stays importable from here for plugins (a trainer is handed one); it lives in swapbench.trackers
from swapbench.trackers import JournalTracker, MLflowTracker, Tracker, redact

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RECIPE_ARTIFACT = "recipe.yaml"
CHECKPOINT_ARTIFACT_DIR = "checkpoint"


def tracking_uri(recipe: Recipe | None = None) -> str:
    """recipe.tracking.uri, else $MLFLOW_TRACKING_URI, else the embedded sqlite store in the cwd."""
    if recipe is not None and recipe.tracking.uri:
        return recipe.tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def connect(uri: str, experiment: str) -> str:
    """Point MLflow at ``uri`` and select (or create) ``experiment``; returns its id. A dead store is
    a user error."""
    import mlflow
    from mlflow.exceptions import MlflowException

    use_store(uri)
    client = mlflow.MlflowClient(uri)
    try:
        found = retry_when_locked(client.get_experiment_by_name, experiment)
        if found is None:
            try:
                return retry_when_locked(client.create_experiment, experiment)
            except MlflowException:  # another process created it just now
                found = retry_when_locked(client.get_experiment_by_name, experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise UserError(f"MLflow experiment '{experiment}' in {scrub(uri)} is deleted; restore it "
                            f"(`mlflow experiments restore`) or set tracking.experiment to another name")
        return found.experiment_id
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot use the MLflow tracking store {scrub(uri)} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"start the server or unset MLFLOW_TRACKING_URI to use the local sqlite store"
        ) from None


@contextlib.contextmanager
def open_run(recipe: Recipe, run_id: str | None = None, tags: dict[str, str] | None = None,
             folder: str | Path | None = None, restore_status: bool = False,
             describe: bool | None = None) -> Iterator[Tracker]:
    """Start (or, with ``run_id``, reopen) the MLflow run of ``recipe``.

    A new run gets the flattened recipe as params, the resolved recipe as ``recipe.yaml``, and tags
    with the git commit, the swapbench version and the recipe hash. Everything is journaled in
    ``folder`` (default ``<tracking.checkpoint_dir>/<run id>``, next to the checkpoint) and uploaded
    from there. The run ends FINISHED, FAILED on an exception (its reason in the tag
    ``swapbench.failure``), or KILLED on Ctrl-C; with ``restore_status`` the run's status stays as it
    was, however the reopening ends (a re-scoring neither fails a finished run nor finishes a stopped one).
    ``describe`` logs the params and ``recipe.yaml`` (default: for a new run only; the same values again
    are harmless, for a run whose first process may have died before they reached MLflow).
    """
    t = recipe.tracking
    recipe_tags = {"swapbench.recipe": recipe.name, "swapbench.recipe_hash": recipe.hash(),
                   "swapbench.variant": recipe.name}  # a sweep names its variants through ``tags``
    where = (lambda rid: Path(folder)) if folder is not None else (lambda rid: Path(t.checkpoint_dir) / rid)
    journal = lambda rid: JournalTracker(where(rid), tracking_uri(recipe), rid, t.retry_seconds, t.flush_timeout)  # noqa: E731
    all_tags = {**recipe_tags, **(tags or {})}
    # MLflow's own random names repeat here (training seeds Python's random), so every run of a seed would share one
    name = t.run_name or f"{all_tags['swapbench.variant']}-seed{recipe.seed}"
    with _run(tracking_uri(recipe), t.experiment or recipe.name, run_id, None if run_id else name,
              all_tags, journal, restore_status) as tracker:
        if describe or (describe is None and run_id is None):
            tracker.log_params(recipe.flat())
            tracker.log_text(recipe.to_yaml(), RECIPE_ARTIFACT)
        yield tracker


@contextlib.contextmanager
def open_tool_run(experiment: str, tags: dict[str, str] | None = None,
                  uri: str | None = None) -> Iterator[Tracker]:
    """A new run for a command that is not a recipe (e.g. ``swapbench project``), tagged like one."""
    uri = uri or tracking_uri()
    with _run(uri, experiment, None, None, tags or {}, lambda rid: MLflowTracker(rid, uri)) as tracker:
        yield tracker


@contextlib.contextmanager
def _run(uri: str, experiment: str, run_id: str | None, run_name: str | None, tags: dict[str, str],
         make_tracker, restore_status: bool = False) -> Iterator[Tracker]:
    """Open a run; it ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C."""
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    experiment_id = connect(uri, experiment)
    client = mlflow.MlflowClient(uri)
    if run_id is None:
        all_tags = resolve_tags({"swapbench.git_commit": git_commit(), "swapbench.version": __version__, **tags})
        run = retry_when_locked(client.create_run, experiment_id, run_name=run_name, tags=redact(all_tags))
        run_id, previous = run.info.run_id, None
    else:
        previous = retry_when_locked(client.get_run, run_id).info.status
        retry_when_locked(client.update_run, run_id, "RUNNING")
    try:
        tracker = make_tracker(run_id)
    except BaseException:
        retry_when_locked(client.update_run, run_id, previous or "FAILED")
        raise
    status = "FINISHED"
    try:
        yield tracker
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as exc:
        status = "FAILED"
        if not restore_status:  # a failed re-scoring says nothing about the run
            reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            tracker.set_tags({"swapbench.failure": reason[:4000]})
        raise
    finally:
        if restore_status and previous is not None:  # scoring again says nothing about how training ended
            status = previous
        tracker.end(status)


# Numbers a run logs once per part of training (a part ends at the end of training or when it is stopped;
# ``swapbench resume`` starts the next): the latest value covers only the last part, their sum the whole run.
PER_PART_METRICS = ("train/seconds", "train/cpu_seconds")


def training_totals(client, run_id: str) -> dict[str, float] | None:
    """The whole run's :data:`PER_PART_METRICS` (sums over its training parts) and ``parts``, the number of
    parts; None for a run that logged none of them (one that only scored)."""
    histories = {key: client.get_metric_history(run_id, key) for key in PER_PART_METRICS}
    totals: dict[str, float] = {key: float(sum(m.value for m in h)) for key, h in histories.items() if h}
    if not totals:
        return None
    return {"parts": max(len(h) for h in histories.values()), **totals}


def every_run(client, experiment_id: str, filter_string: str = "") -> Iterator:
    """Every run of ``experiment_id`` matching ``filter_string``, oldest first, page after page (an
    experiment may hold more runs than one search returns)."""
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000,
                                  order_by=["attributes.start_time ASC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def get_run(run_id: str, uri: str | None = None):
    """The MLflow run ``run_id`` (tags, params, metrics); a missing run is a user error."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from swapbench.store import sqlite_path

    uri = uri or tracking_uri()
    store = sqlite_path(uri)
    if store is not None and not store.exists():
        raise UserError(f"no MLflow run '{run_id}': there is no MLflow store {store} here; run this from the folder "
                        "the run was started in, or point MLFLOW_TRACKING_URI at the store that holds it")
    uri = use_store(uri, create=False)
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run '{run_id}' in {uri}; check the id with `mlflow ui` or set MLFLOW_TRACKING_URI") from None


def checkpoint_of(target: str) -> Path:
    """A checkpoint file from a path, ``zoo:NAME`` (a reference model, hash-checked; see swapbench.zoo),
    or a run id: see :func:`run_checkpoint`."""
    from swapbench import zoo

    if zoo.is_zoo_ref(target):
        return zoo.model_path(target)
    path = Path(target)
    if path.exists():
        return path
    if target.endswith((".safetensors", ".json")) or "/" in target:
        raise UserError(f"checkpoint {target} does not exist; pass an existing .safetensors file or an MLflow run id")
    return run_checkpoint(get_run(target))


def local_checkpoint(checkpoint_dir: str | Path, run_id: str) -> Path:
    """Where the training of run ``run_id`` keeps its last checkpoint: ``<tracking.checkpoint_dir>/<run id>/``
    (a relative folder: from the current folder)."""
    return Path(checkpoint_dir) / run_id / LAST_CHECKPOINT


def run_checkpoint(run) -> Path:
    """A run's checkpoint: the final one it logged to MLflow, else the last one in its local checkpoint
    folder (``<tracking.checkpoint_dir>/<run id>/``, from the current folder), which is all a run
    stopped before its budget has."""
    run_id = run.info.run_id
    local = local_checkpoint(run.data.params.get("tracking.checkpoint_dir", "checkpoints"), run_id)
    try:
        path = download_run_artifact(run_id, CHECKPOINT_ARTIFACT_DIR) / LAST_CHECKPOINT
        if path.is_file():
            return path
    except UserError:
        pass
    if local.is_file():
        return local
    raise UserError(f"run {run_id} logged no checkpoint to MLflow and {local} does not exist; run this from the folder "
                    "the run was started in, or pass the checkpoint file")


def download_run_artifact(run_id: str, artifact_path: str, uri: str | None = None) -> Path:
    """Fetch one artifact of a run into a temporary folder; a missing run is a user error."""
    import mlflow
    from mlflow.exceptions import MlflowException

    get_run(run_id, uri)
    dst = tempfile.mkdtemp(prefix="swapbench-")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, dst_path=dst))
    except (MlflowException, OSError) as exc:
        raise UserError(f"run '{run_id}' has no artifact '{artifact_path}' ({str(exc).splitlines()[0][:200]})") from None
