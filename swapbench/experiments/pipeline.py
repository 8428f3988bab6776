"""The one way through swapbench: recipe -> trainer -> evaluator -> MLflow. The CLI and the Python
API both call these functions."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from swapbench.data import SCORE_SPLITS, build_dataset, scored_splits
from swapbench.data.pairs import pairs_record
from swapbench.errors import UserError
from swapbench.evaluation.evaluate import EvalContext, applicable, build_context, evaluate, metric_names, reference_record
from swapbench.models.build import load_model, recipe_of_checkpoint
from swapbench.outputs import replace_text, writable_folder
from swapbench.progress import TrainingProgress
from swapbench.recipe import Recipe
from swapbench.runtime import git_commit, resolve_device
from swapbench.store import check_reachable
from swapbench.trackers import Tracker
from swapbench.tracking import CHECKPOINT_ARTIFACT_DIR, get_run, local_checkpoint, open_run, tracking_uri
from swapbench.training import distributed
from swapbench.training.memory import check_fits
from swapbench.training.trainer import TrainResult, build_trainer


@dataclass
class RunSummary:
    run_id: str | None
    train: TrainResult
    scores: dict[str, float]

    def describe(self, resumed: bool = False) -> str:
        """One line on the training part: steps, images, time, throughput and checkpoint."""
        t = self.train
        if resumed:
            return (f"run {self.run_id}: resumed to {t.steps} steps, {t.images_seen} images; this part took "
                    f"{t.seconds:.1f} s ({t.images_per_second:.1f} images/s); checkpoint {t.checkpoint}")
        return (f"run {self.run_id}: {t.steps} steps, {t.images_seen} images in {t.seconds:.1f} s "
                f"({t.images_per_second:.1f} images/s); checkpoint {t.checkpoint}")


def requested_metrics(recipe: Recipe, metrics: Sequence[str] | str | None = None) -> tuple[Sequence[str] | str, list[str]]:
    """(metrics, skipped): the recipe's eval.metrics and eval.skip_metrics, or ``metrics`` as asked for
    on the command line, which skips nothing."""
    return (recipe.eval.metrics, list(recipe.eval.skip_metrics)) if metrics is None else (metrics, [])


def score_model(model: torch.nn.Module, recipe: Recipe, device: torch.device,
                metrics: Sequence[str] | str | None = None, tracker: Tracker | None = None,
                test_set: Dataset | None = None, checkpoint: Path | None = None) -> dict[str, float]:
    """Evaluate ``model`` on the split(s) ``eval.split`` names and log the scores (and eval/seconds):
    test scores under their own names, validation scores as ``val/<name>`` (:data:`SCORE_SPLITS`), and
    the tag ``swapbench.scored_splits``. With ``checkpoint`` (the file ``model`` was loaded from or last
    saved to), the run's tags name its step and sha256, so that the scores a run shows are tied to one set
    of weights (a run scored, then trained further, shows scores of an older checkpoint: ``swapbench zoo
    publish`` checks). ``test_set``: the test split, when the caller has built it already."""
    requested, skip = requested_metrics(recipe, metrics)
    metric_names(requested, skip)  # unknown names fail before any work
    start = time.perf_counter()
    scores: dict[str, float] = {}
    contexts: dict[str, EvalContext] = {}
    for split in scored_splits(recipe):
        ctx = build_context(model.to(device), recipe, device, test_set if split == "test" else None, split=split)
        prefix = SCORE_SPLITS[split]
        scores.update({prefix + k: v for k, v in evaluate(ctx, requested, skip).items()})
        # N in images and in independent sources (crops of one photograph are not independent)
        scores[f"eval/{split}_images"] = ctx.n
        scores[f"eval/{split}_sources"] = len(set(ctx.sources)) if ctx.sources is not None else ctx.n
        contexts[split] = ctx
    scores["eval/seconds"] = time.perf_counter() - start
    if tracker is not None:
        # at the checkpoint's step: a run's score histories are its checkpoints' scores, the latest the last's
        step, sha256 = scored_checkpoint(checkpoint) if checkpoint is not None else (None, None)
        tracker.log_metrics({k: v for k, v in scores.items() if v == v}, step=step)  # NaN: not comparable, see the tags
        networks: dict[str, str] = {}
        for ctx in contexts.values():
            networks.update(score_network_params(ctx))
        tracker.log_params(networks)
        notes = {f"{SCORE_SPLITS[s]}{k}": v for s, ctx in contexts.items() for k, v in ctx.notes.items()}
        tracker.set_tags({"swapbench.score_git_commit": git_commit(),  # may differ from the training commit
                          "swapbench.scored_splits": ",".join(contexts),
                          **{f"swapbench.score_note.{k}": v for k, v in notes.items()},
                          **({SCORED_STEP_TAG: str(step), SCORED_SHA256_TAG: sha256} if checkpoint is not None else {})})
        for split, ctx in contexts.items():
            manifest = ctx.dataset.manifest() if hasattr(ctx.dataset, "manifest") else None
            record = pairs_record(ctx.pairs, recipe.eval.pairs_seed, manifest,
                                  reference=reference_record(recipe, ctx.reference, manifest))
            record["split"] = split
            tracker.log_text(json.dumps(record, indent=1), "pairs.json" if split == "test" else f"pairs_{split}.json")
    return scores


SCORED_STEP_TAG = "swapbench.scored_checkpoint_step"
SCORED_SHA256_TAG = "swapbench.scored_checkpoint_sha256"


def scored_checkpoint(checkpoint: Path) -> tuple[int | None, str]:
    """(training step, sha256) of the checkpoint a run's scores are of, as its sidecar records them
    (reading the checkpoint checked the hash): the scores' MLflow step and the run's scored-checkpoint tags."""
    from swapbench.checkpoint import recorded_sha256

    side, sha256 = recorded_sha256(checkpoint)
    step = json.loads(side.read_text()).get("step")
    return (None if step is None else int(step)), sha256


def score_network_params(ctx: EvalContext) -> dict[str, str]:
    """The sha256 of every pretrained network the scores used, so tables never mix networks."""
    from swapbench.weights import WEIGHT_FILES

    return {f"score.{name}_sha256": WEIGHT_FILES[name].sha256 for name in ctx.networks_used()}


def log_manifests(tracker: Tracker, folder: Path, splits: dict[str, Dataset]) -> None:
    """Write each split's manifest (when its dataset has one) next to the run and log it."""
    record = {name: ds.manifest() for name, ds in splits.items() if hasattr(ds, "manifest")}
    if record:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "data_manifest.json"
        replace_text(path, json.dumps(record, indent=1))
        tracker.log_artifact(path)


