"""The one way through swapbench: recipe -> trainer -> evaluator -> MLflow. The CLI and the Python
API both call these functions."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from swapbench.data import test_images
from swapbench.evaluate import EvalContext, evaluate, metric_names
from swapbench.models.build import load_autoencoder
from swapbench.progress import TrainingProgress
from swapbench.recipe import Recipe
from swapbench.runtime import resolve_device
from swapbench.tracking import CHECKPOINT_ARTIFACT_DIR, Tracker, open_run
from swapbench.trainer import Trainer, TrainResult


@dataclass
class RunSummary:
    run_id: str | None
    train: TrainResult
    scores: dict[str, float]


def score_model(model: torch.nn.Module, recipe: Recipe, device: torch.device,
                metrics: Sequence[str] | str | None = None, tracker: Tracker | None = None) -> dict[str, float]:
    """Evaluate ``model`` on the recipe's test split and log the scores (and eval/seconds)."""
    names = metric_names(recipe.eval.metrics if metrics is None else metrics)
    start = time.perf_counter()
    ctx = EvalContext(model.to(device), test_images(recipe), recipe, device, recipe.eval.batch_size)
    scores = evaluate(ctx, names)
    scores["eval/seconds"] = time.perf_counter() - start
    if tracker is not None:
        tracker.log_metrics(scores)
    return scores


def train_and_evaluate(recipe: Recipe, *, evaluate_after: bool = True, progress: bool = True) -> RunSummary:
    """Train ``recipe`` in a new MLflow run, then score it with the recipe's metrics."""
    metric_names(recipe.eval.metrics)  # unknown metric names fail before training, not after
    device = resolve_device(recipe.device)
    with open_run(recipe) as tracker:
        ckpt_dir = Path(recipe.tracking.checkpoint_dir) / tracker.run_id
        trainer = Trainer(recipe, device=device, tracker=tracker, checkpoint_dir=ckpt_dir)
        with TrainingProgress(recipe.steps, enabled=progress, description=recipe.name) as bar:
            result = trainer.fit(on_step=bar.update)
        tracker.log_metrics({"train/seconds": result.seconds, "train/images_per_second": result.images_per_second,
                             "train/steps": result.steps})
        if result.checkpoint is not None and recipe.tracking.log_checkpoint:
            tracker.log_artifact(result.checkpoint, CHECKPOINT_ARTIFACT_DIR)
            tracker.log_artifact(result.checkpoint.with_suffix(".json"), CHECKPOINT_ARTIFACT_DIR)
        scores = score_model(trainer.eval_model(), recipe, device, tracker=tracker) if evaluate_after else {}
        return RunSummary(tracker.run_id, result, scores)


def evaluate_checkpoint(path: str | Path, metrics: Sequence[str] | str | None = None,
                        device: str = "auto", log_to_run: bool = True) -> tuple[dict[str, float], dict]:
    """Score a checkpoint; with ``log_to_run`` the scores go into the MLflow run that wrote it."""
    model, recipe, meta = load_autoencoder(path)
    dev = resolve_device(device)
    if log_to_run and meta.get("run_id"):
        with open_run(recipe, run_id=meta["run_id"]) as tracker:
            return score_model(model, recipe, dev, metrics, tracker), meta
    return score_model(model, recipe, dev, metrics), meta
