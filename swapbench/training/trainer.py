"""Training: the loop shared by every model family (:class:`Trainer`). Each family subclasses it and
registers in the ``trainer`` registry under the name a recipe gives as ``model.family``: ``swap_ae`` in
:mod:`swapbench.training.swap_ae_trainer`, the StyleGAN2 baselines in baselines/.

The base class owns everything that is the same for every family: data order, EMA of the scored
network, logging, checkpoints with exact resume, throughput, optimisers built from the recipe with the
lazy-regularisation correction of the regularisers a family declares. A family says which networks and
optimisers it has, what one step does, and what preview image to log.

The class is put together from three parts, each in its own module: the loop and the family hooks here;
checkpoints and exact resume in :mod:`swapbench.training.state` (all training state -- networks, optimisers,
EMA, RNG, data position -- lives in :meth:`Trainer.state_dict`, which a checkpoint holds); non-finite
losses and gradients in :mod:`swapbench.training.nonfinite`. Stopping at a step boundary on Ctrl-C or
``kill`` is :mod:`swapbench.training.signals`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from swapbench.data import SeededInfiniteSampler, build_dataset, test_images
from swapbench.errors import UserError
from swapbench.recipe import Recipe
from swapbench.registry import MODELS, OPTIMIZERS, TRAINERS
from swapbench.runtime import process_cpu_seconds, resolve_device, seed_everything
from swapbench.trackers import Tracker
from swapbench.training.distributed import any_process, mean_over_processes
from swapbench.training.nonfinite import NonFiniteGuard
from swapbench.training.optim import lazy_regularization_scaled
from swapbench.training.signals import StopRequest, ignore_interrupts_in_worker, stop_at_step_boundary
from swapbench.training.state import TrainingState

log = logging.getLogger(__name__)


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


class Trainer(TrainingState, NonFiniteGuard):
    """The loop shared by every model family; ``rank``/``world_size`` make it DDP-ready (only rank 0
    logs and checkpoints).

    A subclass implements :meth:`build`, :meth:`networks`, :meth:`optimizers`, :meth:`train_step` and
    :meth:`preview`; it may declare :meth:`regularizers` and set ``multi_process``. The family's scored
    network (evaluated, and averaged by the EMA) is the one its ``model`` registry entry names
    (:data:`swapbench.registry.MODELS`), which also builds it for evaluation without a trainer.
    """

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
        self.cpu_seconds = 0.0  # CPU time of the training loop so far, every resumed part (train.cpu_minutes)
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

    @property
    def scored(self) -> str:
        """The key, in :meth:`networks` and in checkpoints, of the network that is scored (its family's
        ``checkpoint_key`` in the ``model`` registry)."""
        return MODELS.checkpoint_key(self.recipe.model.family)

    # -- what a family defines -------------------------------------------------------------------

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

    def _note_cpu_budget_reached(self, total_steps: int) -> None:
        """Say (log and tag) that train.cpu_minutes ended training before train.images."""
        log.warning("train.cpu_minutes %g reached at step %d of %d (%d images): training ends here",
                    self.recipe.train.cpu_minutes, self.step, total_steps, self.images_seen)
        if self.rank == 0:
            self.tracker.set_tags({"swapbench.ended_by": "train.cpu_minutes",
                                   "swapbench.ended_at_images": str(self.images_seen)})

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

    # -- state --------------------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        """The model to score: the EMA copy when there is one and the recipe asks for it."""
        if self.ema is not None and self.recipe.eval.use_ema:
            return self.ema.module
        return self.model

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
        cpu_budget = None if t.cpu_minutes is None else 60 * t.cpu_minutes
        cpu_mark = process_cpu_seconds()
        with stop_at_step_boundary() as stop:
            while self.step < total_steps:
                if any_process(stop.requested, self.device):  # every process stops at the same step
                    self._stop_here(stop)
                losses = self.train_step(next(batches))
                skipped = self._check_finite(losses, checkpoint)
                now = process_cpu_seconds()
                self.cpu_seconds, cpu_mark = self.cpu_seconds + now - cpu_mark, now
                out_of_cpu = cpu_budget is not None and any_process(self.cpu_seconds >= cpu_budget, self.device)
                log_now = self.step % t.log_every == 0 or self.step == total_steps or skipped or out_of_cpu
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
                    if self.step % t.checkpoint_every == 0 and self.step < total_steps and not out_of_cpu:
                        checkpoint = self._save_whole(stop)
                if on_step is not None:
                    on_step(self.step, total_steps, losses, ips)
                if out_of_cpu:
                    self._note_cpu_budget_reached(total_steps)
                    break
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
