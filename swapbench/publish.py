"""``swapbench zoo publish``: a finished MLflow run's model as a zoo folder (see :mod:`swapbench.zoo`).

Only what inference needs is kept: the network the run scored (its EMA copy when the recipe scored
the EMA), never the discriminators, optimiser states or RNG. The manifest is filled from the run:
its id and commits, images and steps, wall and CPU time summed over every training part (a resumed
run trains in several), the host tags it logged, its data manifest (with the sha256 of each photo or
image file where the files are here), and the scores it logged. The folder is written under a
temporary name and renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swapbench import zoo
from swapbench.errors import UserError
from swapbench.experiments.leaderboard import NOT_SCORES
from swapbench.zoo import ENV, FORMAT, MANIFEST_FILE, MODEL_FILE, RECIPE_FILE, check_name

HOST_TAGS = {"cpu_model": "swapbench.host.cpu_model", "cpu_count": "swapbench.host.cpus",
             "threads": "swapbench.host.threads", "avx512": "swapbench.host.avx512"}


def default_zoo_dir() -> Path:
    """Where ``publish`` writes without --into: the checkout's zoo/, else the first $SWAPBENCH_ZOO folder."""
    if zoo.CHECKOUT_ZOO is not None:
        return zoo.CHECKOUT_ZOO
    first = next((p for p in os.environ.get(ENV, "").split(os.pathsep) if p), None)
    if first is None:
        raise UserError(f"swapbench is not running from a checkout, so it has no zoo/ folder to publish into; pass "
                        f"--into DIR and add DIR to ${ENV} so that commands find the model")
    return Path(first)


def training_record(client, run, meta: dict[str, Any]) -> dict[str, Any]:
    from swapbench.tracking import training_totals

    recipe = meta["recipe"]
    tags = run.data.tags
    totals = training_totals(client, run.info.run_id) or {}
    wall, cpu = totals.get("train/seconds"), totals.get("train/cpu_seconds")
    host = {k: tags.get(tag) for k, tag in HOST_TAGS.items()}
    return {
        "steps": int(meta["step"]), "images": int(meta["images_seen"]),
        "batch_size": recipe["train"]["batch_size"], "device": recipe.get("device"),
        "wall_minutes": None if wall is None else round(wall / 60, 2),
        "cpu_minutes": None if cpu is None else round(cpu / 60, 2),
        **host,
        "host_note": ("as the run's tags record them (the last training part's host)" if any(host.values())
                      else "the run logged no host tags (runs before swapbench logged them)"),
        "resumed_at_steps": tags.get("swapbench.resumed_at_steps"),
    }


def _sha256_files(paths: dict[str, Path]) -> dict[str, str] | None:
    from swapbench.checkpoint import sha256_file

    if not paths or not all(p.is_file() for p in paths.values()):
        return None
    return {name: sha256_file(p) for name, p in paths.items()}


def data_record(run, recipe) -> dict[str, Any]:
    """The run's data manifest, with file hashes: the photos' (as installed here), a folder's files
    (where they are here), or for the synthetic data the rule its factors are seeded by."""
    from swapbench.tracking import download_run_artifact

    try:
        splits = json.loads((download_run_artifact(run.info.run_id, "data_manifest.json")).read_text())
    except (UserError, OSError, json.JSONDecodeError):
        splits = {}
    record: dict[str, Any] = {"dataset": recipe.data.dataset, "resolution": recipe.data.resolution, "splits": splits}
    if recipe.data.dataset == "synthetic":
        record["generator"] = ("swapbench.data.synthetic: item i renders (layout, style) factors, each drawn from "
                               "torch.Generator().manual_seed(4 * factor_id + 2 * split + kind); no data files")
    elif recipe.data.dataset == "photos":
        from swapbench.data.photos import PHOTO_FILES, photo_path

        names = sorted({n for s in splits.values() for n in s.get("photos", [])} or PHOTO_FILES)
        record["sha256"] = _sha256_files({n: photo_path(n) for n in names})
        record["sha256_note"] = "of the photo files installed where the model was published"
    elif recipe.data.dataset == "folder":
        files = {f for s in splits.values() for f in s.get("files", [])}
        root = Path(recipe.data.root or ".")
        record["sha256"] = _sha256_files({f: root / f for f in sorted(files)})
        record["sha256_note"] = ("of the files where the model was published" if record["sha256"] else
                                 "not recorded: the files were not all found where the model was published")
    return record


def scores_record(run) -> dict[str, float]:
    return {k: v for k, v in sorted(run.data.metrics.items()) if not k.startswith(NOT_SCORES)}


def inference_state(state: dict[str, Any], recipe) -> tuple[str, dict[str, Any]]:
    """(key, {key: weights}): the network the run's scores used, nothing else."""
    from swapbench.registry import MODELS

    scored = MODELS.checkpoint_key(recipe.model.family)
    key = "ema" if recipe.eval.use_ema and "ema" in state else scored
    if key not in state:
        raise UserError(f"the run's checkpoint has no '{key}' network; it was not written by a swapbench trainer")
    return key, {key: state[key]}


