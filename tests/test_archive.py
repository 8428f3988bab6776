"""`swapbench archive write|show`: run records as JSON, read from a real sqlite MLflow store."""

from __future__ import annotations

import json

import mlflow
import pytest
from conftest import invoke_cli

from swapbench.errors import UserError
from swapbench.experiments.archive import FORMAT, find_run, load_archive


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("kept")
    with mlflow.start_run(run_name="base-seed0") as run:
        mlflow.log_params({"data.resolution": 64, "tracking.api_token": "hunter2"})
        mlflow.set_tags({"swapbench.recipe": "swap_ae", "swapbench.git_commit": "a" * 40,
                         "mlflow.source.name": "/home/someone/script.py"})
        mlflow.log_metric("recon_lpips_vgg", 0.5, step=1)
        mlflow.log_metric("recon_lpips_vgg", 0.34, step=2)  # the record keeps the last value
        mlflow.log_metrics({"train/cpu_seconds": 1000.0, "train/seconds": 1100.0})  # a first part, then resumed
        mlflow.log_metrics({"recon_lpips_vgg_ci_low": 0.31, "recon_lpips_vgg_ci_high": 0.37, "recon_lpips_vgg_n": 64,
                            "control/thumbnail_4x/recon_lpips_vgg": 0.317, "train/cpu_seconds": 4316.0,
                            "train/seconds": 4400.0})
    mlflow.set_experiment("other")
    with mlflow.start_run(run_name="x"):
        mlflow.log_metric("swap_kid", 0.1)
    return uri, run.info.run_id, tmp_path


def test_write_keeps_identity_params_tags_and_final_metrics_without_system_tags_or_secrets(store):
    _, run_id, tmp = store
    code, out, err = invoke_cli(["archive", "write", "--out", str(tmp / "runs"), "--experiment", "kept"])
    assert code == 0, err
    assert sorted(p.name for p in (tmp / "runs").iterdir()) == ["kept.json"]
    data = json.loads((tmp / "runs" / "kept.json").read_text())
    assert data["format"] == FORMAT and data["experiment"] == "kept"
    (run,) = data["runs"]
    assert run["run_id"] == run_id and run["run_name"] == "base-seed0" and run["status"] == "FINISHED"
    assert run["start_time"].endswith("+00:00") and run["end_time"] >= run["start_time"]
    assert run["params"] == {"data.resolution": "64", "tracking.api_token": "***"}
    assert run["tags"] == {"swapbench.git_commit": "a" * 40, "swapbench.recipe": "swap_ae"}  # no mlflow.source.name
    assert run["metrics"]["recon_lpips_vgg"] == 0.34 and run["metrics"]["train/cpu_seconds"] == 4316.0  # last part
    # the whole run's training time: the sum over its two parts
    assert run["training_totals"] == {"parts": 2, "train/seconds": 5500.0, "train/cpu_seconds": 5316.0}


def test_write_without_experiments_takes_every_one_and_show_finds_a_run_by_prefix(store):
    _, run_id, tmp = store
    assert invoke_cli(["archive", "write", "--out", str(tmp / "runs")])[0] == 0
    assert sorted(p.name for p in (tmp / "runs").iterdir()) == ["kept.json", "other.json"]
    (scored_only,) = json.loads((tmp / "runs" / "other.json").read_text())["runs"]
    assert "training_totals" not in scored_only  # it never trained
    assert find_run(run_id[:8], tmp / "runs")["experiment"] == "kept"
    assert find_run("0" * 32, tmp / "runs") is None
    code, out, err = invoke_cli(["archive", "show", run_id[:10], "--dir", str(tmp / "runs")])
    assert code == 0, err
    text = " ".join(out.split())
    assert run_id in text and "experiment kept" in text and "a" * 40 in text
    assert "recon_lpips_vgg" in text and "0.3400" in text and "[0.3100, 0.3700]" in text
    assert "train/cpu_seconds" not in text
    assert "training: 88.6 CPU minutes, 91.7 wall minutes, 2 part(s)" in text  # 5,316 and 5,500 s over two parts
    assert text.index("recon_lpips_vgg ") < text.index("control/thumbnail_4x")  # the run's scores before the controls


def test_mistakes_are_one_line_errors_and_leave_no_folder(store):
    _, run_id, tmp = store
    code, _, err = invoke_cli(["archive", "write", "--out", str(tmp / "runs"), "--experiment", "kept",
                               "--experiment", "missing"])
    assert code == 2 and "no MLflow experiment 'missing'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "runs").exists()  # nothing half-written
    code, _, err = invoke_cli(["archive", "show", run_id, "--dir", str(tmp / "nowhere")])
    assert code == 2 and "no archive folder" in err
    with pytest.raises(UserError, match="too short"):
        find_run("abc", tmp)
    (tmp / "bad").mkdir()
    (tmp / "bad" / "x.json").write_text('{"runs": []}')
    with pytest.raises(UserError, match="not a swapbench run-record file"):
        load_archive(tmp / "bad" / "x.json")


def test_merge_keeps_the_runs_of_another_store_and_updates_this_stores(store, tmp_path):
    """An experiment run in two stores (two machines, two sessions) archived into one file: --merge keeps the
    file's runs this store lacks, replaces those it holds with its current record, and keeps the order by time."""
    _, run_id, tmp = store
    runs = tmp / "runs"
    assert invoke_cli(["archive", "write", "--out", str(runs), "--experiment", "kept"])[0] == 0
    data = json.loads((runs / "kept.json").read_text())
    elsewhere = {**data["runs"][0], "run_id": "f" * 32, "run_name": "from-another-store",
                 "start_time": "2020-01-01T00:00:00+00:00"}
    stale = {**data["runs"][0], "metrics": {"recon_lpips_vgg": 9.0}}
    (runs / "kept.json").write_text(json.dumps({**data, "runs": [stale, elsewhere]}))

    assert invoke_cli(["archive", "write", "--out", str(runs), "--experiment", "kept", "--merge"])[0] == 0
    kept = load_archive(runs / "kept.json")["runs"]
    assert [r["run_id"] for r in kept] == ["f" * 32, run_id]  # oldest first
    assert kept[1]["metrics"]["recon_lpips_vgg"] == 0.34  # the store's record, not the file's stale one

    assert invoke_cli(["archive", "write", "--out", str(runs), "--experiment", "kept"])[0] == 0  # no --merge: replaced
    assert [r["run_id"] for r in load_archive(runs / "kept.json")["runs"]] == [run_id]

    (runs / "other.json").write_text(json.dumps({**data, "experiment": "kept"}))  # a file of another experiment
    code, _, err = invoke_cli(["archive", "write", "--out", str(runs), "--experiment", "other", "--merge"])
    assert code == 2 and "holds the records of experiment 'kept', not 'other'" in err
