"""A local journal of everything a run logs, kept next to its checkpoint and uploaded to MLflow in
the background, so that training never waits for (or fails with) the tracking server.

Every metric, param, tag, artifact and the run's end are appended to ``journal.jsonl`` first (one
JSON record a line, with the metric's timestamp fixed when it was logged); ``journal.flushed``
holds how many records the server has. An uploader thread sends what is pending in order. When
the server is unreachable it keeps the records and tries again every ``tracking.retry_seconds``;
when it comes back the backlog goes up in order. Re-sending a record is harmless (a metric with the
same key, step, value and timestamp is stored once), so a crash between an upload and the counter
update duplicates nothing. If the server is still away when the run ends, the run finishes
locally and ``swapbench sync RUN_DIR`` uploads the rest later.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swapbench.errors import UserError

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
FLUSHED = "journal.flushed"
ARTIFACTS = "artifacts"  # files logged as images or text are written here first
BATCH = 500  # metrics, params and tags sent in one request at most
COALESCE_SECONDS = 1.0  # after an upload the uploader waits this long, so records go up in batches


class Journal:
    """The records of one MLflow run in ``folder``; the first record names the store and run."""

    def __init__(self, folder: str | Path, uri: str | None = None, run_id: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL
        self._lock = threading.Lock()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.records = self._read() if self.path.is_file() else []
        except OSError as exc:
            raise UserError(f"cannot use the run folder {self.folder} for the tracking journal ({exc.strerror}); "
                            "point tracking.checkpoint_dir at a writable folder") from None
        if not self.records:
            if uri is None or run_id is None:
                raise UserError(f"{self.folder} holds no tracking journal ({JOURNAL}); give the folder a run "
                                "wrote (<tracking.checkpoint_dir>/<run id>)")
            self.append({"kind": "run", "uri": uri, "run_id": run_id})
        header = self.records[0]
        if run_id is not None and header.get("run_id") != run_id:
            raise UserError(f"{self.path} belongs to run {header.get('run_id')}, not {run_id}; "
                            "use that run's own folder")
        self.uri: str = header["uri"]
        self.run_id: str = header["run_id"]

    def _read(self) -> list[dict[str, Any]]:
        records = []
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):  # a line cut by a crash: drop it
                    log.warning("%s: dropping its last line, cut short by a crash", self.path)
                    break
                raise UserError(f"{self.path} line {number} is not JSON; the journal is damaged, "
                                "restore it or remove the folder's journal files") from None
        if records and records[0].get("kind") != "run":
            raise UserError(f"{self.path} does not start with its run record; it is not a swapbench journal")
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=True) + "\n"
        with self._lock:
            try:
                with open(self.path, "a") as f:
                    f.write(line)
            except OSError as exc:
                raise UserError(f"cannot write the tracking journal {self.path} ({exc.strerror}); free space "
                                "or point tracking.checkpoint_dir at a writable folder") from None
            self.records.append(record)

    @property
    def flushed(self) -> int:
        try:
            return int((self.folder / FLUSHED).read_text() or 1)
        except (OSError, ValueError):
            return 1  # the run record itself is never uploaded

    def mark_flushed(self, n: int) -> None:
        tmp = self.folder / f".{FLUSHED}.tmp"  # written whole, then renamed: the count is never cut off
        tmp.write_text(str(n))
        os.replace(tmp, self.folder / FLUSHED)

    def pending(self) -> int:
        return len(self.records) - self.flushed

    def last_step(self) -> int:
        """The largest step any metric was logged at (0 when none): what a resumed run has already logged."""
        steps = [r["step"] for r in self.records if r["kind"] == "metrics" and r.get("step") is not None]
        return max(steps, default=0)


def _upload(client, run_id: str, records: list[dict[str, Any]]) -> int:
    """Send the first records (metrics, params and tags together in one request, or one artifact,
    or the run's end); returns how many were sent."""
    from mlflow.entities import Metric, Param, RunTag

    first = records[0]
    if first["kind"] == "artifact":
        client.log_artifact(run_id, first["path"], first.get("artifact_path"))
        return 1
    if first["kind"] == "end":
        client.set_terminated(run_id, first["status"], end_time=first["ts"])
        return 1
    metrics, params, tags, n = [], [], [], 0
    for r in records:
        if r["kind"] not in ("metrics", "params", "tags") or len(metrics) + len(params) + len(tags) >= BATCH:
            break
        values = r["values"].items()
        if r["kind"] == "metrics":
            metrics += [Metric(k, float(v), r["ts"], r.get("step") or 0) for k, v in values]
        elif r["kind"] == "params":
            params += [Param(k, str(v)) for k, v in values]
        else:
            tags += [RunTag(k, str(v)) for k, v in values]
        n += 1
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    return n


def flush(journal: Journal, client=None) -> int:
    """Upload every pending record now; returns how many went up (raises on the first failure)."""
    import mlflow

    client = client or mlflow.MlflowClient(journal.uri)
    sent = 0
    while journal.pending() > 0:
        start = journal.flushed
        n = _upload(client, journal.run_id, journal.records[start:])
        journal.mark_flushed(start + n)
        sent += n
    return sent


class Uploader(threading.Thread):
    """Sends a journal's records to MLflow in the background, retrying every ``retry_seconds``
    while the server is away."""

    def __init__(self, journal: Journal, retry_seconds: float):
        super().__init__(name="swapbench-mlflow-uploader", daemon=True)
        import mlflow

        self.journal, self.retry_seconds = journal, retry_seconds
        self.client = mlflow.MlflowClient(journal.uri)
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.offline_since: float | None = None

    def run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            try:
                waiting = self.journal.pending()
                flush(self.journal, self.client)
                if self.offline_since is not None:
                    log.warning("MLflow tracking store %s is back after %.0f s (at %s); the %d records that waited "
                                "are uploaded, none pending", self.journal.uri, time.monotonic() - self.offline_since,
                                time.strftime("%H:%M:%S"), waiting)
                    self.offline_since = None
                self.closing.wait(COALESCE_SECONDS)  # over at once when the run ends
            except Exception as exc:  # any failure of the store: keep the records, try again later
                log.debug("upload failed", exc_info=True)
                if self.offline_since is None:
                    self.offline_since = time.monotonic()
                    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                    log.warning("cannot reach the MLflow tracking store %s since %s (%s); training goes on, %d "
                                "records wait in %s and go up when it is back", self.journal.uri,
                                time.strftime("%H:%M:%S"), first, self.journal.pending(), self.journal.path)
                self.closing.wait(self.retry_seconds)  # while closing: the wait is over at once,
                if self.closing.is_set():  # but one attempt a second is enough
                    time.sleep(0.5)
                self.wake.set()
            if self.closing.is_set() and self.journal.pending() == 0:
                return

    def close(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for everything to be uploaded; True when it was."""
        self.closing.set()
        self.wake.set()
        self.join(timeout)
        return self.journal.pending() == 0


def journal_metrics(journal: Journal, metrics: Mapping[str, float], step: int | None) -> None:
    journal.append({"kind": "metrics", "values": {k: float(v) for k, v in metrics.items()}, "step": step,
                    "ts": int(time.time() * 1000)})


def outside_run_folder(journal: Journal) -> None:
    """Refuse a journal whose pending artifacts name a file outside the run's folder: `swapbench sync`
    uploads only what the run wrote beside its journal (a journal edited to name /etc/hostname, or a
    symlink in the folder pointing elsewhere, uploads nothing)."""
    folder = journal.folder.resolve()
    for record in journal.records[journal.flushed:]:
        if record.get("kind") != "artifact":
            continue
        path = Path(str(record.get("path", "")))
        if not path.resolve().is_relative_to(folder):  # resolved as the upload reads it (from here, links followed)
            raise UserError(f"{journal.path} names the artifact {path}, which is outside the run's folder {folder}; "
                            f"sync uploads only files in that folder, so nothing was uploaded: remove that record "
                            f"or copy the file into the folder")


def sync(folder: str | Path, uri: str | None = None) -> tuple[Journal, int]:
    """Upload what the run in ``folder`` journaled and its store has not got yet (``swapbench sync``);
    ``uri`` overrides the store the journal names. Returns (journal, records uploaded)."""
    from swapbench.store import retry_when_locked, scrub, use_store

    folder = Path(folder)
    if not (folder / JOURNAL).is_file():
        raise UserError(f"{folder} holds no tracking journal ({JOURNAL}); give the run's folder, "
                        "<tracking.checkpoint_dir>/<run id>")
    journal = Journal(folder)
    if uri:
        journal.uri = uri
    use_store(journal.uri)
    outside_run_folder(journal)  # before anything goes up
    try:
        return journal, retry_when_locked(flush, journal)
    except Exception as exc:
        raise UserError(f"cannot upload {journal.path} to {scrub(journal.uri)} ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); "
                        f"{journal.pending()} records wait; try again when the store answers") from None
