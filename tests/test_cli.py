from __future__ import annotations

import json

import mlflow
import pytest
import yaml
from conftest import TINY, run_cli


def one_line_error(proc, exit_code: int = 2) -> str:
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_run_writes_an_mlflow_run_the_client_reads_back(tmp_path, tiny_yaml):
    proc = run_cli("run", str(tiny_yaml), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mlflow.db").is_file()  # the embedded default store in the working directory

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_id in proc.stdout
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["recon_l1_n"] == 8 and m["recon_psnr_n"] == 8 and 0 < m["recon_psnr"] < 60
    # swap scores against the held-out reference, the authors' protocol, disentanglement, intervals, controls
    swap = ["swap_fid", "swap_kid", "swap_fid_vs_structure", "swap_texture_dist", "swap_structure_dist",
            "swap_reencode_texture", "swap_reencode_structure"]
    assert m["swap_fid_real_n"] == 16 and m["swap_fid_n"] == 16
    for score in ["recon_psnr", "recon_lpips_vgg", *swap]:
        for name in (score, *(f"control/{c}/{score}" for c in ("copy_a", "copy_b", "recon_a"))):
            if name.startswith("control/") and score.startswith("recon_"):
                continue
            assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"] or score in ("swap_kid",), name
    assert m["control/copy_a/swap_fid_vs_structure"] == pytest.approx(0, abs=1e-6)  # the authors' score rewards copying
    assert "sifid" not in m and "16 px" in run.data.tags["swapbench.score_note.sifid"]
    assert m["train/images_seen"] == 8 and m["train/steps"] == 2
    history = client.get_metric_history(run.info.run_id, "train/recon_l1")
    assert [h.step for h in history] == [1, 2]
    assert run.data.params["model.texture_dim"] == "8" and run.data.params["data.resolution"] == "16"
    assert len(run.data.tags["swapbench.git_commit"]) >= 7 and run.data.tags["swapbench.recipe"] == "tiny"

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe.yaml", "swap_grid.png", "swap_grids", "checkpoint", "pairs.json", "data_manifest.json"} <= artifacts
    pairs = json.load(open(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="pairs.json", dst_path=str(tmp_path / "dl"))))
    assert len(pairs["pairs"]) == 16 and all(a != b for a, b in pairs["pairs"]) and pairs["dataset"] == "photos"
    assert pairs["reference"]["n"] == 16 and pairs["reference"]["indices"] == [8, 24]
    board = run_cli("leaderboard", "--experiment", "tiny", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    for text in ("swap_fid ↓", "swap_texture_dist ↓", "swap_structure_dist ↓", "control: copy_a", "control: copy_b",
                 "control: recon_a", "seeds"):
        assert text in board.stdout, text
    logged = yaml.safe_load(open(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="recipe.yaml", dst_path=str(tmp_path / "dl"))))
    assert logged["model"]["texture_dim"] == 8 and logged["loss"]["r1"] == 10.0  # resolved, defaults included
    from PIL import Image
    grid = Image.open(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="swap_grid.png", dst_path=str(tmp_path / "dl")))
    # (grid_size + 1)^2 cells of 16 px drawn at 64 px (4x nearest), 2 px padding
    assert grid.size == (3 * 64 + 4 * 2, 3 * 64 + 4 * 2)

    # re-score the run by id: the scores go into the same run
    proc = run_cli("evaluate", run.info.run_id, "--metrics", "recon_psnr", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    assert scores["run_id"] == run.info.run_id
    assert scores["scores"]["recon_psnr"] == pytest.approx(m["recon_psnr"], abs=1e-5)


def test_recipes_commands_work_from_any_directory(tmp_path):
    proc = run_cli("recipes", "list", cwd=tmp_path)
    assert proc.returncode == 0 and "ablation_no_cooc" in proc.stdout and "quickstart" in proc.stdout
    proc = run_cli("recipes", "show", "ablation_no_cooc", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["name"] == "ablation_no_cooc" and shown["model"]["cooccur_discriminator"] is None
    assert shown["loss"]["cooccur"] == 0 and shown["loss"]["r1"] == 10.0 and shown["optim"]["lr"] == 0.002
    assert "extends" not in shown
    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("swapbench ")


@pytest.mark.parametrize("args, expected", [
    (["run", "no_such_recipe"], "recipe 'no_such_recipe' not found"),
    (["run", "quickstart", "--set", "model.texure_dim=3"], "did you mean 'model.texture_dim'?"),
    (["run", "quickstart", "--set", "cooccur.patch_size=64"], "cooccur.patch_size=64 is larger than data.resolution=32"),
    (["run", "quickstart", "--set", "model.encoder=resnet"], "unknown encoder 'resnet'"),
    (["run", "quickstart", "--set", "eval.metrics=[recon_psnr, fid]"], "unknown metric 'fid'"),
    (["run", "quickstart", "--set", "model.encoder=timm", "--set", "timm.backbone=resnet_nope"],
     "timm has no model 'resnet_nope'"),
    (["run", "quickstart", "--set", "device=cuda"], None),
    (["run", "quickstart", "--bogus"], "No such option: --bogus"),
    (["evaluate", "missing.safetensors"], "checkpoint missing.safetensors does not exist"),
    (["evaluate", "0123456789abcdef"], "no MLflow run '0123456789abcdef'"),
    (["recipes", "validate", "nothere.yaml"], "recipe 'nothere.yaml' not found"),
    (["registry", "encoderz"], "no registry 'encoderz' (did you mean 'encoder'?)"),
    (["sweep", "ablatons"], "sweep 'ablatons' not found (did you mean 'sweeps/ablations'?)"),
    (["compare", "0123456789abcdef", "fedcba9876543210"], "no MLflow run '0123456789abcdef'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, expected):
    import torch

    if args[-1] == "device=cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        expected = "device 'cuda' was asked for but torch sees no CUDA GPU"
    line = one_line_error(run_cli(*args, cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained
    assert not (tmp_path / "mlflow.db").exists() or not _experiments(tmp_path)[1:]  # no run was opened


def test_debug_shows_the_traceback(tmp_path):
    proc = run_cli("--debug", "recipes", "show", "no_such_recipe", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "error: recipe" in proc.stderr


def test_bad_recipe_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "structure_downsample": 32}}))
    line = one_line_error(run_cli("run", str(bad), cwd=tmp_path))
    assert "model.structure_downsample=32" in line


def test_a_corrupt_folder_stops_before_training_with_exit_2(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(6):
        Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(root / f"ok{i}.png")
    (root / "broken.png").write_text("this is not a png")
    recipe = {**TINY, "data": {**TINY["data"], "dataset": "folder", "root": str(root), "test_fraction": 0.3}}
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(recipe))
    line = one_line_error(run_cli("run", str(path), "--no-progress", cwd=tmp_path))
    assert "broken.png" in line and "data.skip_corrupt: true" in line
    assert not (tmp_path / "mlflow.db").exists() or "tiny" not in _experiments(tmp_path)


def _experiments(tmp_path) -> list[str]:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return [e.name for e in mlflow.MlflowClient().search_experiments()]
