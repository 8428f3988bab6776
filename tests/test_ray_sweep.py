"""`swapbench sweep --ray`: a 2-variant x 2-seed sweep on a real two-node Ray cluster (127.0.0.1 only, in
the test's own network namespace) logging to a real MLflow server survives a worker process killed
mid-run: every run finishes, every step is logged once, and the weights are those of uninterrupted runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY

from swapbench.errors import UserError

pytest.importorskip("ray")

STEPS, EVERY = 24, 4  # steps per run; a checkpoint every EVERY steps
RECIPE = {**TINY, "train": {**TINY["train"], "images": 4 * STEPS, "log_every": 1, "image_every": 1000,
                            "checkpoint_every": EVERY},
          "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}
SWEEP = {"base": "tiny.yaml", "seeds": [0, 1], "grid": {"model.texture_dim": [4, 8]}}


def _namespace() -> list[str]:
    """unshare's arguments for a network + PID namespace of our own (root, or an unprivileged user namespace)."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) to give Ray a network namespace of its own")
    args = [unshare, "--net", "--pid", "--fork", "--mount-proc", *([] if os.geteuid() == 0 else ["--map-root-user"])]
    if subprocess.run([*args, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare --net failed)")
    return args


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from swapbench.checkpoint import flatten_state, load_checkpoint

    return flatten_state(load_checkpoint(path)[0])[0]


def test_a_ray_sweep_survives_a_worker_killed_mid_run(tmp_path):
    import mlflow

    from swapbench.experiments.leaderboard import build_tables, load_runs
    from swapbench.experiments.sweep import load_sweep
    from swapbench.training.trainer import build_trainer

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(RECIPE))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    scenario = Path(__file__).with_name("ray_cluster_scenario.py")
    start = time.monotonic()
    # the kill comes once a run has a checkpoint at step 4..STEPS-8, so that it has steps left to redo
    done = subprocess.run([*_namespace(), sys.executable, str(scenario), str(tmp_path), str(EVERY), str(STEPS - 2 * EVERY)],
                          capture_output=True, text=True, timeout=500)
    report = json.loads((tmp_path / "scenario.json").read_text())
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert report["returncode"] == 0, report["stderr"]
    killed = report["killed"]
    assert killed, f"no run was caught mid-run; make STEPS larger ({report['stdout']})"
    listening = [line.split()[3] for line in killed["listening"].splitlines()]
    assert listening and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in listening), listening

    # the server's store, read after the server stopped
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'server.db'}")
    client = mlflow.MlflowClient()
    (parent,) = client.search_runs([client.get_experiment_by_name("sweep-sweep").experiment_id],
                                   "tags.swapbench.sweep_id != ''")
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    resumed = {c.info.run_id: c.data.tags.get("swapbench.resumed_at_steps") for c in children}
    # the killed run (and it alone) was retried by Ray and continued from its checkpoint in the same run
    assert {r: s for r, s in resumed.items() if s} == {killed["run_id"]: resumed[killed["run_id"]]}
    at = int(resumed[killed["run_id"]])
    assert at % EVERY == 0 and killed["step_seen"] <= at < STEPS
    duplicates = lost = 0
    for child in children:
        for key in child.data.metrics:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            duplicates += len(steps) - len(set(steps))
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "train/recon_l1")}
        lost += len(set(range(1, STEPS + 1)) - steps)
        assert steps <= set(range(1, STEPS + 1))
    assert (duplicates, lost) == (0, 0)

    # the same weights (and optimiser state) as the runs trained without a kill, in this process
    _, jobs, _ = load_sweep(tmp_path / "sweep.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tasks' thread count (1 CPU each)
    try:
        for job in jobs:
            (child,) = [c for c in children if c.data.tags["swapbench.sweep_key"] == job.key]
            trainer = build_trainer(job.recipe)
            trainer.checkpoint_dir = tmp_path / "uninterrupted" / job.key
            straight = _tensors(trainer.fit().checkpoint)
            on_ray = _tensors(tmp_path / "checkpoints" / child.info.run_id / "last.safetensors")
            assert straight.keys() == on_ray.keys()
            assert [k for k in straight if not torch.equal(straight[k], on_ray[k])] == [], job.variant
    finally:
        torch.set_num_threads(threads)

    # the leaderboard reads the sweep as a local one: two variants, two seeds each
    (table,) = build_tables(load_runs(sweep=parent.info.run_id, uri=f"sqlite:///{tmp_path / 'server.db'}"))
    rows = table.frame[~table.frame["control"].astype(bool)]
    assert sorted(rows["variant"]) == ["model.texture_dim=4", "model.texture_dim=8"] and list(rows["seeds"]) == [2, 2]
    print(f"ray sweep: 4 runs x {STEPS} steps, killed {killed['run_id'][:8]} at step >= {killed['step_seen']}, "
          f"resumed at {at}; duplicates {duplicates}, lost {lost}; sweep {report['sweep_seconds']:.1f} s, test {seconds:.1f} s")


def test_the_cluster_check_refuses_a_store_or_a_folder_the_nodes_do_not_share(tmp_path):
    from swapbench.experiments.ray_sweep import check_fits, check_store
    from swapbench.experiments.sweep import load_sweep

    one = [{"NodeManagerAddress": "127.0.0.1", "Resources": {"CPU": 2.0}}]
    two = [{"NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 2.0}}, {"NodeManagerAddress": "10.0.0.2",
                                                                            "Resources": {"CPU": 4.0}}]
    check_store("sqlite:///mlflow.db", one)  # one node: its own disk is every node's
    check_store("http://127.0.0.1:5000", one)
    check_store("http://10.0.0.1:5000", two)
    for uri in ("sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns"):
        with pytest.raises(UserError, match="file on this machine's disk.*MLFLOW_TRACKING_URI=http://ADDRESS:5000"):
            check_store(uri, two)
    with pytest.raises(UserError, match="loopback address, which the cluster's nodes \\(10.0.0.1, 10.0.0.2\\)"):
        check_store("http://127.0.0.1:5000", two)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**RECIPE, "train": {**RECIPE["train"], "threads": 3}}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml"}))
    _, jobs, _ = load_sweep(tmp_path / "sweep.yaml")
    check_fits(jobs, two)  # 3 CPUs: the second node has 4
    with pytest.raises(UserError, match="asks for 3 CPUs .* which no node of the Ray cluster has"):
        check_fits(jobs, one)