def train_and_evaluate(recipe: Recipe, *, evaluate_after: bool = True, progress: bool = True,
                       tags: dict[str, str] | None = None, run_id: str | None = None) -> RunSummary:
    """Train ``recipe`` in a new MLflow run (with extra ``tags``), then score it with the recipe's metrics.

    With ``run_id``, train from the start into that existing run instead: a sweep task that Ray retried
    after its first attempt died before writing a checkpoint (see swapbench.experiments.ray_sweep). The
    steps the dead attempt logged (its journal, beside the checkpoints) are not logged again."""
    requested, skip = requested_metrics(recipe)
    metric_names(requested, skip)  # unknown metric names fail before training, not after
    writable_folder(recipe.tracking.checkpoint_dir, "tracking.checkpoint_dir")  # before any work or run
    check_reachable(tracking_uri(recipe), recipe.tracking.connect_timeout)  # a dead server: seconds, not minutes
    check_fits(recipe, resolve_device(recipe.device), scoring=evaluate_after)  # from shapes, before any allocation
    procs, device = distributed.start(resolve_device(recipe.device))
    # the data is opened (a user's folder checked) and every network built before a run exists:
    # a bad folder or an impossible component stops here, without a failed run in MLflow
    train_set, test_set = build_dataset(recipe, "train"), build_dataset(recipe, "test")
    trainer = build_trainer(recipe, device=device, train_set=train_set, test_set=test_set,
                            rank=procs.rank, world_size=procs.world_size)
    applicable(metric_names(requested, skip), trainer.model, requested)  # e.g. swap scores of a GAN
    if not procs.is_main:
        return _train_share(trainer)
    with open_run(recipe, run_id=run_id, tags=tags, describe=True) as tracker:
        if run_id is not None:
            note_resumed(tracker, get_run(run_id, tracking_uri(recipe)).data.tags, 0)
        ckpt_dir = Path(recipe.tracking.checkpoint_dir) / tracker.run_id
        log_manifests(tracker, ckpt_dir, {"train": train_set, "test": test_set})
        return _train_in_run(trainer, tracker, ckpt_dir, test_set, evaluate_after, progress)


