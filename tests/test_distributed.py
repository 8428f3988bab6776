"""Training as several processes (torch.distributed, gloo on the CPU): the processes stay in step,
and `torchrun ... swapbench run` logs one MLflow run from rank 0."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from conftest import TINY, run_cli
from safetensors.torch import load_file, save_file

from swapbench.checkpoint import flatten_state
from swapbench.errors import UserError
from swapbench.recipe import recipe_from_dict

STEPS = 3
RECIPE = {**TINY, "train": {**TINY["train"], "images": 4 * STEPS, "checkpoint_every": 1000, "image_every": 1000}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_as(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from swapbench.training import distributed
    from swapbench.training.trainer import build_trainer

    procs, device = distributed.start(torch.device("cpu"))
    # the hook replaces each gradient by the mean over processes
    layer = torch.nn.Linear(3, 2)
    for p in layer.parameters():
        p.grad = torch.full_like(p, float(rank + 1))  # 1 on rank 0, 2 on rank 1
    distributed.average_gradients(torch.optim.SGD(layer.parameters(), lr=0.1))
    means = {k: float(p.grad.unique()) for k, p in layer.named_parameters()}
    losses = distributed.mean_over_processes({"a": float(rank), "b": 10.0 * rank}, device)
    torch.save({"grad_means": means, "losses": losses}, f"{out}/checks{rank}.pt")

    trainer = build_trainer(recipe_from_dict(RECIPE), device=device, rank=procs.rank, world_size=procs.world_size)
    trainer.fit()
    save_file(flatten_state({k: v.state_dict() for k, v in trainer.networks().items()})[0], f"{out}/rank{rank}.safetensors")
    distributed.finish()


def test_processes_average_gradients_and_end_with_the_same_weights(tmp_path):
    mp.spawn(_train_as, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        checks = torch.load(tmp_path / f"checks{rank}.pt", weights_only=True)
        assert checks["grad_means"] == {"weight": 1.5, "bias": 1.5}  # the mean, not the sum
        assert checks["losses"] == {"a": 0.5, "b": 5.0}
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    # each process saw other images; only averaged gradients keep their weights identical
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and training moved them: they differ from the initial weights
    from swapbench.training.trainer import build_trainer

    initial = flatten_state({k: v.state_dict() for k, v in build_trainer(recipe_from_dict(RECIPE)).networks().items()})[0]
    assert any(not torch.equal(a[k], initial[k]) for k in a)


def test_world_size_needs_a_process_group_a_batch_that_splits_and_a_swap_ae_recipe(tmp_path):
    from test_baselines import SG2

    from swapbench.training.trainer import build_trainer

    with pytest.raises(UserError, match="start swapbench with torchrun"):
        build_trainer(recipe_from_dict(RECIPE), rank=0, world_size=2)
    for n in (3, 4):  # 4 images do not split over 3, and leave 1 per process over 4
        with pytest.raises(UserError, match=f"must split over {n} processes into at least 2 images each"):
            build_trainer(recipe_from_dict(RECIPE), rank=0, world_size=n)
    with pytest.raises(UserError, match="'stylegan2' recipe in 2 processes is not supported yet"):
        build_trainer(recipe_from_dict(SG2), rank=0, world_size=2)
    # commands that do not train refuse to run under torchrun
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    done = run_cli("leaderboard", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "`swapbench leaderboard` runs in one process" in done.stderr


def test_torchrun_run_logs_one_mlflow_run_from_rank_0(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**RECIPE, "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}))
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "swapbench", "run", "tiny.yaml",
                           "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run ") == 1 and "recon_psnr" in done.stdout  # only rank 0 reports
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.MlflowClient().search_runs([mlflow.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["train/images_seen"] == 4 * STEPS and run.data.metrics["train/steps"] == STEPS
    assert len(list(tmp_path.glob("checkpoints/*/last.safetensors"))) == 1


# terms that pair or crop images within one process's share of the batch (swaps, co-occurrence crops,
# minibatch stddev) make several processes train differently from one by design (see
# swapbench.training.distributed); without them, gradient averaging must reproduce the whole batch's step
NO_SHARE_COUPLING = {**RECIPE, "model": {**RECIPE["model"], "cooccur_discriminator": None},
                     "discriminator": {**RECIPE["discriminator"], "mbstd": 0},
                     "loss": {**RECIPE["loss"], "cooccur": 0, "patch_r1": 0, "g_swap": 0, "d_swap": 0}}
TWO_NODE_ATOL = 1e-5  # float32 sums in another order; measured 2.4e-7 at most after 3 steps (weights up to 3.9)


def test_two_torchrun_nodes_reach_the_single_process_weights(tmp_path):
    """Two `torchrun` invocations (node ranks 0 and 1, one process each) against one rendezvous endpoint on
    127.0.0.1, in a network namespace of the test's own, train one run; its weights are one process's."""
    from test_ray_sweep import _namespace

    from swapbench.checkpoint import load_checkpoint
    from swapbench.training.trainer import build_trainer

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(NO_SHARE_COUPLING))
    node = (f"{sys.executable} -m torch.distributed.run --nnodes 2 --nproc_per_node 1 --master_addr 127.0.0.1 "
            "--master_port 29500 --node_rank {} -m swapbench train tiny.yaml --no-progress > node{}.log 2>&1")
    script = (f"ip link set lo up && ({node.format(0, 0)} & a=$!; {node.format(1, 1)}; b=$?; wait $a; "
              "test $? -eq 0 -a $b -eq 0)")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run([*_namespace(), "sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    logs = "".join((tmp_path / f"node{i}.log").read_text()[-2000:] for i in range(2) if (tmp_path / f"node{i}.log").exists())
    assert done.returncode == 0, done.stderr + logs
    (ckpt,) = tmp_path.glob("checkpoints/*/last.safetensors")  # rank 0 alone writes
    state, meta = load_checkpoint(ckpt)
    assert meta["step"] == STEPS
    two_nodes = flatten_state({k: v for k, v in state.items() if k in ("autoencoder", "discriminator")})[0]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe = recipe_from_dict(NO_SHARE_COUPLING)
        initial = build_trainer(recipe)
        start = flatten_state({k: v.state_dict() for k, v in initial.networks().items()})[0]
        trainer = build_trainer(recipe)
        trainer.fit()
        one = flatten_state({k: v.state_dict() for k, v in trainer.networks().items()})[0]
    finally:
        torch.set_num_threads(threads)
    assert one.keys() == two_nodes.keys()
    worst = max((one[k].double() - two_nodes[k].double()).abs().max().item() for k in one)
    moved = max((one[k].double() - start[k].double()).abs().max().item() for k in one)
    assert worst <= TWO_NODE_ATOL < moved / 100, (worst, moved)
    print(f"two torchrun nodes vs one process: max |weight difference| {worst:.2e} after {STEPS} steps (moved {moved:.2e})")
