"""A rich progress bar for training: steps, images/s and the latest losses."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

SHOWN_LOSSES = ("recon_l1", "g_swap", "d_real", "g_cooccur")


class TrainingProgress:
    def __init__(self, total_steps: int, enabled: bool = True, description: str = "train", start: int = 0):
        self.enabled = enabled
        self.start = start  # a resumed run's bar starts where training stopped
        self.total = total_steps
        self.description = description
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"), console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.start, stats="")
        return self

    def update(self, step: int, total: int, losses: dict[str, float], images_per_second: float) -> None:
        if self._progress is None:
            return
        shown = " ".join(f"{k} {losses[k]:.3f}" for k in SHOWN_LOSSES if k in losses)
        self._progress.update(self._task, completed=step, stats=f"{images_per_second:.1f} img/s {shown}")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
