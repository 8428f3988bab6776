"""The model zoo: a 2-step run published as a zoo model, then used by name (zoo:NAME) in evaluate,
edit, figure swaps and project; damaged, missing and unknown models are one-line errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from conftest import TINY
from conftest import invoke_cli as invoke
from PIL import Image

TINY_RUN = {**TINY, "name": "tiny_zoo",
            "train": {**TINY["train"], "images": 8, "checkpoint_every": 1000, "image_every": 1000, "threads": 1},
            "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}
NAME = "tiny_ref"
# a StyleGAN2 baseline on the same data, published too (project compares it with the swap_ae model)
SG2_RUN = {**TINY_RUN, "name": "tiny_zoo_sg2",
           "model": {**TINY["model"], "family": "stylegan2", "generator": "stylegan2", "cooccur_discriminator": None},
           "loss": {"cooccur": 0, "patch_r1": 0, "r1_interval": 2},
           "stylegan2": {"w_dim": 16, "mapping_layers": 2, "path_length_interval": 2},
           "eval": {**TINY_RUN["eval"], "metrics": ["sample_kid"]}}  # trained without scoring




def one_line_error(result: tuple[int, str, str]) -> str:
    code, stdout, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 2, result
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stdout + stderr
    return lines[0]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict:
    """A finished 2-step run (scored with recon_psnr only) in a fresh store, published as zoo:tiny_ref."""
    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.publish import publish
    from swapbench.recipe import load_recipe

    ws = tmp_path_factory.mktemp("zoo_ws")
    (ws / "tiny.yaml").write_text(yaml.safe_dump(TINY_RUN))
    store = f"sqlite:///{ws / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        mp.setenv("MLFLOW_TRACKING_URI", store)
        summary = train_and_evaluate(load_recipe(ws / "tiny.yaml"), progress=False)
        folder, manifest = publish(summary.run_id, NAME, description="a 2-step test model", into=ws / "zoo")
        (ws / "sg2.yaml").write_text(yaml.safe_dump(SG2_RUN))
        sg2 = train_and_evaluate(load_recipe(ws / "sg2.yaml"), evaluate_after=False, progress=False)
        publish(sg2.run_id, "tiny_sg2", into=ws / "zoo")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(ws / f"{name}.png")
    return {"ws": ws, "store": store, "run_id": summary.run_id, "scores": summary.scores, "folder": folder,
            "manifest": manifest}


@pytest.fixture
def in_ws(published, monkeypatch) -> dict:
    """Run in the workspace, with its store, and its zoo folder as the only zoo (not the checkout's)."""
    from swapbench import zoo

    monkeypatch.chdir(published["ws"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", published["store"])
    monkeypatch.setenv("SWAPBENCH_ZOO", str(published["ws"] / "zoo"))
    monkeypatch.setenv("SWAPBENCH_GIT_COMMIT", "test")
    monkeypatch.setattr(zoo, "CHECKOUT_ZOO", None)
    monkeypatch.setattr(zoo, "INSTALLED_ZOO", published["ws"] / "no_installed_zoo")
    return published


def _runs(store: str) -> dict[str, str]:
    client = mlflow.MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {r.info.run_id: r.info.status for r in runs}


def test_publish_keeps_only_the_scored_network_with_its_recipe_and_manifest(in_ws):
    from safetensors import safe_open

    from swapbench.checkpoint import sha256_file
    from swapbench.recipe import load_recipe

    folder, m = in_ws["folder"], in_ws["manifest"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.safetensors", "recipe.yaml"]
    assert json.loads((folder / "manifest.json").read_text()) == m
    weights = folder / "model.safetensors"
    assert m["weights"]["sha256"] == sha256_file(weights) and m["weights"]["bytes"] == weights.stat().st_size
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o666 & ~umask}  # not private to the publisher
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
        header = json.loads(f.metadata()["meta"])
    # the EMA autoencoder that the run scored, and nothing else (no discriminators, optimisers, RNG)
    assert m["weights"]["network"] == "ema" and keys and all(k.startswith("ema.") for k in keys)
    assert header["run_id"] is None and header["trained_in_run"] == in_ws["run_id"] and header["zoo"] == NAME
    run_checkpoint = in_ws["ws"] / "checkpoints" / in_ws["run_id"] / "last.safetensors"
    assert m["weights"]["bytes"] < run_checkpoint.stat().st_size / 3
    assert load_recipe(folder / "recipe.yaml").hash() == m["recipe_hash"]

    assert m["name"] == NAME and m["description"] == "a 2-step test model" and m["run_id"] == in_ws["run_id"]
    assert m["recipe"] == "tiny_zoo" and m["family"] == "swap_ae" and m["resolution"] == 16
    t = m["training"]
    assert (t["steps"], t["images"], t["batch_size"]) == (2, 8, 4)
    assert t["wall_minutes"] is not None and t["cpu_minutes"] is not None and t["cpu_model"] and t["threads"] == "1"
    assert m["scores"]["recon_psnr"] == pytest.approx(in_ws["scores"]["recon_psnr"])
    assert not any(k.startswith(("train/", "eval/")) for k in m["scores"])
    assert m["data"]["dataset"] == "photos" and set(m["data"]["splits"]) == {"train", "test"}
    assert len(m["data"]["sha256"]) == 14 and all(len(h) == 64 for h in m["data"]["sha256"].values())
    assert len(m["git_commit"]) >= 7


def test_zoo_list_names_the_model(in_ws):
    code, stdout, stderr = invoke(["zoo", "list"])
    assert code == 0, stderr
    assert NAME in stdout and "tiny_zoo" in stdout


def test_evaluate_by_name_scores_the_published_weights_and_logs_nowhere(in_ws):
    before = _runs(in_ws["store"])
    code, stdout, stderr = invoke(["evaluate", f"zoo:{NAME}", "--metrics", "recon_psnr", "--json"])
    assert code == 0 and stdout.strip(), (code, stdout, stderr)
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["scores"]["recon_psnr"] == pytest.approx(in_ws["manifest"]["scores"]["recon_psnr"], abs=1e-5)
    assert _runs(in_ws["store"]) == before  # no run of this store was opened or changed
    # the weights file itself is a checkpoint too: its hash comes from the manifest beside it
    code, stdout, stderr = invoke(["evaluate", str(in_ws["folder"] / "model.safetensors"), "--metrics", "recon_psnr"])
    assert code == 0 and f"zoo:{NAME}, ema weights" in stdout, stderr


def test_edit_by_name(in_ws, tmp_path):
    out = tmp_path / "swap.png"
    code, stdout, stderr = invoke(["edit", "swap", "--run", f"zoo:{NAME}", "--structure", "a.png", "--texture", "b.png",
                                   "--alpha", "0,1", "--out", str(out), "--cell", "16", "--device", "cpu"])
    assert code == 0, stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["run"] == f"zoo:{NAME}" and record["commit"] == in_ws["manifest"]["git_commit"]
    assert Image.open(out).size[0] == 4 + 4 * (16 + 4)  # structure, texture, two alphas
    grid = tmp_path / "grid.png"
    code, stdout, stderr = invoke(["edit", "grid", "--run", f"zoo:{NAME}", "--structure", "a.png", "--structure",
                                   "b.png", "--texture", "b.png", "--out", str(grid), "--cell", "32", "--device", "cpu"])
    assert code == 0, stderr
    assert Image.open(grid).size == (2 + 2 * (32 + 2), 2 + 3 * (32 + 2))  # 16 px images drawn at 2x: 2 columns, 3 rows
    assert json.loads(grid.with_suffix(".json").read_text())["operation"] == "grid"


def test_figure_swaps_by_name_matches_the_run_it_came_from(in_ws, tmp_path):
    out = tmp_path / "fig.png"
    code, _, stderr = invoke(["figure", "swaps", "--runs", f"zoo:{NAME},{in_ws['run_id']}", "--n", "2",
                              "--cell", "16", "--out", str(out)])
    assert code == 0, stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert [r["run_id"] for r in record["runs"]] == [f"zoo:{NAME}", in_ws["run_id"]]
    assert record["runs"][0]["label"] == f"zoo:{NAME}" and record["runs"][0]["git_commit"] == in_ws["manifest"]["git_commit"]
    sheet = np.asarray(Image.open(out))
    header, pad, cell = max(18, 16 // 5), 4, 16
    rows = sheet[header + pad:]
    zoo_column = rows[:, pad + 2 * (cell + pad): pad + 2 * (cell + pad) + cell]
    run_column = rows[:, pad + 3 * (cell + pad): pad + 3 * (cell + pad) + cell]
    assert np.array_equal(zoo_column, run_column)  # the published weights are the run's scored (EMA) weights


def test_project_by_name_with_a_published_stylegan2_baseline(in_ws):
    sg2 = json.loads((in_ws["folder"].parent / "tiny_sg2" / "manifest.json").read_text())
    assert sg2["family"] == "stylegan2" and sg2["weights"]["network"] == "ema" and sg2["scores"] == {}
    code, stdout, stderr = invoke(["project", "--methods", "sae,sg2_w", "--n", "2", "--steps", "2",
                                   "--run", f"zoo:{NAME}", "--run", "zoo:tiny_sg2", "--device", "cpu",
                                   "--no-progress"])
    assert code == 0, stderr
    client = mlflow.MlflowClient(in_ws["store"])
    (run,) = client.search_runs([client.get_experiment_by_name("projection").experiment_id],
                                max_results=1, order_by=["start_time DESC"])
    assert run.data.params["run.sae"] == f"zoo:{NAME}" and run.data.params["run.sg2_w"] == "zoo:tiny_sg2"
    assert run.data.metrics["sae.seconds_per_image"] > 0 and run.data.metrics["sg2_w.seconds_per_image"] > 0


@pytest.fixture
def damaged_zoo(in_ws, tmp_path, monkeypatch) -> Path:
    """A copy of the zoo that the test damages; it comes first on the zoo path."""
    copy = tmp_path / "zoo"
    shutil.copytree(in_ws["folder"].parent, copy)
    monkeypatch.setenv("SWAPBENCH_ZOO", str(copy))
    return copy / NAME


COMMANDS = {
    "evaluate": ["evaluate", f"zoo:{NAME}", "--metrics", "recon_psnr"],
    "edit": ["edit", "swap", "--run", f"zoo:{NAME}", "--structure", "a.png", "--texture", "b.png", "--out", "{tmp}/e.png"],
    "figure": ["figure", "swaps", "--runs", f"zoo:{NAME}", "--out", "{tmp}/f.png"],
    "project": ["project", "--methods", "sae", "--n", "2", "--run", f"zoo:{NAME}", "--no-progress"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_tampered_model_is_a_one_line_error_in_every_command(command, damaged_zoo, tmp_path):
    weights = damaged_zoo / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    line = one_line_error(invoke([a.format(tmp=tmp_path) for a in COMMANDS[command]]))
    assert f"zoo model '{NAME}'" in line and "was changed or damaged" in line and "sha256" in line
    assert not list(tmp_path.glob("*.png"))  # nothing was written


def test_verify_checks_every_model(in_ws, damaged_zoo):
    code, stdout, stderr = invoke(["zoo", "verify"])
    assert code == 0 and f"{NAME}: OK" in stdout, stderr
    weights = damaged_zoo / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, stdout, stderr = invoke(["zoo", "verify", NAME])
    assert code == 1 and f"{NAME}: FAIL" in stderr and "was changed or damaged" in stderr


def test_a_missing_file_is_a_one_line_error(damaged_zoo):
    (damaged_zoo / "model.safetensors").unlink()
    line = one_line_error(invoke(["evaluate", f"zoo:{NAME}"]))
    assert f"zoo model '{NAME}' has no model.safetensors" in line
    (damaged_zoo / "manifest.json").write_text("{not json")
    line = one_line_error(invoke(["evaluate", f"zoo:{NAME}"]))
    assert "is not readable JSON" in line


def test_an_unknown_name_is_a_one_line_error_listing_the_known_names(in_ws):
    line = one_line_error(invoke(["evaluate", "zoo:tiny_rf"]))
    assert "no zoo model 'tiny_rf' (did you mean 'tiny_ref'?)" in line and f"known: {NAME}" in line
    line = one_line_error(invoke(["edit", "swap", "--run", "zoo:", "--structure", "a.png", "--texture", "b.png",
                                  "--out", "x.png"]))
    assert "names no zoo model" in line


def test_an_empty_zoo_says_so(in_ws, tmp_path, monkeypatch):
    monkeypatch.setenv("SWAPBENCH_ZOO", str(tmp_path))
    code, stdout, _ = invoke(["zoo", "list"])
    assert code == 0 and "the zoo holds no model yet" in stdout
    assert "the zoo holds no model yet" in one_line_error(invoke(["evaluate", "zoo:anything"]))


def test_publish_by_command_and_its_refusals(in_ws, tmp_path):
    into = tmp_path / "zoo"
    code, stdout, stderr = invoke(["zoo", "publish", in_ws["run_id"], "again", "--into", str(into)])
    assert code == 0, stderr
    size = (into / "again" / "model.safetensors").stat().st_size
    assert f"{size:,} bytes" in stdout and "zoo:again" in stdout and "SWAPBENCH_ZOO" in stdout
    assert sorted(p.name for p in into.iterdir()) == ["again"]  # no temporary folder left behind

    assert "already exists" in one_line_error(invoke(["zoo", "publish", in_ws["run_id"], "again", "--into", str(into)]))
    code, _, stderr = invoke(["zoo", "publish", in_ws["run_id"], "again", "--into", str(into), "--force",
                              "--description", "replaced"])
    assert code == 0, stderr
    assert json.loads((into / "again" / "manifest.json").read_text())["description"] == "replaced"
    assert sorted(p.name for p in into.iterdir()) == ["again"]

    assert "is not allowed" in one_line_error(invoke(["zoo", "publish", in_ws["run_id"], "Bad Name", "--into", str(into)]))
    assert "no MLflow run" in one_line_error(invoke(["zoo", "publish", "0123456789abcdef", "x", "--into", str(into)]))
    client = mlflow.MlflowClient(in_ws["store"])
    running = client.create_run(client.get_experiment_by_name("tiny_zoo").experiment_id).info.run_id
    try:
        line = one_line_error(invoke(["zoo", "publish", running, "x", "--into", str(into)]))
    finally:
        client.delete_run(running)
    assert "is RUNNING; publish a FINISHED run" in line
    assert sorted(p.name for p in into.iterdir()) == ["again"]
    assert sorted(os.listdir(in_ws["folder"].parent)) == [NAME, "tiny_sg2"]


def test_an_unfinished_run_is_published_only_when_asked_and_scored_at_its_last_checkpoint(in_ws, tmp_path, monkeypatch):
    """A run stopped before its planned images (Ctrl-C or kill) keeps its part's time, is refused
    without --unfinished, and then refused until its last checkpoint is the one its scores are of;
    resumed and finished, its scores at both checkpoints are its history (figure curve --run)."""
    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe
    from swapbench.registry import TRAINERS

    Trainer = TRAINERS.get("swap_ae")
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(
        {**TINY_RUN, "name": "tiny_zoo_long", "train": {**TINY_RUN["train"], "images": 16, "checkpoint_every": 1}}))
    real_step, calls = Trainer.train_step, []

    def stopped_at_the_third_step(self, batch):
        calls.append(self.step)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as Ctrl-C between steps: the last checkpoint is step 2's
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", stopped_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(load_recipe(tmp_path / "long.yaml"), progress=False)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    client = mlflow.MlflowClient(in_ws["store"])
    [run] = client.search_runs([client.get_experiment_by_name("tiny_zoo_long").experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "KILLED"
    assert run.data.metrics["train/steps"] == 2 and run.data.metrics["train/cpu_seconds"] > 0  # the stopped part's time

    into = tmp_path / "zoo"
    assert "is KILLED; publish a FINISHED run" in one_line_error(invoke(["zoo", "publish", run_id, "part", "--into", str(into)]))
    line = one_line_error(invoke(["zoo", "publish", run_id, "part", "--into", str(into), "--unfinished"]))
    assert "scores are of no checkpoint" in line and "swapbench evaluate" in line
    checkpoint = Path("checkpoints") / run_id / "last.safetensors"
    code, _, stderr = invoke(["evaluate", str(checkpoint)])
    assert code == 0, stderr
    code, _, stderr = invoke(["zoo", "publish", run_id, "part", "--into", str(into), "--unfinished"])
    assert code == 0, stderr
    m = json.loads((into / "part" / "manifest.json").read_text())
    t = m["training"]
    assert (t["run_status"], t["finished"], t["steps"], t["images"], t["planned_images"]) == ("KILLED", False, 2, 8, 16)
    assert t["cpu_minutes"] is not None and "recon_psnr" in m["scores"]  # (2 tiny steps round to 0.0 minutes)
    assert client.get_run(run_id).info.status == "KILLED"  # scoring it did not change how it ended
    # resumed to its planned images, it is scored at its end: its score history is one row per scored
    # checkpoint, and its latest scores are the last checkpoint's
    from swapbench.experiments.pipeline import resume_run

    finished = resume_run(run_id, progress=False)
    assert client.get_run(run_id).info.status == "FINISHED" and finished.train.steps == 4
    steps = sorted(m.step for m in client.get_metric_history(run_id, "recon_psnr"))
    assert steps == [2, 4]
    assert client.get_run(run_id).data.metrics["recon_psnr"] == pytest.approx(finished.scores["recon_psnr"])
    code, _, stderr = invoke(["figure", "curve", "--run", run_id, "--x", "images", "--metrics", "recon_psnr",
                              "--out", str(tmp_path / "history.png")])
    assert code == 0, stderr
    points = json.loads((tmp_path / "history.json").read_text())["runs"]
    assert [p["x"] for p in points] == [8, 16] and points[1]["recon_psnr"] == pytest.approx(finished.scores["recon_psnr"])
    assert "leave out --sweep" in one_line_error(invoke(["figure", "curve", "--run", run_id, "--sweep", "x", "--x",
                                                         "images", "--metrics", "recon_psnr", "--out", "h.png"]))
