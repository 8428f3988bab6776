"""Stopping a training run cleanly. While :meth:`Trainer.fit` runs, Ctrl-C and ``kill`` only ask the loop
to stop: it finishes its step, writes a checkpoint and ends the run as interrupted, so that ``swapbench
resume`` continues from exactly there."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopRequest:
    """Set by Ctrl-C or ``kill`` during :meth:`Trainer.fit`; the loop stops at the next step boundary.
    While ``saving`` is set, even a second signal waits until the checkpoint is whole."""

    requested = False
    saving = False


@contextlib.contextmanager
def stop_at_step_boundary():
    """While training, SIGINT and SIGTERM only ask the loop to stop: it finishes the step it is in,
    writes a checkpoint, and then raises ``KeyboardInterrupt`` (so the MLflow run ends KILLED and
    ``swapbench resume`` continues from exactly there). A second signal interrupts at once, except
    while a checkpoint is being written. A signal the process ignores (SIG_IGN) stays ignored.
    Outside the main thread signals cannot be caught and nothing changes."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def ask_to_stop(signum, frame):
        if stop.requested and not stop.saving:
            raise KeyboardInterrupt
        if not stop.requested:
            log.warning("stopping after this step (a second Ctrl-C stops at once, without a checkpoint)")
        stop.requested = True

    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, ask_to_stop)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def ignore_interrupts_in_worker(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C (sent to the whole process group) to the training loop,
    which stops them itself after writing its checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
