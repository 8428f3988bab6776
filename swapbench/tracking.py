"""MLflow: the single store of results. Only rank 0 of a multi-process run writes to it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swapbench import __version__
from swapbench.errors import UserError
from swapbench.recipe import Recipe
from swapbench.runtime import git_commit

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RECIPE_ARTIFACT = "recipe.yaml"
CHECKPOINT_ARTIFACT_DIR = "checkpoint"


def tracking_uri(recipe: Recipe | None = None) -> str:
    """recipe.tracking.uri, else $MLFLOW_TRACKING_URI, else the embedded sqlite store in the cwd."""
    if recipe is not None and recipe.tracking.uri:
        return recipe.tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class Tracker:
    """The tracking interface the trainer and evaluator use. This base class records nothing
    (non-zero ranks, or runs with tracking switched off)."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_image(self, image: np.ndarray, artifact_file: str) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, artifact_file: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...


class MLflowTracker(Tracker):
    def __init__(self, run_id: str):
        import mlflow

        self._mlflow = mlflow
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._mlflow.log_params({k: _param_value(v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        self._mlflow.log_image(image, artifact_file=artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._mlflow.log_text(text, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._mlflow.set_tags(dict(tags))


def _param_value(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def quiet_mlflow() -> None:
    """MLflow logs store migrations and experiment creation at INFO on stderr; keep the CLI's output
    to what swapbench says unless --debug asked for more."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars on downloads
    if not logging.getLogger("swapbench").isEnabledFor(logging.INFO):
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)


def connect(uri: str, experiment: str) -> None:
    """Point MLflow at ``uri`` and select (or create) ``experiment``; a dead store is a user error."""
    import mlflow

    quiet_mlflow()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment)
    except Exception as exc:
        raise UserError(
            f"cannot use the MLflow tracking store {uri} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            f"start the server or unset MLFLOW_TRACKING_URI to use the local sqlite store"
        ) from None


@contextlib.contextmanager
def open_run(recipe: Recipe, run_id: str | None = None,
             tags: dict[str, str] | None = None) -> Iterator[MLflowTracker]:
    """Start (or, with ``run_id``, reopen) the MLflow run of ``recipe``.

    A new run gets the flattened recipe as params, the resolved recipe as ``recipe.yaml``, and tags
    with the git commit, the swapbench version and the recipe hash. The run ends FINISHED, FAILED on
    an exception, or KILLED on Ctrl-C.
    """
    recipe_tags = {"swapbench.recipe": recipe.name, "swapbench.recipe_hash": recipe.hash(),
                   "swapbench.variant": recipe.name}  # a sweep names its variants through ``tags``
    with _run(tracking_uri(recipe), recipe.tracking.experiment or recipe.name, run_id,
              None if run_id else recipe.tracking.run_name, {**recipe_tags, **(tags or {})}) as tracker:
        if run_id is None:
            tracker.log_params(recipe.flat())
            tracker.log_text(recipe.to_yaml(), RECIPE_ARTIFACT)
        yield tracker


@contextlib.contextmanager
def open_tool_run(experiment: str, tags: dict[str, str] | None = None,
                  uri: str | None = None) -> Iterator[MLflowTracker]:
    """A new run for a command that is not a recipe (e.g. ``swapbench project``), tagged like one."""
    with _run(uri or tracking_uri(), experiment, None, None, tags or {}) as tracker:
        yield tracker


@contextlib.contextmanager
def _run(uri: str, experiment: str, run_id: str | None, run_name: str | None,
         tags: dict[str, str]) -> Iterator[MLflowTracker]:
    """Open a run; it ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C."""
    import mlflow

    connect(uri, experiment)
    run = mlflow.start_run(run_id=run_id, run_name=run_name)
    tracker = MLflowTracker(run.info.run_id)
    status = "FINISHED"
    try:
        if run_id is None:
            tracker.set_tags({"swapbench.git_commit": git_commit(), "swapbench.version": __version__, **tags})
        yield tracker
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        mlflow.end_run(status=status)


def get_run(run_id: str, uri: str | None = None):
    """The MLflow run ``run_id`` (tags, params, metrics); a missing run is a user error."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = uri or tracking_uri()
    quiet_mlflow()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run '{run_id}' in {uri}; check the id with `mlflow ui` or set MLFLOW_TRACKING_URI") from None


def checkpoint_of(target: str) -> Path:
    """A checkpoint file from a path, or the final checkpoint an MLflow run logged."""
    path = Path(target)
    if path.exists():
        return path
    if target.endswith((".safetensors", ".json")) or "/" in target:
        raise UserError(f"checkpoint {target} does not exist; pass an existing .safetensors file or an MLflow run id")
    return download_run_artifact(target, CHECKPOINT_ARTIFACT_DIR) / "last.safetensors"


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