def _train_share(trainer) -> RunSummary:
    """A process other than rank 0 under torchrun: train its share of each batch; rank 0 logs,
    checkpoints and scores."""
    return RunSummary(None, trainer.fit(), {})


def _train_in_run(trainer, tracker: Tracker, ckpt_dir: Path, test_set: Dataset, evaluate_after: bool,
                  progress: bool) -> RunSummary:
    """Train (from wherever ``trainer`` stands) to the recipe's budget inside an open run, log the
    final checkpoint, and score it."""
    from swapbench.runtime import host_tags, process_cpu_seconds

    recipe = trainer.recipe
    trainer.tracker, trainer.checkpoint_dir = tracker, ckpt_dir
    trainer.logged_through = tracker.last_logged_step()  # after a hard crash: the steps past the checkpoint
    start = trainer.step
    tracker.set_tags(host_tags())  # the CPU this part trains on (a resumed run: the last part's)
    cpu_start, wall_start, images_start = process_cpu_seconds(), time.perf_counter(), trainer.images_seen

    def log_part(seconds: float) -> None:  # this part's time; the run's totals are the sums over its parts
        if trainer.step > start:  # a run resumed after its last step (e.g. to score it) keeps its training figures
            tracker.log_metrics({"train/seconds": seconds, "train/steps": trainer.step,
                                 "train/images_per_second": (trainer.images_seen - images_start) / max(seconds, 1e-9),
                                 "train/cpu_seconds": process_cpu_seconds() - cpu_start})

    try:
        with TrainingProgress(recipe.steps, enabled=progress, description=recipe.name, start=start) as bar:
            result = trainer.fit(on_step=bar.update)
    except BaseException:  # stopped (Ctrl-C, kill, divergence): the part's time still counts
        log_part(time.perf_counter() - wall_start)
        raise
    log_part(result.seconds)
    if result.checkpoint is not None and recipe.tracking.log_checkpoint:
        tracker.log_artifact(result.checkpoint, CHECKPOINT_ARTIFACT_DIR)
        tracker.log_artifact(result.checkpoint.with_suffix(".json"), CHECKPOINT_ARTIFACT_DIR)
    scores = (score_model(trainer.eval_model(), recipe, trainer.device, tracker=tracker, test_set=test_set,
                          checkpoint=result.checkpoint)
              if evaluate_after else {})
    return RunSummary(tracker.run_id, result, scores)


def resume_run(run_id: str, checkpoint: str | Path | None = None, *, evaluate_after: bool = True,
               progress: bool = True, force: bool = False) -> RunSummary:
    """Continue an interrupted run in its own MLflow run: from its last local checkpoint
    (``<tracking.checkpoint_dir>/<run id>/last.safetensors``, or ``checkpoint``), with the exact
    recipe the checkpoint holds, to the recipe's image budget; then score it as ``run`` would.
    Training resumes bit-exactly (networks, optimisers, EMA, RNG, data position).

    A run MLflow still shows as RUNNING may have a live process; ``force`` resumes it anyway (for a
    run whose process died without ending it: a hard crash, an out-of-memory kill)."""
    from swapbench.checkpoint import load_checkpoint
    from swapbench.errors import UserError
    from swapbench.tracking import get_run

    meta = load_checkpoint(checkpoint)[1] if checkpoint is not None else None
    # a checkpoint names the recipe, and so the tracking store the run was logged to
    uri = tracking_uri(recipe_of_checkpoint(meta, checkpoint)) if meta else None
    run = get_run(run_id, uri)
    status = run.info.status
    if status == "FINISHED":
        raise UserError(f"run {run_id} already finished; resume continues an interrupted (KILLED or FAILED) run")
    if status == "RUNNING" and not force:
        raise UserError(f"run {run_id} is still RUNNING in MLflow; if its process is gone (a hard crash), "
                        f"resume it with --force")
    if checkpoint is None:  # where training wrote it: <tracking.checkpoint_dir>/<run id>/, from the current folder
        checkpoint = local_checkpoint(run.data.params.get("tracking.checkpoint_dir", "checkpoints"), run_id)
        if not checkpoint.is_file():
            raise UserError(f"run {run_id} has no checkpoint at {checkpoint}; run `swapbench resume` from the folder "
                            f"the run started in, or pass --checkpoint PATH")
        meta = load_checkpoint(checkpoint)[1]  # checks the file's hash; the trainer loads it again below
    checkpoint = Path(checkpoint)
    if meta.get("run_id") != run_id:
        raise UserError(f"checkpoint {checkpoint} belongs to run {meta.get('run_id')}, not {run_id}; "
                        f"pass that run's id or its own checkpoint")
    started_with = run.data.tags.get("swapbench.recipe_hash")
    if started_with is not None and meta.get("recipe_hash") != started_with:
        raise UserError(f"checkpoint {checkpoint} holds another recipe than run {run_id} was started with "
                        f"(hash {meta.get('recipe_hash')} vs {started_with}); it cannot continue that run")
    recipe = recipe_of_checkpoint(meta, checkpoint)
    check_fits(recipe, resolve_device(recipe.device), scoring=evaluate_after)
    procs, device = distributed.start(resolve_device(recipe.device))
    train_set, test_set = build_dataset(recipe, "train"), build_dataset(recipe, "test")
    trainer = build_trainer(recipe, device=device, train_set=train_set, test_set=test_set,
                            rank=procs.rank, world_size=procs.world_size)
    trainer.resume(checkpoint)
    if not procs.is_main:
        return _train_share(trainer)
    with open_run(recipe, run_id=run_id) as tracker:
        note_resumed(tracker, run.data.tags, trainer.step)
        return _train_in_run(trainer, tracker, Path(recipe.tracking.checkpoint_dir) / run_id, test_set,
                             evaluate_after, progress)


