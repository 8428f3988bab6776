"""Training: the loop shared by every model family (:class:`Trainer`). Each family subclasses it and
registers in the ``trainer`` registry under the name a recipe gives as ``model.family``: ``swap_ae`` in
:mod:`swapbench.training.swap_ae_trainer`, the StyleGAN2 baselines in baselines/.

The base class owns everything that is the same for every family: data order, EMA of the scored
network, logging, checkpoints with exact resume, throughput, optimisers built from the recipe with the
lazy-regularisation correction of the regularisers a family declares. A family says which networks and
optimisers it has, what one step does, and what preview image to log.

All training state (networks, optimisers, EMA, RNG, data position) lives in :meth:`Trainer.state_dict`,
which a checkpoint holds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from swapbench import __version__
from swapbench.data import SeededInfiniteSampler, build_dataset, test_images
from swapbench.errors import UserError
from swapbench.recipe import Recipe
from swapbench.registry import OPTIMIZERS, TRAINERS
from swapbench.runtime import git_commit, resolve_device, seed_everything
from swapbench.tracking import Tracker
from swapbench.training.checkpoint import load_checkpoint, save_checkpoint
from swapbench.training.distributed import any_process, mean_over_processes
from swapbench.training.optim import lazy_regularization_scaled

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


class TrainingDiverged(UserError):
    """A non-finite loss or gradient with ``train.on_nonfinite: stop``: the run ends FAILED with this
    message (the term and the step) as its ``swapbench.failure`` tag; the last good checkpoint is kept."""


def set_requires_grad(module: nn.Module | None, flag: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(flag)


@dataclass(frozen=True)
class Regularizer:
    """A penalty a family applies lazily, as StyleGAN2 does: after every ``interval``-th update of the
    optimiser ``optimizer`` (its key in :meth:`Trainer.optimizers`), with its loss multiplied by ``interval``;
    that optimiser's learning rate and betas get the lazy-regularisation correction."""

    optimizer: str
    interval: int


@dataclass
class TrainResult:
    steps: int
    images_seen: int
    seconds: float
    images_per_second: float
    checkpoint: Path | None
    final_losses: dict[str, float]


