"""What a training checkpoint holds and how a run writes it and comes back from it: the state of every
network, optimiser, the EMA, the RNG and the data position (:class:`TrainingState`, a part of
:class:`swapbench.training.trainer.Trainer`). The file format is :mod:`swapbench.checkpoint`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from swapbench import __version__
from swapbench.checkpoint import LAST_CHECKPOINT, load_checkpoint, save_checkpoint
from swapbench.errors import UserError
from swapbench.runtime import git_commit
from swapbench.training.signals import StopRequest

log = logging.getLogger(__name__)


class TrainingState:
    """Checkpointing and exact resume for :class:`~swapbench.training.trainer.Trainer`, which provides the
    networks, optimisers, EMA and counters it saves (``networks()``, ``optimizers()``, ``extra_state()``,
    ``ema``, ``step``, ``images_seen``, ``skipped_steps``, ``cpu_seconds``, ``recipe``, ``tracker``, ``device``, ``rank``,
    ``checkpoint_dir``)."""

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: net.state_dict() for name, net in self.networks().items()}
        state.update({name: opt.state_dict() for name, opt in self.optimizers().items()})
        state.update(self.extra_state())
        state.update({"step": self.step, "images_seen": self.images_seen, "skipped_steps": self.skipped_steps,
                      "cpu_seconds": self.cpu_seconds, "rng": {"torch": torch.get_rng_state()}})
        if self.device.type == "cuda":  # this process's GPU only: the same on every rank, and resumable on fewer GPUs
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, net in self.networks().items():
            net.load_state_dict(state[name])
        if self.ema is not None and "ema" in state:
            self.ema.module.load_state_dict(state["ema"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])
        self.load_extra_state(state)
        self.step = int(state["step"])
        self.images_seen = int(state["images_seen"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.cpu_seconds = float(state.get("cpu_seconds", 0.0))  # 0: a checkpoint from before it was counted
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            saved = state["rng"]["cuda"]
            if isinstance(saved, (list, tuple)):  # checkpoints before per-device states held every GPU's
                saved = saved[0]
            torch.cuda.set_rng_state(saved, self.device)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "recipe": self.recipe.to_dict(),
            "recipe_hash": self.recipe.hash(),
            "git_commit": git_commit(),
            "swapbench_version": __version__,
            "run_id": self.tracker.run_id,
        }

    def save(self, path: str | Path | None = None) -> Path | None:
        if self.rank != 0:
            return None
        if path is None:
            if self.checkpoint_dir is None:
                return None
            path = self.checkpoint_dir / LAST_CHECKPOINT
        try:
            return save_checkpoint(path, self.state_dict(), self.checkpoint_meta())
        except OSError as exc:  # a full disk, a read-only or vanished folder: the previous pair is untouched
            raise UserError(f"cannot write the checkpoint {path} at step {self.step} ({exc.strerror or exc}); "
                            f"{self._last_good(path)}; free space or make the folder writable, then "
                            f"{self._resume_hint()}") from None

    def _last_good(self, path: Path) -> str:
        """Which checkpoint a failed save or a divergence leaves (its step), in words."""
        try:
            _, meta = load_checkpoint(path)
            return f"the last good checkpoint {path} (step {meta['step']}) is intact"
        except UserError:
            return "no earlier checkpoint was written"

    def _resume_hint(self) -> str:
        return f"`swapbench resume {self.tracker.run_id}`" if self.tracker.run_id else "resume from that checkpoint"

    def resume(self, path: str | Path) -> None:
        state, meta = load_checkpoint(path, map_location="cpu")
        if meta.get("recipe_hash") != self.recipe.hash():
            log.warning("checkpoint %s was written by a different recipe (hash %s, this one %s)",
                        path, meta.get("recipe_hash"), self.recipe.hash())
        self.load_state_dict(state)

    def _save_whole(self, stop: StopRequest) -> Path | None:
        """``save``, with Ctrl-C and ``kill`` held back until the checkpoint is complete."""
        stop.saving = True
        try:
            return self.save()
        finally:
            stop.saving = False
