"""A sqlite MLflow store that several processes can open at once.

MLflow creates or migrates a sqlite store's schema the first time a process opens it. Two processes
doing that together (two `swapbench run` in one folder, `sweep --jobs 2`) both migrate, one fails,
and the store can be left half-migrated (alembic's ``_alembic_tmp_*`` tables). Here the first
opening happens under an exclusive ``flock`` on the database file (sqlite itself uses POSIX
record locks, which a ``flock`` does not touch), so one process migrates and the others wait for it.
Writes that meet a busy database are retried with backoff by the callers
(:func:`swapbench.tracking.retry_when_locked`, and the journal uploader).
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
from pathlib import Path

from swapbench.errors import UserError

log = logging.getLogger(__name__)
_prepared: set[str] = set()


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
