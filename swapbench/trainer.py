"""Training: a shared loop (:class:`Trainer`) and one subclass per model family, registered in the
``trainer`` registry under the name a recipe gives as ``model.family``.

The base class owns everything that is the same for every family: data order, EMA of the scored
network, logging, checkpoints with exact resume, throughput. A family says which networks and
optimisers it has, what one step does, and what preview image to log.

The Swapping Autoencoder (``swap_ae``) on a batch of B images x, whose texture sources are
x' = x rolled by one (so A != B within the batch):

- discriminator update: E and G make reconstructions G(E(x)) and swaps G(s(x), t(x')) (no gradient
  to E and G); the image discriminator judges real / reconstructed / swapped images, the
  co-occurrence discriminator judges crops of x' (real) and of the swaps (fake) against reference
  crops of x' (their mean or one per crop, ``loss.cooccur_reference``). After every
  ``r1_interval``-th discriminator update a lazy R1 step follows (images; patches: judged and
  reference crops).
- generator update: L1 reconstruction, GAN terms on reconstructions and swaps, co-occurrence GAN term,
  through the frozen discriminators.

``train.schedule`` orders them: 'alternate' (the authors' optimizer) makes each step one update on
its own minibatch, discriminator first, every step counting its batch as images seen; 'same_batch'
does both updates on one batch per step, the generator update reusing the graph of one E/G forward
pass (exactly equivalent to recomputing it, since E and G have not changed in between). Patch crops
are drawn from the trainer's crop generator (swapbench.models.patches), whose state, with the
schedule's counters, is part of the checkpoint.

Every term whose weight is 0 is skipped entirely. All training state (networks, optimisers, EMA,
RNG, data position) lives in :meth:`Trainer.state_dict`, which a checkpoint holds.
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
from swapbench.checkpoint import load_checkpoint, save_checkpoint
from swapbench.data import SeededInfiniteSampler, build_dataset, test_images
from swapbench.distributed import any_process, mean_over_processes
from swapbench.errors import UserError
from swapbench.models.build import build_autoencoder, build_cooccur_discriminator, build_discriminator
from swapbench.models.patches import random_crops
from swapbench.optim import lazy_regularization_scaled
from swapbench.recipe import Recipe
from swapbench.registry import LOSSES, OPTIMIZERS, TRAINERS
from swapbench.runtime import git_commit, resolve_device, seed_everything
from swapbench.tracking import Tracker
from swapbench.visualize import swap_grid

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
    :meth:`optimizers`, :meth:`train_step` and :meth:`preview`.
    """

    scored: str = "model"
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
        optimiser's gradients over the processes before it steps (see swapbench.distributed)."""
        from swapbench import distributed

        family, batch, n = self.recipe.model.family, self.recipe.train.batch_size, self.world_size
        if family != "swap_ae":
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


