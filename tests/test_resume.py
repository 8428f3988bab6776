"""Kill a training run as a user would, resume it into the same MLflow run, and get exactly what an
uninterrupted run gets: the same weights, optimiser state and RNG, and every logged step once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from conftest import TINY, run_cli

from swapbench.checkpoint import flatten_state, load_checkpoint

STEPS = 60


def _recipe(tmp: Path) -> Path:
    recipe = {**TINY, "train": {**TINY["train"], "images": 4 * STEPS, "log_every": 1, "image_every": 1000,
                                "checkpoint_every": 10},
              "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    state, _ = load_checkpoint(path)
    return flatten_state(state)[0]


def test_a_killed_run_resumes_in_the_same_mlflow_run_to_the_same_weights(tmp_path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    for folder in (killed, straight):
        folder.mkdir()
        _recipe(folder)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{killed / 'mlflow.db'}"}
    exe = str(Path(sys.executable).with_name("swapbench"))
    proc = subprocess.Popen([exe, "run", "tiny.yaml", "--no-progress"], cwd=killed, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(killed.glob("checkpoints/*/last.safetensors")):  # the step-10 checkpoint: training is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    (ckpt,) = killed.glob("checkpoints/*/last.safetensors")
    run_id = ckpt.parent.name
    stopped_at = load_checkpoint(ckpt)[1]["step"]
    assert 10 <= stopped_at < STEPS, "the kill came too late to test anything; make STEPS larger"
    assert f"training stopped at step {stopped_at} of {STEPS}" in stderr and f"swapbench resume {run_id}" in stderr

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).info.status == "KILLED"

    done = run_cli("resume", run_id, "--no-progress", cwd=killed, env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    assert done.returncode == 0, done.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["swapbench.resumed_at_steps"] == str(stopped_at)
    assert run.data.metrics["train/steps"] == STEPS and "recon_psnr" in run.data.metrics
    history = client.get_metric_history(run_id, "train/recon_l1")
    assert sorted(h.step for h in history) == list(range(1, STEPS + 1))  # every step logged, none twice
    assert {a.path for a in client.list_artifacts(run_id, "checkpoint")} >= {"checkpoint/last.safetensors"}

    # the same recipe without the interruption, in its own store
    done = run_cli("train", "tiny.yaml", "--no-progress", cwd=straight,
                   env={"MLFLOW_TRACKING_URI": f"sqlite:///{straight / 'mlflow.db'}"})
    assert done.returncode == 0, done.stderr
    (reference,) = straight.glob("checkpoints/*/last.safetensors")
    resumed, uninterrupted = _tensors(ckpt), _tensors(reference)
    assert resumed.keys() == uninterrupted.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert not different, different[:5]

    # a finished run cannot be resumed; a run without a local checkpoint says where to look
    assert "already finished" in run_cli("resume", run_id, cwd=killed, env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]}).stderr


def test_resume_needs_the_runs_checkpoint(tmp_path):
    _recipe(tmp_path)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.MlflowClient().create_run(mlflow.MlflowClient().create_experiment("tiny"))
    mlflow.MlflowClient().set_terminated(run.info.run_id, "KILLED")
    done = run_cli("resume", run.info.run_id, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert f"no checkpoint at checkpoints/{run.info.run_id}/last.safetensors" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("resume", "0123456789abcdef0123456789abcdef", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "no MLflow run" in done.stderr