def readable(folder: Path) -> None:
    """Give ``folder`` and its files the modes the umask allows (mkdtemp and safetensors make them private)."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~mask)


STOPPED = ("KILLED", "FAILED")


def check_status(run, unfinished: bool) -> None:
    """A FINISHED run may be published; with ``unfinished`` also one stopped before its planned images."""
    run_id, status = run.info.run_id, run.info.status
    if status == "FINISHED" or (unfinished and status in STOPPED):
        return
    hint = ("it is still training; stop it (Ctrl-C or kill: it saves a checkpoint) or wait" if status == "RUNNING"
            else f"resume it with `swapbench resume {run_id}`, or pass --unfinished to publish its last checkpoint")
    raise UserError(f"run {run_id} is {status}; publish a FINISHED run ({hint})")


def check_scores_match(run, meta: dict[str, Any], checkpoint: Path) -> None:
    """The run's logged scores must be of the checkpoint that is published (the manifest carries them).
    Runs scored before swapbench tagged the scored checkpoint are taken as scored at their end."""
    from swapbench.checkpoint import recorded_sha256
    from swapbench.experiments.pipeline import SCORED_SHA256_TAG, SCORED_STEP_TAG

    run_id = run.info.run_id
    if meta.get("run_id") != run_id:
        raise UserError(f"checkpoint {checkpoint} belongs to run {meta.get('run_id')}, not {run_id}")
    scored = run.data.tags.get(SCORED_SHA256_TAG)
    if scored is None and run.info.status == "FINISHED":
        return
    if scored != recorded_sha256(checkpoint)[1]:
        was = f"of its checkpoint at step {run.data.tags.get(SCORED_STEP_TAG)}" if scored else "of no checkpoint"
        raise UserError(f"run {run_id}'s scores are {was}, not of its last checkpoint (step {meta.get('step')}); "
                        f"score that one first: `swapbench evaluate {checkpoint}`")


def publish(run_id: str, name: str, description: str | None = None, into: str | Path | None = None,
            force: bool = False, unfinished: bool = False) -> tuple[Path, dict[str, Any]]:
    """Write the zoo folder ``<into>/<name>`` from the finished run ``run_id`` (with ``unfinished``, also
    from the last checkpoint of a run stopped before its planned images); (folder, manifest)."""
    import mlflow

    from swapbench import __version__
    from swapbench.checkpoint import load_checkpoint, sha256_file, write_tensors
    from swapbench.models.build import load_model, recipe_of_checkpoint
    from swapbench.outputs import writable_folder
    from swapbench.runtime import git_commit
    from swapbench.tracking import get_run, run_checkpoint, tracking_uri

    check_name(name)
    root = Path(into) if into is not None else default_zoo_dir()
    dest = root / name
    if dest.exists() and not force:
        raise UserError(f"zoo model '{name}' already exists in {root}; pass --force to replace it, or pick another name")
    writable_folder(root, "--into")  # checked before any work; created only when the model is written
    run = get_run(run_id)
    check_status(run, unfinished)
    checkpoint = run_checkpoint(run)
    state, meta = load_checkpoint(checkpoint)  # hash-checked against the run's sidecar
    check_scores_match(run, meta, checkpoint)
    recipe = recipe_of_checkpoint(meta, checkpoint)
    key, weights = inference_state(state, recipe)
    del state
    client = mlflow.MlflowClient(tracking_uri())
    tags = run.data.tags
    # the recipe's hash as this code defines it, so that the manifest names the recipe.yaml written beside
    # it: a checkpoint records its trainer's hash, and checkpoints written before HASH_NEUTRAL differ
    recipe_hash = recipe.hash()
    weights_meta = {**{k: meta[k] for k in ("step", "images_seen", "recipe", "git_commit",
                                           "swapbench_version") if k in meta}, "recipe_hash": recipe_hash,
                    "run_id": None,  # a zoo model belongs to no run of the user's store: scores are not logged back
                    "trained_in_run": run_id, "zoo": name}

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        write_tensors(tmp / MODEL_FILE, weights, weights_meta)
        (tmp / RECIPE_FILE).write_text(recipe.to_yaml())
        manifest = {
            "format": FORMAT, "name": name,
            "description": description or recipe.description or recipe.name,
            "recipe": recipe.name, "recipe_hash": recipe_hash, "family": recipe.model.family,
            "dataset": recipe.data.dataset, "resolution": recipe.data.resolution,
            "run_id": run_id, "experiment_id": run.info.experiment_id,
            "git_commit": tags.get("swapbench.git_commit", meta.get("git_commit")),
            "resume_git_commits": tags.get("swapbench.resume_git_commits"),
            "score_git_commit": tags.get("swapbench.score_git_commit"),
            "published_by_commit": git_commit(), "swapbench_version": __version__,
            "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": {"file": MODEL_FILE, "sha256": sha256_file(tmp / MODEL_FILE),
                        "bytes": (tmp / MODEL_FILE).stat().st_size, "network": key,
                        "parameters": sum(int(t.numel()) for t in weights[key].values())},
            "training": {**training_record(client, run, meta), "run_status": run.info.status,
                         "planned_images": recipe.train.images,
                         "finished": int(meta["images_seen"]) >= recipe.train.images},
            "data": data_record(run, recipe),
            "scores": scores_record(run),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        readable(tmp)
        load_model(tmp / MODEL_FILE)  # it loads (hash from the manifest, networks from the recipe) before it is named
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            os.replace(dest, old / name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest, manifest
