"""`swapbench bench --quick`: every section and column present, the JSON schema, the MLflow run.
Seconds are not asserted (they depend on the machine and its load)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from swapbench.bench import COLUMNS, SCHEMA, SECTIONS, parse_only
from swapbench.bench.machine import StepFlopCounter, cpu_info
from swapbench.errors import UserError
from tests.conftest import run_cli

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.00GHz
flags\t\t: fpu sse2 avx avx2 fma
"""


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick bench in a fresh folder (its own MLflow store): (process, JSON, folder)."""
    folder = tmp_path_factory.mktemp("bench")
    done = run_cli("bench", "--quick", "--json", "out.json", cwd=folder, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, json.loads((folder / "out.json").read_text()), folder


def test_quick_json_has_every_section_and_column(quick):
    _, report, _ = quick
    assert report["schema"] == SCHEMA
    for key in ("cpu_model", "avx512", "avx2", "torch", "threads", "git_commit", "date"):
        assert key in report["header"]
    assert report["header"]["quick"] is True
    assert set(report["sections"]) == {"peaks", *SECTIONS}
    for name, section in report["sections"].items():
        assert section["columns"] == list(COLUMNS[name])
        assert section["rows"], f"section {name} has no rows"
        for row in section["rows"]:
            assert list(row) == list(COLUMNS[name]), (name, row)


def test_quick_measures_what_it_claims(quick):
    _, report, _ = quick
    rows = {s: r["rows"] for s, r in report["sections"].items()}
    assert all(r["gflops"] > 0 for r in rows["peaks"])
    cpu = [r for r in rows["train"] if r["device"] == "cpu"]
    assert [r["recipe"] for r in cpu] == ["small"]
    row = cpu[0]
    for col in ("images_per_second", "gflop_per_image", "achieved_gflops", "conv_peak_gflops", "of_conv_peak",
                "seconds_r1_step", "seconds_plain_step"):
        assert row[col] is not None and row[col] > 0, col
    # FLOPs per image averaged over the R1 interval: above the plain step's count, which the recipe states
    assert 0.5 < row["gflop_per_image"] < 5
    assert math.isclose(row["achieved_gflops"], row["gflop_per_image"] * row["images_per_second"], rel_tol=1e-9)
    cuda = [r for r in rows["train"] if r["device"].startswith("cuda")]
    assert len(cuda) == 1 and (cuda[0]["images_per_second"] or cuda[0]["note"] == "no CUDA device")
    assert {r["dataset"] for r in rows["data"]} >= {"photos", "synthetic", "folder"}
    assert all(r["loader_images_per_second"] > 0 and r["share_of_step"] > 0 for r in rows["data"])
    scores = {r["score"]: r for r in rows["score"]}
    assert {"recon_psnr", "recon_lpips_alex", "swap_kid", "fid_alone", "kid_alone"} <= set(scores)
    assert scores["recon_lpips_alex"]["bare_seconds"] > 0 and scores["recon_lpips_alex"]["vs_bare"] > 0
    assert scores["kid_alone"]["end_to_end_seconds"] > 0
    methods = {r["method"]: r for r in rows["embed"]}
    assert set(methods) == {"sae", "sg2_w", "sg2_wplus", "sg2_encoder", "sg2_encoder_opt"}
    assert methods["sae"]["time_vs_sae"] == 1 and methods["sg2_w"]["flops_vs_sae"] > 1
    assert [r["processes"] for r in rows["scaling"]] == [1, 2]


def test_quick_prints_the_table_and_logs_an_mlflow_run(quick):
    import mlflow

    done, report, folder = quick
    for title in ("Machine limits", "Training", "Data", "Scoring", "Embedding", "Scaling"):
        assert title in done.stdout
    assert "images_per_second" in done.stdout and report["mlflow_run_id"] in done.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    run = client.get_run(report["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "bench"
    assert run.info.status == "FINISHED"
    assert run.data.params["header.threads"] == str(report["header"]["threads"])
    assert run.data.metrics["train.small/cpu.images_per_second"] > 0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"bench.json", "bench.md"}


def test_record_logs_a_table_measured_elsewhere(quick, tmp_path: Path):
    """`--record` logs a --no-log JSON (e.g. from a GPU machine without MLflow) unchanged; a table that is
    already logged, or a file that is not a bench table, is a one-line error."""
    import mlflow

    _, report, _ = quick
    measured_elsewhere = tmp_path / "cuda.json"
    measured_elsewhere.write_text(json.dumps({**report, "mlflow_run_id": None}))
    done = run_cli("bench", "--record", "cuda.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert run.info.run_id in done.stdout and run.data.tags["swapbench.bench.recorded_from"] == "cuda.json"
    assert run.data.params["header.git_commit"] == report["header"]["git_commit"]
    row = next(r for r in report["sections"]["train"]["rows"] if r["device"] == "cpu")
    assert run.data.metrics["train.small/cpu.images_per_second"] == pytest.approx(row["images_per_second"])
    (tmp_path / "logged.json").write_text(json.dumps(report))
    (tmp_path / "junk.json").write_text("{}")
    for name, says in (("logged.json", "already logged"), ("junk.json", "not a bench JSON")):
        done = run_cli("bench", "--record", name, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("error: --record") and says in done.stderr, done.stderr


def test_cuda_device_needs_a_gpu_and_the_gpu_sections(tmp_path: Path):
    import torch

    from swapbench.bench import check_device

    if torch.cuda.is_available():
        with pytest.raises(UserError, match="--only train,score"):
            check_device("cuda", ["train", "embed"])
    else:
        done = run_cli("bench", "--device", "cuda", "--only", "train", cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("error: --device cuda") and "Traceback" not in done.stderr
    with pytest.raises(UserError, match="choose cpu or cuda"):
        check_device("tpu", ["train"])


def test_cpu_flags_are_read_from_cpuinfo():
    info = cpu_info(CPUINFO)
    assert info == {"cpu_model": "Example CPU @ 2.00GHz", "avx512": False, "avx2": True, "cpu_flags_known": True}
    assert cpu_info(CPUINFO.replace("avx2", "avx2 avx512f"))["avx512"] is True


def test_flop_counter_counts_through_a_double_backward():
    """R1 calls torch.autograd.grad(create_graph=True), which torch's own FlopCounterMode breaks."""
    import torch

    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with StepFlopCounter() as counter:
        (grad,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        grad.square().sum().backward()
    forward = 2 * 2 * 4 * 3 * 9 * 6 * 6  # batch x out x in x kernel x positions, 2 per multiply-add
    assert counter.get_total_flops() > 2 * forward


def test_only_rejects_unknown_sections():
    assert parse_only("train,data") == ["train", "data"]
    with pytest.raises(UserError, match="unknown section"):
        parse_only("train,speed")


def test_bench_user_errors_exit_2_before_measuring(tmp_path: Path):
    done = run_cli("bench", "--only", "gpu", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: --only gpu") and "Traceback" not in done.stderr
    done = run_cli("bench", "--quick", "--recipe", "no_such_recipe", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error:") and "no_such_recipe" in done.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing measured or logged


@pytest.mark.slow
def test_scaling_rows_time_one_and_two_torchrun_processes(tiny_yaml: Path):
    from swapbench.bench.training import SCALING_COLUMNS, scaling_rows
    from swapbench.recipe import BenchConfig

    rows = scaling_rows(BenchConfig(scaling_recipe=str(tiny_yaml), train_steps=2), threads=2)
    assert [r["processes"] for r in rows] == [1, 2]
    for row in rows:
        assert list(row) == list(SCALING_COLUMNS) and row["note"] == "", row
        assert row["images_per_second"] > 0 and row["steps_timed"] == 2
    assert rows[0]["vs_one_process"] == 1 and rows[1]["threads_per_process"] == 1