def _one_job(tmp_path, **train):
    from swapbench.experiments.sweep import load_sweep

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**RECIPE, "train": {**RECIPE["train"], **train}}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml"}))
    return load_sweep(tmp_path / "sweep.yaml")[1][0]


def test_a_user_error_comes_back_as_a_result_and_an_early_death_restarts_the_same_run(tmp_path, monkeypatch):
    """The task function itself, outside Ray: a user error is returned (so Ray, which retries only dead
    processes, never retries it), and a retry whose first attempt died before any checkpoint trains that
    same MLflow run from step 0."""
    import mlflow

    from swapbench.experiments.ray_sweep import RAY_TASK_TAG, UserFailure, _ray_run
    from swapbench.experiments.sweep import SWEEP_KEY_TAG

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = _one_job(tmp_path, images=4 * 3, checkpoint_every=1000)
    bad = dataclasses_replace_root(job, tmp_path / "no_such_folder")
    failed = _ray_run(bad, "x", "parent", "s0", 1, str(tmp_path), uri)
    assert isinstance(failed, UserFailure) and "no_such_folder" in failed.message

    # a first attempt that opened its run and died before writing anything else
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("x").experiment_id
    first = client.create_run(exp, tags={RAY_TASK_TAG: "s1", SWEEP_KEY_TAG: job.key}).info.run_id
    assert _ray_run(job, "x", "parent", "s1", 1, str(tmp_path), uri) == first
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and run.data.tags["swapbench.resumed_at_steps"] == "0"
    assert run.data.params["train.images"] == "12"  # described, as the dead attempt may not have
    assert [m.step for m in client.get_metric_history(first, "train/recon_l1")] == [1, 2, 3]
    assert len(client.search_runs([exp])) == 1  # no second run for the same task
    assert _ray_run(job, "x", "parent", "s1", 1, str(tmp_path), uri) == first  # died after finishing: nothing to do


def dataclasses_replace_root(job, root):
    import dataclasses

    recipe = job.recipe.model_validate({**job.recipe.to_dict(), "data": {**job.recipe.data.model_dump(),
                                                                          "dataset": "folder", "root": str(root)}})
    return dataclasses.replace(job, recipe=recipe)


def test_a_ray_address_that_does_not_answer_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from conftest import free_port

    from swapbench.experiments.sweep import run_sweep

    _one_job(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(UserError, match=r"no Ray cluster answers at 127.0.0.1:\d+ .*ray start --head"):
        run_sweep(tmp_path / "sweep.yaml", ray_address=f"127.0.0.1:{free_port()}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml", "tiny.yaml"]
    with pytest.raises(UserError, match="--jobs and --ray do not go together"):
        run_sweep(tmp_path / "sweep.yaml", 2, ray_address="auto")
