"""MLflow: the single store of results. Only rank 0 of a multi-process run writes to it."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swapbench import __version__
from swapbench.errors import UserError
from swapbench.recipe import Recipe, TrackingConfig
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

    def last_logged_step(self) -> int:
        """The largest step a metric of this run was logged at (0: none, or not known)."""
        return 0

    def end(self, status: str) -> None: ...


# token, password, secret, credential anywhere in a name; a name (or its last dotted part) that is "key"
# or a kind of key (api_key, access-key, ...); not e.g. swapbench.sweep_key, which is an id
SECRET_NAME = re.compile(r"token|passw(or)?d|passphrase|secret|credential|(^|\.)key$|"
                         r"(api|access|private|signing|encryption|ssh|auth|license|session)[_-]?key", re.I)
URI_PASSWORD = re.compile(r"(//[^/@:\s]+:)[^/@\s]+@")
REDACTED = "***"


def redact(values: Mapping[str, Any]) -> dict[str, str]:
    """Params and tags as MLflow stores them, with secrets replaced by ``***``: the value of any
    name that looks like a secret (token, password, secret, key), and a password inside a URI."""
    return {k: REDACTED if SECRET_NAME.search(k) else scrub(_param_value(v)) for k, v in values.items()}


def scrub(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` replaced by ``***``."""
    return URI_PASSWORD.sub(rf"\1{REDACTED}@", text)


class MLflowTracker(Tracker):
    """Logs straight to the MLflow run (tool runs such as ``swapbench project``)."""

    def __init__(self, run_id: str, uri: str | None = None):
        import mlflow

        self._client = mlflow.MlflowClient(uri)
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self._client.log_batch(self.run_id, params=[Param(k, v) for k, v in redact(params).items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step or 0) for k, v in metrics.items()])

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        self._client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self.run_id, scrub(text), artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in redact(tags).items()])

    def end(self, status: str) -> None:
        retry_when_locked(self._client.set_terminated, self.run_id, status)


