"""Training against a real `mlflow server`: read back through the MLflow client, through an outage
longer than the client's retries (the server comes back during the run), through one that outlasts
the run (`swapbench sync` uploads the journal later), and an unreachable server at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import yaml
from conftest import TINY, free_port

STEPS = 40
# the MLflow client's own retry budget, made short: the outages below last far longer than it
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}


def _recipe(folder: Path, flush_timeout: float) -> Path:
    recipe = {**TINY, "train": {**TINY["train"], "images": 4 * STEPS, "image_every": 15, "checkpoint_every": 10, "threads": 1},
              "tracking": {"retry_seconds": 0.3, "flush_timeout": flush_timeout, "experiment": folder.name}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _journal_steps(folder: Path) -> list[int]:
    steps = []
    for path in folder.glob("checkpoints/*/journal.jsonl"):
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if r["kind"] == "metrics" and "train/recon_l1" in r["values"]:
                steps.append(r["step"])
    return steps


def _start_training(folder: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, **SHORT_RETRIES}
    exe = str(Path(sys.executable).with_name("swapbench"))
    return subprocess.Popen([exe, "train", "tiny.yaml", "--no-progress"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen, condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def _steps_in_mlflow(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient(uri).get_metric_history(run_id, "train/recon_l1"))


def test_outages_of_the_tracking_server_lose_and_duplicate_nothing(mlflow_server, tmp_path):
    # 1. the server goes away after step 3 for longer than the client retries, and comes back during the run
    back = tmp_path / "server_returns"
    back.mkdir()
    _recipe(back, flush_timeout=120)
    proc = _start_training(back, mlflow_server.uri)
    _wait(proc, lambda: max(_journal_steps(back), default=0) >= 3, "step 3")
    mlflow_server.stop()
    down_at = max(_journal_steps(back))
    outage_start = time.monotonic()
    _wait(proc, lambda: max(_journal_steps(back), default=0) >= down_at + 10, "training during the outage")
    time.sleep(max(0.0, 3 - (time.monotonic() - outage_start)))  # 3 s: far beyond 0 retries of 3 s requests
    during = max(_journal_steps(back)) - down_at
    mlflow_server.start()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "cannot reach the MLflow tracking store" in stderr and "is back after" in stderr
    assert stderr.count("cannot reach the MLflow tracking store") == 1 and stderr.count("is back after") == 1, stderr
    assert "Retrying" not in stderr, stderr  # urllib3's per-retry warnings: one swapbench line per outage instead

    client = mlflow.MlflowClient(mlflow_server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name(back.name).experiment_id])
    run_id = run.info.run_id
    steps = _steps_in_mlflow(mlflow_server.uri, run_id)
    assert steps == list(range(1, STEPS + 1)), steps  # every step once: none lost, none twice
    assert during >= 10  # training went on while the server was down
    assert run.info.status == "FINISHED"
    assert run.data.params["model.texture_dim"] == "8" and run.data.metrics["train/images_seen"] == 4 * STEPS
    assert run.data.tags["swapbench.recipe"] == "tiny"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"recipe.yaml", "swap_grid.png", "swap_grids", "checkpoint", "data_manifest.json"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "checkpoint")} == {"checkpoint/last.safetensors",
                                                                            "checkpoint/last.json"}

    # 2. the server goes away and stays away past the end of the run: it finishes locally, sync uploads later
    away = tmp_path / "server_stays_away"
    away.mkdir()
    _recipe(away, flush_timeout=1)
    proc = _start_training(away, mlflow_server.uri)
    _wait(proc, lambda: max(_journal_steps(away), default=0) >= 3, "step 3")
    mlflow_server.stop()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    (folder,) = away.glob("checkpoints/*")
    assert f"swapbench sync checkpoints/{folder.name}" in stderr
    assert len(_journal_steps(away)) == STEPS
    mlflow_server.start()
    exe = str(Path(sys.executable).with_name("swapbench"))
    done = subprocess.run([exe, "sync", str(folder)], cwd=away, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _steps_in_mlflow(mlflow_server.uri, folder.name) == list(range(1, STEPS + 1))
    run = client.get_run(folder.name)
    assert run.info.status == "FINISHED" and run.data.params["model.texture_dim"] == "8"
    again = subprocess.run([exe, "sync", str(folder)], cwd=away, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "uploaded 0 records" in again.stdout  # nothing twice
    assert _steps_in_mlflow(mlflow_server.uri, folder.name) == list(range(1, STEPS + 1))


def test_an_unreachable_tracking_server_is_one_line_before_any_training(tmp_path):
    _recipe(tmp_path, flush_timeout=1)
    exe = str(Path(sys.executable).with_name("swapbench"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    start = time.monotonic()
    done = subprocess.run([exe, "run", "tiny.yaml", "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    seconds = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: the MLflow tracking server http://127.0.0.1:") and "does not answer" in line
    assert seconds < 60  # seconds (the start-up of Python and torch under load), not MLflow's minutes of retries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # no checkpoint folder, no store