def note_resumed(tracker: Tracker, tags: dict[str, str], step: int) -> None:
    """Add ``step`` and this commit to the run's resume tags (``swapbench.resumed_at_steps``: each part's start)."""
    steps, commits = tags.get("swapbench.resumed_at_steps"), tags.get("swapbench.resume_git_commits")
    tracker.set_tags({"swapbench.resumed_at_steps": f"{steps},{step}" if steps else str(step),
                      "swapbench.resume_git_commits": f"{commits},{git_commit()}" if commits else git_commit()})


MAX_TEST_IMAGES = 50_000  # the usual FID sample size; more takes hours on a CPU and gigabytes of memory


def check_test_images(n: int, recipe: Recipe) -> int:
    """``n`` test images and pairs are possible: at most MAX_TEST_IMAGES, and the images, their
    reconstructions and swaps (float32) within half of this machine's memory."""
    side = recipe.data.resolution
    need = 3 * n * 3 * side * side * 4
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = need * 2
    fits = min(MAX_TEST_IMAGES, memory // 2 // (3 * 3 * side * side * 4))
    if n > fits:
        raise UserError(f"--n {n} is too many test images at {side} px (at most {fits} here: {MAX_TEST_IMAGES} at most, "
                        "and within half the memory); give a smaller --n")
    return n


def evaluate_checkpoint(path: str | Path, metrics: Sequence[str] | str | None = None,
                        device: str = "auto", log_to_run: bool = True, n: int | None = None,
                        split: str | None = None) -> tuple[dict[str, float], dict]:
    """Score a checkpoint; with ``log_to_run`` the scores go into the MLflow run that wrote it.
    ``n`` rescores with that many test images and swap pairs (each score logs its N); ``split`` (test,
    validation or both) in place of the recipe's eval.split."""
    model, recipe, meta = load_model(path)
    if split is not None:
        if split not in ("test", "validation", "both"):
            raise UserError(f"--split {split} is not a split; use test, validation or both")
        recipe = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"split": split})})
    if n is not None:
        recipe = recipe.with_test_images(check_test_images(n, recipe))
    dev = resolve_device(device)
    check_fits(recipe, dev, training=False)
    requested, skip = requested_metrics(recipe, metrics)
    applicable(metric_names(requested, skip), model, requested)  # a metric that cannot apply fails before the run opens
    if log_to_run and meta.get("run_id"):
        # journaled beside the checkpoint; a failure leaves the run's status as it was
        with open_run(recipe, run_id=meta["run_id"], folder=Path(path).parent, restore_status=True) as tracker:
            return score_model(model, recipe, dev, metrics, tracker, checkpoint=Path(path)), meta
    return score_model(model, recipe, dev, metrics), meta
