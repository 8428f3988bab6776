"""A tracking-server outage is one swapbench line when it starts and one when it ends, naming what
waits; urllib3's per-retry "Retrying" warnings do not reach the user (issue 36). The end-to-end outage
with a real server is tests/test_tracking_server.py; this drives the uploader with a store that fails."""

from __future__ import annotations

import logging
import threading

import pytest

from swapbench.journal import Journal, Uploader, journal_metrics
from swapbench.store import quiet_mlflow


class FlakyStore:
    """An MLflow client whose requests fail (after urllib3's retry warning) while ``down`` is set."""

    def __init__(self):
        self.down = threading.Event()
        self.batches: list[int] = []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        if self.down.is_set():
            logging.getLogger("urllib3.connectionpool").warning(
                "Retrying (Retry(total=4, connect=4, read=5, redirect=5, status=5)) after connection broken by "
                "'NewConnectionError(\"Failed to establish a new connection: [Errno 111] Connection refused\")': "
                "/api/2.0/mlflow/runs/log-batch")
            raise ConnectionError("Failed to establish a new connection: [Errno 111] Connection refused")
        self.batches.append(len(metrics))


@pytest.fixture
def uploader(tmp_path):
    journal = Journal(tmp_path / "run", uri="http://127.0.0.1:9", run_id="r1")
    up = Uploader(journal, retry_seconds=0.05)
    up.client = FlakyStore()
    up.start()
    yield up
    up.close(5)


def _until(condition, seconds=20.0):
    import time

    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_an_outage_is_one_line_at_its_start_and_one_at_its_end(uploader, caplog):
    caplog.set_level(logging.WARNING)
    logging.getLogger("swapbench").setLevel(logging.WARNING)  # as the CLI without --debug
    quiet_mlflow()
    store, journal = uploader.client, uploader.journal
    journal_metrics(journal, {"loss": 1.0}, 1)
    uploader.wake.set()
    _until(lambda: journal.pending() == 0)
    store.down.set()
    for step in range(2, 7):  # five steps logged while the store is away: many failed attempts
        journal_metrics(journal, {"loss": 1.0}, step)
        uploader.wake.set()
    _until(lambda: len([r for r in caplog.records if "cannot reach" in r.getMessage()]) == 1)
    import time

    time.sleep(0.5)  # about ten more attempts fail in this time
    store.down.clear()
    _until(lambda: journal.pending() == 0)
    _until(lambda: any("is back after" in r.getMessage() for r in caplog.records))
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Retrying" in m], messages  # urllib3's retry lines are dropped
    start = [m for m in messages if "cannot reach the MLflow tracking store" in m]
    end = [m for m in messages if "is back after" in m]
    assert len(start) == 1 and len(end) == 1, messages  # one line per outage, however many attempts failed
    assert " since " in start[0] and "records wait in" in start[0] and str(journal.path) in start[0]
    waited = int(end[0].split("the ")[1].split(" records")[0])
    assert 1 <= waited <= 5 and "none pending" in end[0], end[0]
    assert sum(store.batches) == 6  # every step went up once


def test_debug_keeps_urllib3s_retry_lines(caplog):
    """With --debug (swapbench at INFO) nothing is filtered: the retries are there to read."""
    caplog.set_level(logging.WARNING)
    pool = logging.getLogger("urllib3.connectionpool")
    saved = pool.filters[:]
    pool.filters.clear()
    logging.getLogger("swapbench").setLevel(logging.INFO)
    try:
        quiet_mlflow()
        pool.warning("Retrying (Retry(total=4)) after connection broken")
        assert any("Retrying" in r.getMessage() for r in caplog.records)
    finally:
        logging.getLogger("swapbench").setLevel(logging.NOTSET)
        pool.filters[:] = saved
