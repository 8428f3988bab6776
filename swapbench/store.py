"""A sqlite MLflow store that several processes can open at once.

MLflow creates or migrates a sqlite store's schema the first time a process opens it. Two processes
doing that together (two `swapbench run` in one folder, `sweep --jobs 2`) both migrate, one fails,
and the store can be left half-migrated (alembic's ``_alembic_tmp_*`` tables). Here the first
opening happens under an exclusive ``flock`` on the database file (sqlite itself uses POSIX
record locks, which a ``flock`` does not touch), so one process migrates and the others wait for it.
Writes that meet a busy database are retried with backoff by the callers
(:func:`retry_when_locked`, and the journal uploader).

Also here, as the lowest layer that needs them: pointing MLflow at a store after checking it answers
(:func:`use_store`), and hiding a password inside a store's URI (:func:`scrub`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import time
from pathlib import Path

from swapbench.errors import UserError

log = logging.getLogger(__name__)
_prepared: set[str] = set()

# the default of tracking.connect_timeout (swapbench.recipe.TrackingConfig), read here
CONNECT_TIMEOUT = 10.0

URI_PASSWORD = re.compile(r"(//[^/@:\s]+:)[^/@\s]+@")
REDACTED = "***"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


def prepare_sqlite(uri: str, create: bool = True) -> None:
    """Create or migrate the store at ``uri`` under a file lock, once per process. Without ``create``
    a store file that does not exist is a user error (a command that only reads runs leaves no new file)."""
    path = sqlite_path(uri)
    if path is None or uri in _prepared:
        return
    if not path.parent.is_dir():
        raise UserError(f"the MLflow store {uri} is in a folder that does not exist ({path.parent}); "
                        "create it or give another tracking URI")
    if not create and not path.exists():
        raise UserError(f"there is no MLflow store {path} here, so no runs to read; run a recipe first, or point "
                        "MLFLOW_TRACKING_URI at the store that holds the runs")
    if path.is_dir():
        raise UserError(f"the MLflow store {path} is a folder, not an sqlite file; give a file path "
                        "(sqlite:///PATH.db)")
    import mlflow

    try:
        with open(path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                _drop_failed_migration_tables(path)
                mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates / migrates the schema
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    except OSError as exc:
        raise UserError(f"cannot open the MLflow store {path} ({exc.strerror}); check the folder's "
                        "permissions or give another tracking URI") from None
    except sqlite3.DatabaseError as exc:
        raise UserError(f"the MLflow store {path} is not an sqlite database ({exc}); move that file away, or give "
                        "another tracking URI") from None
    except Exception as exc:  # SQLAlchemy's wrapping of the same: MLflow reads the file as a store
        if "not a database" not in str(exc) and "malformed" not in str(exc):
            raise
        raise UserError(f"the MLflow store {path} is not an sqlite database (file is not a database); move that file "
                        "away, or give another tracking URI") from None
    _prepared.add(uri)


def _drop_failed_migration_tables(path: Path) -> None:
    """Remove the copies a migration that died half-way left behind (``_alembic_tmp_<table>``),
    when the original table is still there; a store without its original table is a user error."""
    if path.stat().st_size == 0:
        return
    with sqlite3.connect(path, timeout=30) as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
        for tmp in sorted(t for t in tables if t.startswith("_alembic_tmp_")):
            original = tmp.removeprefix("_alembic_tmp_")
            if original not in tables:
                raise UserError(f"the MLflow store {path} was left half-migrated (table {original} exists only as "
                                f"{tmp}); restore the file from a backup, or move it away to start a new store")
            log.warning("MLflow store %s: dropping %s, left by a migration that did not finish", path, tmp)
            db.execute(f'drop table "{tmp}"')


def scrub(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` replaced by ``***``."""
    return URI_PASSWORD.sub(rf"\1{REDACTED}@", text)


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

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
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
