"""The trackers a run logs through: the interface the trainer and evaluator use (:class:`Tracker`, which
records nothing: non-zero ranks, or runs with tracking switched off), one that logs straight to an MLflow
run, and one that journals first (swapbench.journal). Secrets in params and tags are redacted on the way."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swapbench.store import REDACTED, retry_when_locked, scrub


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


def redact(values: Mapping[str, Any]) -> dict[str, str]:
    """Params and tags as MLflow stores them, with secrets replaced by ``***``: the value of any
    name that looks like a secret (token, password, secret, key), and a password inside a URI."""
    return {k: REDACTED if SECRET_NAME.search(k) else scrub(_param_value(v)) for k, v in values.items()}


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
