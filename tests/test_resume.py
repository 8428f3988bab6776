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

    # a finished run cannot be resumed
    finished = run_cli("resume", run_id, cwd=killed, env={"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    assert "already finished" in finished.stderr


def test_resume_refuses_what_it_cannot_continue(tmp_path, monkeypatch):
    from swapbench.errors import UserError
    from swapbench.experiments.pipeline import resume_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    run_id = client.create_run(client.create_experiment("tiny")).info.run_id
    with pytest.raises(UserError, match="still RUNNING in MLflow; .* resume it with --force"):
        resume_run(run_id)
    client.set_terminated(run_id, "KILLED")
    with pytest.raises(UserError, match=f"no checkpoint at checkpoints/{run_id}/last.safetensors"):
        resume_run(run_id)
    # the CLI says the same in one line, exit status 2
    done = run_cli("resume", run_id, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"no checkpoint at checkpoints/{run_id}/last.safetensors" in done.stderr
    with pytest.raises(UserError, match="no MLflow run"):
        resume_run("0123456789abcdef0123456789abcdef")


def _longer(tiny, steps: int = 6):
    """``tiny`` for ``steps`` steps, with no periodic checkpoints (only the ones a stop writes)."""
    train = {**tiny.to_dict()["train"], "images": 4 * steps, "checkpoint_every": 1000}
    return tiny.model_validate({**tiny.to_dict(), "train": train})


def test_a_signal_stops_training_at_a_step_boundary_with_a_checkpoint(tiny, tmp_path):
    from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    trainer = SwapAutoencoderTrainer(_longer(tiny), checkpoint_dir=tmp_path)

    def interrupt_at_step_2(step, total, losses, ips):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the step in flight finishes; the loop stops before step 3

    with pytest.raises(KeyboardInterrupt):
        trainer.fit(on_step=interrupt_at_step_2)
    assert trainer.step == 2
    assert load_checkpoint(tmp_path / "last.safetensors")[1]["step"] == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored


def test_a_second_signal_while_the_checkpoint_is_written_waits_for_it(tiny, tmp_path, monkeypatch):
    from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer

    trainer = SwapAutoencoderTrainer(_longer(tiny), checkpoint_dir=tmp_path)
    real_save = trainer.save

    # SIGTERM, not SIGINT: a shell starts background jobs (such as a CI script) with SIGINT ignored,
    # and an ignored signal stays ignored during training
    def save_while_interrupted(path=None):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the impatient second signal, in the middle of the save
        return real_save(path)

    monkeypatch.setattr(trainer, "save", save_while_interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(on_step=lambda step, *_: os.kill(os.getpid(), signal.SIGTERM) if step == 3 else None)
    meta = load_checkpoint(tmp_path / "last.safetensors")[1]  # whole: its hash checks out
    assert meta["step"] == 3


def test_outside_the_main_thread_and_with_ignored_signals_nothing_changes(tiny, tmp_path):
    import threading

    from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", SwapAutoencoderTrainer(tiny).fit()))
    thread.start()
    thread.join()
    assert result["r"].steps == tiny.steps

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        SwapAutoencoderTrainer(tiny).fit(on_step=lambda *_: os.kill(os.getpid(), signal.SIGINT))  # ignored
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