class JournalTracker(Tracker):
    """Everything goes into the run's local journal first and reaches MLflow from a background
    thread (see swapbench.journal), so a tracking-server outage of any length never stops training."""

    def __init__(self, folder: str | Path, uri: str, run_id: str, retry_seconds: float, flush_timeout: float):
        from swapbench.journal import Journal, Uploader

        self.journal = Journal(folder, uri, run_id)
        self.run_id = run_id
        self.flush_timeout = flush_timeout
        self._uploader = Uploader(self.journal, retry_seconds)
        self._uploader.start()
        self._uploader.wake.set()  # records a crashed process left behind go up first

    def _add(self, record: dict[str, Any]) -> None:
        self.journal.append(record)
        self._uploader.wake.set()

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._add({"kind": "params", "values": redact(params)})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from swapbench.journal import journal_metrics

        journal_metrics(self.journal, metrics, step)
        self._uploader.wake.set()

    def _local_file(self, artifact_file: str) -> Path:
        from swapbench.journal import ARTIFACTS

        root = (self.journal.folder / ARTIFACTS).resolve()
        path = (root / artifact_file).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"artifact name {artifact_file!r} leaves the run's folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _add_file(self, path: Path, artifact_file: str) -> None:
        folder = str(Path(artifact_file).parent)
        self._add({"kind": "artifact", "path": str(path), "artifact_path": None if folder == "." else folder})

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        from PIL import Image

        path = self._local_file(artifact_file)
        Image.fromarray(np.asarray(image)).save(path)
        self._add_file(path, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._add({"kind": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_text(self, text: str, artifact_file: str) -> None:
        path = self._local_file(artifact_file)
        path.write_text(scrub(text))
        self._add_file(path, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._add({"kind": "tags", "values": redact(tags)})

    def last_logged_step(self) -> int:
        return self.journal.last_step()

    def end(self, status: str) -> None:
        import logging

        self._add({"kind": "end", "status": status, "ts": int(time.time() * 1000)})
        if not self._uploader.close(self.flush_timeout):
            logging.getLogger("swapbench").warning(
                "the MLflow tracking store %s did not take the run's last %d records within tracking.flush_timeout="
                "%g s: the run ended %s locally; upload them later with `swapbench sync %s`",
                self.journal.uri, self.journal.pending(), self.flush_timeout, status, self.journal.folder)


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
        # during a tracking-server outage the HTTP client warns at every retry of every request; the
        # uploader says instead, once, when the outage starts and when it ends (swapbench.journal.Uploader)
        pool = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(f, _NoRetryWarnings) for f in pool.filters):
            pool.addFilter(_NoRetryWarnings())


class _NoRetryWarnings:
    """A logging filter that drops urllib3's "Retrying (Retry(total=...)) after connection broken" lines."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Retrying")


def check_reachable(uri: str, timeout: float | None = None) -> None:
    """A tracking server that does not answer is a one-line error within ``timeout`` seconds
    (MLflow's own client would retry for minutes first). Other stores are checked by using them."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    timeout = TrackingConfig().connect_timeout if timeout is None else timeout
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        reason = type(exc).__name__ if not isinstance(exc, requests.ConnectionError) else "connection refused or no route"
        raise UserError(f"the MLflow tracking server {scrub(uri)} does not answer ({reason}, waited at most {timeout:g} s); "
                        "start it (`mlflow server --host 127.0.0.1 --port PORT`) or unset MLFLOW_TRACKING_URI / "
                        "tracking.uri to use the local sqlite store") from None


# URI schemes of the stores MLflow's tracking client opens ('' and 'file': its folder store, which this
# MLflow refuses unless MLFLOW_ALLOW_FILE_STORE is set; the probe in use_store says so in one line)
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "file", "")


def check_store_uri(uri: str) -> None:
    """A tracking URI whose scheme names no store MLflow can open is a one-line error."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme.split("+")[0]  # postgresql+psycopg2 is postgresql
    if scheme not in STORE_SCHEMES:
        raise UserError(f"the tracking URI {scrub(uri)} has scheme '{scheme}', which names no MLflow store; give "
                        "sqlite:///PATH.db or http://HOST:PORT (tracking.uri, or MLFLOW_TRACKING_URI)")


def use_store(uri: str, create: bool = True) -> str:
    """Point MLflow at ``uri`` after checking it answers (and, for sqlite, that its schema is whole). Without
    ``create`` (a command that only reads runs) a sqlite store that does not exist is a user error, not a new
    empty file."""
    import mlflow

    from swapbench.store import prepare_sqlite, sqlite_path

    quiet_mlflow()
    check_store_uri(uri)
    check_reachable(uri)
    prepare_sqlite(uri, create=create)
    if sqlite_path(uri) is None and not uri.startswith(("http://", "https://")):
        try:  # another kind of store: its first use is the check
            mlflow.MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:200]
            raise UserError(f"cannot use the MLflow tracking store {scrub(uri)} ({reason}); give sqlite:///PATH.db or "
                            "http://HOST:PORT (tracking.uri, or MLFLOW_TRACKING_URI)") from None
    mlflow.set_tracking_uri(uri)
    return uri


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


def retry_when_locked(fn, *args, attempts: int = 8, **kwargs):
    """``fn(*args, **kwargs)``, tried again with growing pauses (0.1 s to 12.8 s) while a sqlite
    store answers "database is locked" (another process is writing to it)."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2**attempt)


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


def run_checkpoint(run) -> Path:
    """A run's checkpoint: the final one it logged to MLflow, else the last one in its local checkpoint
    folder (``<tracking.checkpoint_dir>/<run id>/``, from the current folder), which is all a run
    stopped before its budget has."""
    run_id = run.info.run_id
    local = Path(run.data.params.get("tracking.checkpoint_dir", "checkpoints")) / run_id / "last.safetensors"
    try:
        path = download_run_artifact(run_id, CHECKPOINT_ARTIFACT_DIR) / "last.safetensors"
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