class Trainer:
    """The loop shared by every model family; ``rank``/``world_size`` make it DDP-ready (only rank 0
    logs and checkpoints).

    A subclass sets ``scored`` (the name, in :meth:`networks`, of the network that is evaluated and
    averaged by the EMA) and implements :meth:`build_model`, :meth:`build`, :meth:`networks`,
    :meth:`optimizers`, :meth:`train_step` and :meth:`preview`; it may declare :meth:`regularizers` and set
    ``multi_process``.
    """

    scored: str = "model"
    multi_process: bool = False  # trains as several processes (its per-step random draws differ per rank)
    preview_name: str = "preview.png"  # the final preview's artifact name
    preview_dir: str = "previews"  # where the previews during training go

    def __init__(self, recipe: Recipe, *, device: torch.device | None = None, tracker: Tracker | None = None,
                 checkpoint_dir: str | Path | None = None, rank: int = 0, world_size: int = 1,
                 train_set: Dataset | None = None, test_set: Dataset | None = None):
        self.recipe = recipe
        self.device = device or resolve_device(recipe.device)
        self.tracker = tracker or Tracker()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.rank, self.world_size = rank, world_size
        if recipe.train.threads:
            torch.set_num_threads(recipe.train.threads)
        seed_everything(recipe.seed)
        self.amp = recipe.train.amp and self.device.type == "cuda"
        self.build()
        if world_size > 1:
            self._join_processes()  # before the EMA copies the weights
        self.model = self.networks()[self.scored]
        self.nonfinite_gradients: list[str] = []  # optimisers whose gradients were not finite in this step
        for name, optimizer in self.optimizers().items():  # after the gradient averaging of several processes
            optimizer.register_step_pre_hook(self._finite_gradients_only(name))

        self.ema = None
        if recipe.train.ema > 0:
            from timm.utils import ModelEmaV3

            # warm-up keeps the average useful in short CPU runs; the decay is capped at train.ema
            self.ema = ModelEmaV3(self.model, decay=recipe.train.ema, use_warmup=True)

        self.step = 0
        self.images_seen = 0
        self.skipped_steps = 0  # steps with a non-finite loss or gradient under train.on_nonfinite: skip_step
        self.logged_through = 0  # a resumed run's metrics up to this step are already in MLflow
        self.train_set = build_dataset(recipe, "train") if train_set is None else train_set
        self.test_set = test_set
        self._preview_images: torch.Tensor | None = None

    def _join_processes(self) -> None:
        """Train as one of ``world_size`` processes: start from rank 0's weights and average every
        optimiser's gradients over the processes before it steps (see swapbench.training.distributed)."""
        from swapbench.training import distributed

        family, batch, n = self.recipe.model.family, self.recipe.train.batch_size, self.world_size
        if not self.multi_process:
            raise UserError(f"training a '{family}' recipe in {n} processes is not supported yet (its per-step random "
                            "draws would repeat on every process); run it in one process")
        if batch % n or batch // n < 2:
            raise UserError(f"train.batch_size={batch} must split over {n} processes into at least 2 images each "
                            f"(swaps pair images within a process's share); make it a multiple of {n}, at least {2 * n}")
        if not distributed.active():
            raise UserError(f"world_size={self.world_size} without a torch.distributed process group; start "
                            "swapbench with torchrun")
        distributed.broadcast_parameters(list(self.networks().values()))
        for optimizer in self.optimizers().values():
            optimizer.register_step_pre_hook(distributed.average_gradients)

    # -- what a family defines -------------------------------------------------------------------
    @classmethod
    def build_model(cls, recipe: Recipe) -> nn.Module:
        """The scored network alone (what a checkpoint is loaded into for evaluation)."""
        raise NotImplementedError

    def build(self) -> None:
        """Create the networks (on ``self.device``), losses and optimisers."""
        raise NotImplementedError

    def networks(self) -> dict[str, nn.Module]:
        """Every trained network by its checkpoint key (including the scored one)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def regularizers(self) -> dict[str, Regularizer]:
        """The lazy regularisers the recipe switches on, by name (none unless a family declares them)."""
        return {}

    # -- what a family uses -----------------------------------------------------------------------
    def build_optimizer(self, key: str, params) -> torch.optim.Optimizer:
        """The recipe's optimiser (``optim``) over ``params`` for the optimiser ``key`` of :meth:`optimizers`,
        with StyleGAN2's lazy-regularisation correction when a regulariser steps it."""
        opt = self.recipe.optim
        intervals = {r.interval for r in self.regularizers().values() if r.optimizer == key}
        if len(intervals) > 1:
            raise ValueError(f"regularisers of optimiser '{key}' have different intervals {sorted(intervals)}")
        lr, betas = (lazy_regularization_scaled(opt.lr, opt.betas, intervals.pop()) if intervals
                     else (opt.lr, opt.betas))
        return OPTIMIZERS.build(opt.name, params=params, lr=lr, betas=betas, eps=opt.eps)

    @staticmethod
    def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One step of ``optimizer`` on the gradients of ``loss`` (earlier gradients dropped first)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def regularize_after(self, name: str, updates: int) -> Regularizer | None:
        """Regulariser ``name`` when it is due after ``updates`` updates of its optimiser, else None."""
        regularizer = self.regularizers().get(name)
        return regularizer if regularizer is not None and updates % regularizer.interval == 0 else None

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        """One update of every network on a batch of real images; the unweighted loss terms."""
        raise NotImplementedError

    def preview(self, model: nn.Module, images: torch.Tensor):
        """An HWC uint8 image of what ``model`` does (logged during training), or None."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """Tensors (and ints) besides networks and optimisers that resuming needs (e.g. running means)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def _finish_step(self, batch_size: int, update_ema: bool = True) -> None:
        """Count the step and its images (every step counts its batch, whichever networks it updated)."""
        if self.ema is not None and update_ema:
            self.ema.update(self.model, step=self.step + 1)
        self.step += 1
        self.images_seen += batch_size * self.world_size

    # -- state --------------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The model to score: the EMA copy when there is one and the recipe asks for it."""
        if self.ema is not None and self.recipe.eval.use_ema:
            return self.ema.module
        return self.model

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: net.state_dict() for name, net in self.networks().items()}
        state.update({name: opt.state_dict() for name, opt in self.optimizers().items()})
        state.update(self.extra_state())
        state.update({"step": self.step, "images_seen": self.images_seen, "skipped_steps": self.skipped_steps,
                      "rng": {"torch": torch.get_rng_state()}})
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
            path = self.checkpoint_dir / "last.safetensors"
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

    # -- non-finite losses and gradients ------------------------------------------------------
    def _finite_gradients_only(self, name: str):
        """An optimiser step pre-hook: gradients with a NaN or inf are dropped before they reach the
        weights (the optimiser then leaves them unchanged) and the optimiser is noted for the loop."""

        def check(optimizer, args, kwargs):
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
                self.nonfinite_gradients.append(name)
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.grad = None

        return check

    def _check_finite(self, losses: dict[str, float], last_checkpoint: Path | None) -> bool:
        """After a step: False when it was fine; True when it had a non-finite loss or gradient and
        train.on_nonfinite is skip_step (it is counted); raises :class:`TrainingDiverged` for stop."""
        terms = [k for k, v in losses.items() if not math.isfinite(v)]
        grads, self.nonfinite_gradients = self.nonfinite_gradients, []
        if not any_process(bool(terms or grads), self.device):
            return False
        what = (f"non-finite loss term {', '.join(repr(t) for t in terms)} ({losses[terms[0]]})" if terms
                else f"non-finite gradients in {', '.join(sorted(set(grads)))}" if grads
                else "a non-finite loss or gradient in another process")
        if self.recipe.train.on_nonfinite == "skip_step":
            self.skipped_steps += 1
            log.warning("step %d skipped: %s (%d skipped so far)", self.step, what, self.skipped_steps)
            return True
        path = last_checkpoint or (self.checkpoint_dir / "last.safetensors" if self.checkpoint_dir else None)
        kept = self._last_good(path) if path is not None else "no checkpoint is written without a checkpoint folder"
        raise TrainingDiverged(f"training diverged at step {self.step}: {what}; {kept}; lower optim.lr, or set "
                               f"train.on_nonfinite=skip_step to skip such steps")

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

    def _stop_here(self, stop: StopRequest) -> None:
        """Write a checkpoint at this step boundary and end training as interrupted."""
        path = self._save_whole(stop)
        if path is not None:
            how = f"`swapbench resume {self.tracker.run_id}`" if self.tracker.run_id else "Trainer.resume(checkpoint)"
            log.warning("training stopped at step %d of %d; checkpoint %s; continue it with %s",
                        self.step, self.recipe.steps, path, how)
        raise KeyboardInterrupt

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- the loop -----------------------------------------------------------------------------
    def loader(self) -> DataLoader:
        sampler = SeededInfiniteSampler(len(self.train_set), self.recipe.seed, start=self.images_seen,
                                        rank=self.rank, world_size=self.world_size)
        workers = self.recipe.data.num_workers
        # A private generator for the workers' base seed: iterating the loader must not consume the
        # global RNG, or a resumed run would draw different crops than an uninterrupted one.
        worker_seed = torch.Generator().manual_seed(self.recipe.seed * 1009 + self.images_seen)
        return DataLoader(self.train_set, batch_size=self.recipe.train.batch_size // self.world_size,
                          sampler=sampler, num_workers=workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=workers > 0, drop_last=True, generator=worker_seed,
                          worker_init_fn=ignore_interrupts_in_worker if workers > 0 else None)

    def preview_images(self) -> torch.Tensor:
        """2 x eval.grid_size fixed test images (structure sources, then texture sources)."""
        if self._preview_images is None:
            g = self.recipe.eval.grid_size
            imgs = test_images(self.recipe, self.test_set)
            self._preview_images = imgs[: 2 * g] if imgs.shape[0] >= 2 * g else torch.cat([imgs[:g], imgs[:g].roll(1, 0)])
        return self._preview_images

    def log_preview(self, artifact_file: str) -> None:
        if self.rank != 0:
            return
        model = self.eval_model()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            image = self.preview(model, self.preview_images())
        model.train(was_training)
        if image is not None:
            self.tracker.log_image(image, artifact_file)

    def fit(self, on_step: Callable[[int, int, dict[str, float], float], None] | None = None) -> TrainResult:
        """Train until ``train.images`` images have been seen. ``on_step(step, total_steps, losses,
        images_per_second)`` is called after every step (the CLI's progress bar)."""
        t = self.recipe.train
        total_steps = self.recipe.steps
        for net in self.networks().values():
            net.train()
        batches = iter(self.loader())
        start, start_images = time.perf_counter(), self.images_seen
        losses: dict[str, float] = {}
        checkpoint = None
        with stop_at_step_boundary() as stop:
            while self.step < total_steps:
                if any_process(stop.requested, self.device):  # every process stops at the same step
                    self._stop_here(stop)
                losses = self.train_step(next(batches))
                skipped = self._check_finite(losses, checkpoint)
                log_now = self.step % t.log_every == 0 or self.step == total_steps or skipped
                if log_now and self.world_size > 1:
                    losses = mean_over_processes(losses, self.device)  # logged losses are of the whole batch
                elapsed = time.perf_counter() - start
                ips = (self.images_seen - start_images) / max(elapsed, 1e-9)
                if self.rank == 0:
                    if log_now and self.step > self.logged_through:  # a resumed run logs each step once
                        skips = {"train/skipped_steps": self.skipped_steps} if self.skipped_steps else {}
                        self.tracker.log_metrics({**{f"train/{k}": v for k, v in losses.items()},
                                                  "train/images_per_second": ips,
                                                  "train/images_seen": self.images_seen, **skips}, step=self.step)
                    if self.step % t.image_every == 0:
                        self.log_preview(f"{self.preview_dir}/step_{self.step:08d}.png")
                    if self.step % t.checkpoint_every == 0 and self.step < total_steps:
                        checkpoint = self._save_whole(stop)
                if on_step is not None:
                    on_step(self.step, total_steps, losses, ips)
            if any_process(stop.requested, self.device):  # asked during the last step: save, do not score
                self._stop_here(stop)
            seconds = time.perf_counter() - start
            checkpoint = self._save_whole(stop) or checkpoint
            self.log_preview(self.preview_name)
            if stop.requested:  # asked while the final checkpoint was written: it is whole, stop here
                raise KeyboardInterrupt
        return TrainResult(
            steps=self.step,
            images_seen=self.images_seen,
            seconds=seconds,
            images_per_second=(self.images_seen - start_images) / max(seconds, 1e-9),
            checkpoint=checkpoint,
            final_losses=losses,
        )


def build_trainer(recipe: Recipe, **kwargs: Any) -> Trainer:
    """The trainer of the recipe's ``model.family`` (keyword arguments as for :class:`Trainer`)."""
    return TRAINERS.get(recipe.model.family)(recipe, **kwargs)
