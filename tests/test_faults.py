"""Faults a multi-day run meets: a hard crash (SIGKILL) between checkpoints, a diverging loss, a disk
that cannot take the next checkpoint, and several processes writing to one fresh sqlite store."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
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

EXE = str(Path(sys.executable).with_name("swapbench"))


def _write_recipe(folder: Path, steps: int, **train) -> Path:
    recipe = {**TINY, "train": {**TINY["train"], "images": 4 * steps, "image_every": 1000, "threads": 1, **train},
              "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _store(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return flatten_state(load_checkpoint(path)[0])[0]


def _history(uri: str, run_id: str, key: str = "train/recon_l1") -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient(uri).get_metric_history(run_id, key))


def _journal_last_step(folder: Path, runs: str = "*") -> int:
    steps = [0]
    for path in folder.glob(f"checkpoints/{runs}/journal.jsonl"):
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r["kind"] == "metrics" and r.get("step"):
                steps.append(r["step"])
    return max(steps)


def test_sigkill_between_checkpoints_resumes_to_the_same_weights_with_each_step_logged_once(tmp_path):
    steps = 30
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    for folder in (killed, straight):
        folder.mkdir()
        _write_recipe(folder, steps, checkpoint_every=10)
    env = {**os.environ, "MLFLOW_TRACKING_URI": _store(killed)}
    proc = subprocess.Popen([EXE, "train", "tiny.yaml", "--no-progress"], cwd=killed, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # a straight run of the same recipe meanwhile, in its own store, for the reference weights
    reference = subprocess.Popen([EXE, "train", "tiny.yaml", "--no-progress"], cwd=straight,
                                 env={**os.environ, "MLFLOW_TRACKING_URI": _store(straight)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240

    def checkpoint_step() -> int:
        found = list(killed.glob("checkpoints/*/last.json"))
        return json.loads(found[0].read_text())["step"] if found else 0

    while not (checkpoint_step() >= 10 and _journal_last_step(killed) % 10 >= 3):  # 3+ steps past a checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    logged, saved = _journal_last_step(killed), checkpoint_step()
    assert saved < logged < steps, (saved, logged)  # killed between checkpoints, with steps past the last one logged
    (folder,) = killed.glob("checkpoints/*")
    run_id = folder.name
    client = mlflow.MlflowClient(_store(killed))
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody ended it

    done = run_cli("resume", run_id, "--force", "--no-evaluate", "--no-progress", cwd=killed,
                   env={"MLFLOW_TRACKING_URI": _store(killed)})
    assert done.returncode == 0, done.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["swapbench.resumed_at_steps"] == str(saved)
    history = _history(_store(killed), run_id)
    assert history == list(range(1, steps + 1)), history  # none lost, none twice (steps saved+1..logged not again)

    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    (ref_ckpt,) = straight.glob("checkpoints/*/last.safetensors")
    resumed, uninterrupted = _weights(folder / "last.safetensors"), _weights(ref_ckpt)
    assert resumed.keys() == uninterrupted.keys()
    assert not [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]


# -- divergence -------------------------------------------------------------------------------

def _poison_batch_at(monkeypatch, step: int) -> None:
    """Test-only fault: the batch of ``step`` (1-based) is multiplied by NaN, so every loss term is."""
    from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer

    real_step = SwapAutoencoderTrainer.train_step

    def train_step(self, real):
        return real_step(self, real * float("nan") if self.step + 1 == step else real)

    monkeypatch.setattr(SwapAutoencoderTrainer, "train_step", train_step)


@pytest.fixture
def in_tmp_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store(tmp_path))
    return _store(tmp_path)


def test_a_non_finite_loss_stops_at_its_step_keeps_the_last_good_checkpoint_and_fails_the_run(
        tmp_path, in_tmp_store, monkeypatch):
    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe
    from swapbench.training.nonfinite import TrainingDiverged

    recipe = load_recipe(_write_recipe(tmp_path, 6, checkpoint_every=1, log_every=1))
    _poison_batch_at(monkeypatch, 4)
    with pytest.raises(TrainingDiverged) as info:
        train_and_evaluate(recipe, evaluate_after=False, progress=False)
    message = str(info.value)
    assert message.startswith("training diverged at step 4: non-finite loss term 'd_real'")
    assert "(step 3) is intact" in message and "train.on_nonfinite=skip_step" in message
    (ckpt,) = tmp_path.glob("checkpoints/*/last.safetensors")
    assert load_checkpoint(ckpt)[1]["step"] == 3  # the last good one, not overwritten by a NaN state
    assert all(torch.isfinite(t).all() for t in _weights(ckpt).values())
    run = mlflow.MlflowClient(in_tmp_store).get_run(ckpt.parent.name)
    assert run.info.status == "FAILED" and run.data.tags["swapbench.failure"] == message
    assert _history(in_tmp_store, ckpt.parent.name) == [1, 2, 3]


def test_skip_step_skips_counts_and_logs_non_finite_steps(tmp_path, in_tmp_store, monkeypatch):
    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe

    recipe = load_recipe(_write_recipe(tmp_path, 6, checkpoint_every=100, on_nonfinite="skip_step"))
    _poison_batch_at(monkeypatch, 4)
    summary = train_and_evaluate(recipe, evaluate_after=False, progress=False)
    assert summary.train.steps == 6
    state, _ = load_checkpoint(summary.train.checkpoint)
    assert state["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in flatten_state(state)[0].values() if t.is_floating_point())
    client = mlflow.MlflowClient(in_tmp_store)
    skipped = client.get_metric_history(summary.run_id, "train/skipped_steps")
    assert [(m.step, m.value) for m in skipped] == [(4, 1.0), (5, 1.0), (6, 1.0)]
    assert client.get_run(summary.run_id).info.status == "FINISHED"


def test_a_non_finite_gradient_with_finite_losses_is_caught_before_the_weights_change(tiny, tmp_path):
    from swapbench.training.nonfinite import TrainingDiverged
    from swapbench.training.swap_ae_trainer import SwapAutoencoderTrainer

    trainer = SwapAutoencoderTrainer(tiny, checkpoint_dir=tmp_path)
    first = next(trainer.autoencoder.parameters())
    before = {k: v.clone() for k, v in trainer.autoencoder.state_dict().items()}
    first.register_hook(lambda grad: grad * float("nan"))  # test-only fault in one gradient
    with pytest.raises(TrainingDiverged, match=r"at step 1: non-finite gradients in g_optim; no earlier checkpoint"):
        trainer.fit()
    after = trainer.autoencoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the generator step never happened


# -- a failing disk ---------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["ENOSPC", "EROFS"])
def test_a_checkpoint_that_cannot_be_written_stops_with_one_line_and_the_last_one_resumes(
        tmp_path, in_tmp_store, monkeypatch, fault):
    import swapbench.checkpoint as checkpoint_module
    from swapbench.errors import UserError
    from swapbench.experiments.pipeline import resume_run, train_and_evaluate
    from swapbench.recipe import load_recipe

    recipe = load_recipe(_write_recipe(tmp_path, 6, checkpoint_every=2))
    calls = {"n": 0}
    real_save, real_mkstemp = checkpoint_module.save_file, checkpoint_module.tempfile.mkstemp

    def save_file(*args, **kwargs):  # the disk fills up at the second checkpoint
        calls["n"] += 1
        if fault == "ENOSPC" and calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(*args, **kwargs)

    def mkstemp(*args, **kwargs):  # the checkpoint folder turns read-only after the first checkpoint
        # (only that folder: MLflow's artifact uploads, in the journal's thread, also call tempfile.mkstemp)
        if fault == "EROFS" and calls["n"] >= 1 and "checkpoints" in Path(kwargs.get("dir", "")).resolve().parts:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)
    monkeypatch.setattr(checkpoint_module.tempfile, "mkstemp", mkstemp)
    with pytest.raises(UserError) as info:
        train_and_evaluate(recipe, evaluate_after=False, progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot write the checkpoint ")
    assert os.strerror(getattr(errno, fault)) in message and "(step 2) is intact" in message
    (ckpt,) = tmp_path.glob("checkpoints/*/last.safetensors")
    run_id = ckpt.parent.name
    assert load_checkpoint(ckpt)[1]["step"] == 2  # whole: its hash checks out
    assert sorted(p.name for p in ckpt.parent.glob("last*")) == ["last.json", "last.safetensors"]  # no temp files
    assert mlflow.MlflowClient(in_tmp_store).get_run(run_id).info.status == "FAILED"

    monkeypatch.undo()  # space freed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", in_tmp_store)
    summary = resume_run(run_id, evaluate_after=False, progress=False)
    assert summary.train.steps == 6
    assert mlflow.MlflowClient(in_tmp_store).get_run(run_id).info.status == "FINISHED"
    assert _history(in_tmp_store, run_id) == [1, 2, 3, 4, 5, 6]


# -- several processes on one fresh sqlite store ----------------------------------------------

def test_two_runs_and_a_parallel_sweep_started_together_on_a_fresh_sqlite_store_all_finish(tmp_path):
    _write_recipe(tmp_path, 4)
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", "seeds": [1, 2]}))
    env = {**os.environ, "MLFLOW_TRACKING_URI": _store(tmp_path)}
    commands = [[EXE, "run", "tiny.yaml", "--no-progress"], [EXE, "run", "tiny.yaml", "--no-progress"],
                [EXE, "sweep", "two.yaml", "--jobs", "2"]]
    procs = [subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert "database is locked" not in err and "Traceback" not in err
    client = mlflow.MlflowClient(_store(tmp_path))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    training = [r for r in runs if "swapbench.recipe" in r.data.tags]
    assert len(training) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(_history(_store(tmp_path), r.info.run_id) == [1, 2, 3, 4] for r in training)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type = 'table'")]
    assert not [t for t in tables if t.startswith("_alembic_tmp_")]  # the schema migrated once, whole


def test_sigterm_to_a_parallel_sweep_stops_its_running_runs_with_checkpoints_and_starts_no_queued_one(tmp_path):
    _write_recipe(tmp_path, 2000, checkpoint_every=1000)  # long enough to be running when the signal comes
    (tmp_path / "three.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", "seeds": [1, 2, 3]}))
    uri = _store(tmp_path)
    proc = subprocess.Popen([EXE, "sweep", "three.yaml", "--jobs", "2"], cwd=tmp_path,
                            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    def steps_per_run() -> list[int]:
        return sorted(_journal_last_step(tmp_path, run.name) for run in tmp_path.glob("checkpoints/*"))

    while len(steps_per_run()) < 2 or min(steps_per_run()) < 3:  # both runs are training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err, err
    gone = time.monotonic() + 30
    while [pid for pid in workers if Path(f"/proc/{pid}").exists()] and time.monotonic() < gone:
        time.sleep(0.1)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in workers
            if Path(f"/proc/{pid}").exists()}
    assert not left, left  # no worker outlives the sweep
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "swapbench.sweep_key" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in runs} == {"KILLED"}  # the parent too; seed 3 never started
    for child in children:  # each stopped at a step boundary with a whole checkpoint, resumable
        state, meta = load_checkpoint(tmp_path / "checkpoints" / child.info.run_id / "last.safetensors")
        assert 0 < meta["step"] < 2000


def test_sigterm_to_a_one_job_sweep_ends_its_run_and_the_parent_killed(tmp_path):
    _write_recipe(tmp_path, 2000, checkpoint_every=1000)
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", "seeds": [1, 2]}))
    uri = _store(tmp_path)
    proc = subprocess.Popen([EXE, "sweep", "two.yaml"], cwd=tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not [run for run in tmp_path.glob("checkpoints/*") if _journal_last_step(tmp_path, run.name) >= 3]:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err, err
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}  # the run and its parent; seed 2 never started


def test_rerunning_a_killed_sweep_continues_its_interrupted_run_in_the_same_mlflow_run(tmp_path):
    """One MLflow run per model: the sweep run again resumes the KILLED child from its checkpoint (as
    `swapbench resume` would), not a second run of the same variant and seed from step 0."""
    steps = 300
    _write_recipe(tmp_path, steps, checkpoint_every=1000)  # the only checkpoint before the end: the one SIGTERM writes
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", "seeds": [1]}))
    uri = _store(tmp_path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([EXE, "sweep", "one.yaml"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while _journal_last_step(tmp_path) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err
    (ckpt,) = tmp_path.glob("checkpoints/*/last.safetensors")
    killed, stopped_at = ckpt.parent.name, load_checkpoint(ckpt)[1]["step"]
    assert 0 < stopped_at < steps

    again = subprocess.run([EXE, "sweep", "one.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())  # the console wraps long lines
    assert "1 to run (1 of them interrupted runs, continued from their checkpoints)" in said
    assert f"continuing run {killed}" in said
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "swapbench.sweep_key" in r.data.tags]
    assert [c.info.run_id for c in children] == [killed]  # no second run of the model
    run = children[0]
    assert run.info.status == "FINISHED" and run.data.tags["swapbench.resumed_at_steps"] == str(stopped_at)
    assert run.data.metrics["train/steps"] == steps and "recon_psnr" in run.data.metrics
    assert _history(uri, killed) == list(range(1, steps + 1))  # every step logged once
    done = subprocess.run([EXE, "sweep", "one.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 already finished, 0 to run" in " ".join(done.stdout.split()), done.stderr


# -- re-scoring and caches --------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["user error", "crash"])
def test_a_rescoring_that_fails_leaves_the_run_status_as_it_was(tmp_path, in_tmp_store, monkeypatch, failure):
    import swapbench.experiments.pipeline as pipeline
    from swapbench.errors import UserError
    from swapbench.recipe import load_recipe

    summary = pipeline.train_and_evaluate(load_recipe(_write_recipe(tmp_path, 2)), evaluate_after=False, progress=False)

    def broken(ctx, metrics, skip):  # the failure comes while the run is open again, during scoring
        raise UserError("cache damaged") if failure == "user error" else RuntimeError("bug")

    monkeypatch.setattr(pipeline, "evaluate", broken)
    with pytest.raises((UserError, RuntimeError)):
        pipeline.evaluate_checkpoint(summary.train.checkpoint, ["recon_psnr"])
    run = mlflow.MlflowClient(in_tmp_store).get_run(summary.run_id)
    assert run.info.status == "FINISHED" and "swapbench.failure" not in run.data.tags


def test_a_damaged_statistics_cache_file_is_rebuilt_not_used(tmp_path, monkeypatch):
    import numpy as np

    from swapbench.evaluation.metrics.distances import cached_features

    monkeypatch.setenv("SWAPBENCH_HOME", str(tmp_path))
    features = np.arange(24, dtype=np.float32).reshape(4, 6)
    computed = []

    def compute():
        computed.append(1)
        return features

    assert np.array_equal(cached_features({"n": 4}, compute), features)
    assert np.array_equal(cached_features({"n": 4}, compute), features) and len(computed) == 1  # from the cache
    (path,) = (tmp_path / "stats").glob("*.safetensors")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last feature
    path.write_bytes(bytes(data))
    assert np.array_equal(cached_features({"n": 4}, compute), features) and len(computed) == 2  # rebuilt
    assert np.array_equal(cached_features({"n": 4}, compute), features) and len(computed) == 2  # whole again


def test_all_finite_finds_a_nan_or_an_inf_anywhere_and_accepts_huge_finite_values():
    from swapbench.training.nonfinite import all_finite

    tensors = [torch.randn(3, 3), torch.randn(5, dtype=torch.bfloat16), torch.randn(2, 2, 3)]
    assert all_finite(tensors)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = [t.clone() for t in tensors]
        broken[2][1, 0, 2] = bad
        assert not all_finite(broken), bad
    huge = [t.clone() for t in tensors]
    huge[0][0, 0], huge[2][0, 0, 0] = 3e38, -3e38  # their squares would overflow a 2-norm
    assert all_finite(huge)
