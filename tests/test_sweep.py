from __future__ import annotations

import mlflow
import yaml
from conftest import TINY

from swapbench.experiments.leaderboard import build_tables, load_runs
from swapbench.experiments.sweep import load_sweep, run_sweep


def write_sweep(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}))
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump({"base": "tiny.yaml", "grid": {"model.texture_dim": [4, 8]},
                                    "variants": {"no_cooc": ["model.cooccur_discriminator=null", "loss.cooccur=0",
                                                             "loss.patch_r1=0"]}}))
    return path


def test_sweep_runs_children_under_a_parent_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    path = write_sweep(tmp_path)
    _, jobs, _ = load_sweep(path)
    assert [j.variant for j in jobs] == ["model.texture_dim=4", "model.texture_dim=8", "no_cooc"]
    assert jobs[2].recipe.model.cooccur_discriminator is None and jobs[0].recipe.model.texture_dim == 4

    parent, children, skipped = run_sweep(path, echo=lambda *a: None)
    assert len(children) == 3 and skipped == []
    (table,) = build_tables(load_runs(sweep=parent))
    models = table.frame[~table.frame["control"].astype(bool)]
    assert sorted(models["variant"]) == ["model.texture_dim=4", "model.texture_dim=8", "no_cooc"]
    assert set(table.frame["variant"]) - set(models["variant"]) <= {"control: thumbnail_4x"}  # reference rows only
    assert mlflow.get_run(parent).info.status == "FINISHED"
    assert sorted(mlflow.get_run(c).info.run_name for c in children) == [
        "model.texture_dim=4-seed0", "model.texture_dim=8-seed0", "no_cooc-seed0"]  # one name per child, readable

    again_parent, again, skipped = run_sweep(path, echo=lambda *a: None)
    assert again_parent == parent and again == [] and len(skipped) == 3

    # the file gains a variant: a new parent that trains only the new run and tabulates all four
    spec = yaml.safe_load(path.read_text())
    spec["variants"]["wide"] = ["model.channels=8"]
    path.write_text(yaml.safe_dump(spec))
    grown, new, skipped = run_sweep(path, echo=lambda *a: None)
    assert grown != parent and len(new) == 1 and len(skipped) == 3
    (table,) = build_tables(load_runs(sweep=grown))
    rows = table.frame[~table.frame["control"].astype(bool)]
    assert sorted(rows["variant"]) == ["model.texture_dim=4", "model.texture_dim=8", "no_cooc", "wide"]
    assert set(rows["run_ids"].str.cat(sep=" ").split()) == {*children, *new}
    (table,) = build_tables(load_runs(sweep=parent))  # the first parent still shows its own three
    assert len(table.frame[~table.frame["control"].astype(bool)]) == 3
    mlflow.MlflowClient().delete_tag(grown, "swapbench.sweep_keys")  # a parent from before the tag: its children
    (table,) = build_tables(load_runs(sweep=grown))
    assert list(table.frame.loc[~table.frame["control"].astype(bool), "variant"]) == ["wide"]


def test_shipped_ablation_sweep_resolves():
    spec, jobs, _ = load_sweep("ablations")
    assert {j.variant for j in jobs} == {"full", "no_cooc", "no_swap", "no_recon_gan"}
    no_swap = next(j for j in jobs if j.variant == "no_swap").recipe
    assert no_swap.loss.g_swap == 0 and no_swap.loss.d_swap == 0


def test_worker_threads_follow_the_cpu_affinity():
    """`taskset -c 0 swapbench sweep ...` must give its worker 1 thread, not the machine's core count."""
    import os
    import subprocess
    import sys

    import pytest

    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a CPU affinity mask and at least 2 usable cores")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from swapbench.runtime import usable_cores, host_tags; "
            "from swapbench.experiments.sweep import worker_threads; "
            "print(usable_cores(), host_tags()['swapbench.host.cpus'], worker_threads(1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1"]