@TRAINERS.register("swap_ae", description="The Swapping Autoencoder: E, G, image D and co-occurrence patch D (Park et al. 2020).")
class SwapAutoencoderTrainer(Trainer):
    scored = "autoencoder"
    preview_name = "swap_grid.png"
    preview_dir = "swap_grids"

    @classmethod
    def build_model(cls, recipe: Recipe) -> nn.Module:
        return build_autoencoder(recipe)

    def build(self) -> None:
        recipe, L, opt = self.recipe, self.recipe.loss, self.recipe.optim
        self.autoencoder = build_autoencoder(recipe).to(self.device)
        self.discriminator = build_discriminator(recipe).to(self.device)
        cooccur = build_cooccur_discriminator(recipe)
        self.cooccur = cooccur.to(self.device) if cooccur is not None else None

        self.gan = LOSSES.get(L.gan)
        self.l1 = LOSSES.get("l1")
        self.l2 = LOSSES.get("l2")
        self.r1 = LOSSES.get("r1")
        self.lpips = LOSSES.build("lpips", device=self.device) if L.recon_lpips > 0 else None
        self.use_cooccur = self.cooccur is not None and L.cooccur > 0
        self.use_swaps = L.g_swap > 0 or L.d_swap > 0 or self.use_cooccur
        self.use_r1 = L.r1 > 0 or (self.cooccur is not None and L.patch_r1 > 0)

        self.g_optim = OPTIMIZERS.build(opt.name, params=self.autoencoder.parameters(), lr=opt.lr,
                                        betas=opt.betas, eps=opt.eps)
        d_lr, d_betas = (lazy_regularization_scaled(opt.lr, opt.betas, L.r1_interval)
                         if self.use_r1 else (opt.lr, opt.betas))
        d_params = list(self.discriminator.parameters())
        if self.cooccur is not None:
            d_params += list(self.cooccur.parameters())
        self.d_optim = OPTIMIZERS.build(opt.name, params=d_params, lr=d_lr, betas=d_betas, eps=opt.eps)
        self._init_schedule()

    def networks(self) -> dict[str, nn.Module]:
        nets = {"autoencoder": self.autoencoder, "discriminator": self.discriminator}
        if self.cooccur is not None:
            nets["cooccur"] = self.cooccur
        return nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g_optim": self.g_optim, "d_optim": self.d_optim}

    def preview(self, model: nn.Module, images: torch.Tensor):
        g = self.recipe.eval.grid_size
        return swap_grid(model, images[:g], images[g : 2 * g])

    # -- state of the schedule and the crop draws ------------------------------------------------
    def _init_schedule(self) -> None:
        # Crops come from the trainer's own generator, seeded by (seed, rank) so processes draw different crops.
        self.crop_rng = torch.Generator(device=self.device).manual_seed(self._crop_seed(0))
        self.d_steps = 0  # discriminator updates so far (lazy R1 runs after every r1_interval-th)
        self.g_steps = 0
        self._latest: dict[str, float] = {}  # alternate schedule: the last value of every term of either side

    def _crop_seed(self, step: int) -> int:
        """Seed of this process's crop generator when it starts at ``step`` (fresh runs: step 0)."""
        return self.recipe.seed * 7_919 + 104_729 * self.rank + 15_485_863 * step + 1

    def extra_state(self) -> dict[str, Any]:
        return {"schedule": {"d_steps": self.d_steps, "g_steps": self.g_steps,
                             "crop_rng": self.crop_rng.get_state()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("schedule")
        if saved is None:  # a checkpoint from before the schedule was saved: one D and one G update per step
            log.warning("checkpoint holds no schedule state (written by an older swapbench); patch crops are "
                        "drawn afresh from here, so the run is not bit-identical to an uninterrupted one")
            self.d_steps = self.g_steps = int(state["step"])
            return
        self.d_steps, self.g_steps = int(saved["d_steps"]), int(saved["g_steps"])
        if self.rank > 0:  # the checkpoint holds rank 0's draws; another rank continues with its own
            self.crop_rng.manual_seed(self._crop_seed(int(state["step"])))
            return
        try:
            self.crop_rng.set_state(saved["crop_rng"].cpu())
        except RuntimeError:  # written on another device type (a CUDA generator's state differs from a CPU one's)
            log.warning("the checkpoint's crop generator state is from another device type; patch crops are drawn "
                        "afresh, so the run is not bit-identical to an uninterrupted one")

    def next_update(self) -> str:
        """What the next :meth:`train_step` updates: 'both' (same_batch), else 'discriminator' or
        'generator', starting with the discriminator as the authors' optimizer does."""
        if self.recipe.train.schedule == "same_batch":
            return "both"
        return "discriminator" if self.step % 2 == 0 else "generator"

    # -- one step -----------------------------------------------------------------------------
    def _crops(self, images: torch.Tensor, n: int) -> torch.Tensor:
        co = self.recipe.cooccur
        return random_crops(images, n, co.crop_min, co.crop_max, co.patch_size, generator=self.crop_rng)

    def _reference_features(self, crops: torch.Tensor) -> torch.Tensor:
        """Features (B * n_crops, F) of reference crops (B, n_ref, C, p, p), one row per judged crop:
        their mean per image (loss.cooccur_reference 'mean') or crop i for judged crop i ('per_crop')."""
        n_crops = self.recipe.cooccur.n_crops
        b, n_ref = crops.shape[:2]
        aggregate = self.recipe.loss.cooccur_reference == "mean"
        feats = self.cooccur.extract_features(crops, aggregate=aggregate)
        if aggregate and n_ref != n_crops:  # the mean repeated n_ref times: repeat it n_crops times instead
            feats = feats.view(b, n_ref, -1)[:, :1].expand(-1, n_crops, -1).reshape(b * n_crops, -1)
        return feats

    def _patch_logits(self, reference: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        judged = self.cooccur.extract_features(self._crops(images, self.recipe.cooccur.n_crops))
        return self.cooccur.discriminate(reference, judged)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reconstructions G(E(x)) (of the first half of x only with ``loss.recon_images: first_half``)
        and swaps G(s(x_i), t(x_{i-1})) (None when nothing uses swaps)."""
        ae = self.autoencoder
        structure, texture = ae.encode(x)
        n = x.shape[0] // 2 if self.recipe.loss.recon_images == "first_half" else x.shape[0]
        recon = ae.decode(structure[:n], texture[:n])
        swap = ae.decode(structure, texture.roll(1, dims=0)) if self.use_swaps else None
        return recon, swap

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        """One step of ``train.schedule`` on a batch of real images: with 'same_batch' a discriminator
        and a generator update on this batch; with 'alternate' one of the two (see :meth:`next_update`).
        Returns the unweighted value of every term computed (a term with weight 0 never appears); with
        'alternate' the other side's terms are their values at its last update."""
        x = real.to(self.device, non_blocking=True)
        update = self.next_update()
        out: dict[str, torch.Tensor] = {}
        if update == "both":
            with self._autocast():
                recon, swap = self._forward(x)
            self._discriminator_update(x, recon.detach(), None if swap is None else swap.detach(), out)
            self._generator_update(x, recon, swap, out)
        elif update == "discriminator":
            set_requires_grad(self.autoencoder, False)
            with torch.no_grad(), self._autocast():
                recon, swap = self._forward(x)
            self._discriminator_update(x, recon, swap, out)
            set_requires_grad(self.autoencoder, True)
        else:
            with self._autocast():
                recon, swap = self._forward(x)
            self._generator_update(x, recon, swap, out)
        self._finish_step(x.shape[0], update_ema=update != "discriminator")
        values = {k: float(v.detach()) for k, v in out.items()}
        if update == "both":
            return values
        if update == "discriminator":
            self._latest = {k: v for k, v in self._latest.items() if k in GENERATOR_TERMS}  # R1 only when it ran
        self._latest.update(values)
        return dict(self._latest)

    def _discriminator_update(self, x: torch.Tensor, recon: torch.Tensor, swap: torch.Tensor | None,
                              out: dict[str, torch.Tensor]) -> None:
        """The image and patch discriminators on real images vs detached fakes, then the lazy R1."""
        L = self.recipe.loss
        D = self.discriminator
        texture_src = x.roll(1, dims=0)
        set_requires_grad(D, True)
        set_requires_grad(self.cooccur, True)
        with self._autocast():
            d_loss = x.new_zeros(())
            if L.d_real > 0:
                out["d_real"] = self.gan.d_real(D(x))
                d_loss = d_loss + L.d_real * out["d_real"]
            if L.d_recon > 0:
                out["d_recon"] = self.gan.d_fake(D(recon))
                d_loss = d_loss + L.d_recon * out["d_recon"]
            if L.d_swap > 0:
                out["d_swap"] = self.gan.d_fake(D(swap))
                d_loss = d_loss + L.d_swap * out["d_swap"]
            if self.use_cooccur:
                ref = self._reference_features(self._crops(texture_src, self.recipe.cooccur.n_ref))
                real_logits = self._patch_logits(ref, texture_src)
                fake_logits = self._patch_logits(ref, swap)
                out["d_cooccur"] = self.gan.d_real(real_logits) + self.gan.d_fake(fake_logits)
                d_loss = d_loss + L.cooccur * out["d_cooccur"]
        if d_loss.requires_grad:  # false only when every discriminator term has weight 0
            self.d_optim.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optim.step()
        self.d_steps += 1
        if self.use_r1 and self.d_steps % L.r1_interval == 0:
            self._lazy_r1(x, texture_src, out)

    def _generator_update(self, x: torch.Tensor, recon: torch.Tensor, swap: torch.Tensor | None,
                          out: dict[str, torch.Tensor]) -> None:
        """Reconstruction, GAN and co-occurrence terms of E and G through the (frozen) discriminators."""
        L = self.recipe.loss
        D = self.discriminator
        set_requires_grad(D, False)
        set_requires_grad(self.cooccur, False)
        target = x[: recon.shape[0]]  # what was reconstructed
        with self._autocast():
            g_loss = x.new_zeros(())
            if L.recon_l1 > 0:
                out["recon_l1"] = self.l1(recon.float(), target)
                g_loss = g_loss + L.recon_l1 * out["recon_l1"]
            if L.recon_l2 > 0:
                out["recon_l2"] = self.l2(recon.float(), target)
                g_loss = g_loss + L.recon_l2 * out["recon_l2"]
            if self.lpips is not None:
                out["recon_lpips"] = self.lpips(recon.float(), target).mean()
                g_loss = g_loss + L.recon_lpips * out["recon_lpips"]
            if L.g_recon > 0:
                out["g_recon"] = self.gan.g(D(recon))
                g_loss = g_loss + L.g_recon * out["g_recon"]
            if L.g_swap > 0:
                out["g_swap"] = self.gan.g(D(swap))
                g_loss = g_loss + L.g_swap * out["g_swap"]
            if self.use_cooccur:
                with torch.no_grad():
                    ref = self._reference_features(self._crops(x.roll(1, dims=0), self.recipe.cooccur.n_ref))
                out["g_cooccur"] = self.gan.g(self._patch_logits(ref, swap))
                g_loss = g_loss + L.cooccur * out["g_cooccur"]
        if g_loss.requires_grad:  # false only when every generator term has weight 0
            self.g_optim.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_optim.step()
        self.g_steps += 1
        set_requires_grad(D, True)
        set_requires_grad(self.cooccur, True)

    def _lazy_r1(self, x: torch.Tensor, texture_src: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
        """R1 on real inputs in fp32, times the interval (StyleGAN2's lazy regularisation), as the
        authors weigh it: r1 / 2 x E||dD(x)/dx||^2 for images; for patches patch_r1 / 4 x the
        squared gradient summed over an image's judged AND reference crops, averaged over images."""
        L, co = self.recipe.loss, self.recipe.cooccur
        loss = x.new_zeros(())
        if L.r1 > 0:
            x_r = x.detach().requires_grad_(True)
            out["r1"] = self.r1(self.discriminator(x_r), x_r)
            loss = loss + L.r1 / 2 * out["r1"]
        if self.cooccur is not None and L.patch_r1 > 0:
            judged = self._crops(texture_src, co.n_crops).detach().requires_grad_(True)
            reference = self._crops(texture_src, co.n_ref).detach().requires_grad_(True)
            logits = self.cooccur.discriminate(self._reference_features(reference),
                                               self.cooccur.extract_features(judged))
            out["patch_r1"] = self.r1(logits, [judged, reference])
            loss = loss + L.patch_r1 / 4 * out["patch_r1"]
        self.d_optim.zero_grad(set_to_none=True)
        (loss * L.r1_interval).backward()
        self.d_optim.step()


# the generator update's terms (what an 'alternate' discriminator step keeps from the last generator step)
GENERATOR_TERMS = frozenset({"recon_l1", "recon_l2", "recon_lpips", "g_recon", "g_swap", "g_cooccur"})


def build_trainer(recipe: Recipe, **kwargs: Any) -> Trainer:
    """The trainer of the recipe's ``model.family`` (keyword arguments as for :class:`Trainer`)."""
    return TRAINERS.get(recipe.model.family)(recipe, **kwargs)
