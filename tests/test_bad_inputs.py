"""Every command against a hostile user: each bad input exits with status 2 and one line starting
`error:` that names the problem (and the fix), with no traceback, and leaves nothing behind: no new
file or folder, no new MLflow run, no run whose status changed.

Commands run in-process (typer's CliRunner streams around swapbench's own `main`), in a fresh copy
of a workspace that holds a recipe, a finished, a running and a killed run, checkpoints damaged in
every way, image folders and sweep files. The README's table of bad inputs is generated from CASES
(`SWAPBENCH_WRITE_README=1 pytest tests/test_bad_inputs.py` rewrites it); a test checks it matches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from conftest import ROOT, TINY, free_port
from conftest import invoke_cli as invoke
from PIL import Image

TINY_RECIPE = {**TINY, "train": {**TINY["train"], "images": 8, "checkpoint_every": 1000, "image_every": 1000,
                                 "threads": 1},
               "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}

# (id, command line, what the one line must say). Placeholders: {ws} the workspace, {fin} a FINISHED
# run with its checkpoint, {running} a RUNNING run, {killed} a KILLED run without checkpoint,
# {ckpt} the finished run's checkpoint, {dead} a URL where no server listens.
CASES: list[tuple[str, list[str], str]] = [
    # recipes
    ("recipe-missing", ["run", "no_such_recipe"], "recipe 'no_such_recipe' not found"),
    ("recipe-yaml-error", ["run", "yaml_error.yaml"], "line 2 is not valid YAML"),
    ("recipe-binary", ["run", "binary.yaml"], "is not a text file"),
    ("recipe-not-mapping", ["run", "a_list.yaml"], "must be a YAML mapping"),
    ("recipe-unknown-key", ["run", "unknown_key.yaml"], "unknown key 'model.texure_dim' (did you mean 'model.texture_dim'?)"),
    ("recipe-wrong-type", ["run", "wrong_type.yaml"], "train.batch_size: Input should be a valid integer"),
    ("recipe-extends-cycle", ["run", "cycle_a.yaml"], "recipe extends itself in a cycle"),
    ("recipe-impossible", ["run", "tiny.yaml", "--set", "cooccur.patch_size=32"], "cooccur.patch_size=32 is larger than data.resolution=16"),
    ("recipe-resolution-not-divisible", ["run", "tiny.yaml", "--set", "data.resolution=18"], "must be a power of two that divides data.resolution=18"),
    ("recipe-unknown-encoder", ["run", "tiny.yaml", "--set", "model.encoder=resnet"], "unknown encoder 'resnet'"),
    ("recipe-unknown-metric", ["run", "tiny.yaml", "--set", "eval.metrics=[fid_nope]"], "unknown metric 'fid_nope'"),
    ("recipe-unknown-family", ["train", "tiny.yaml", "--set", "model.family=vae"], "unknown trainer 'vae'"),
    ("set-no-equals", ["run", "tiny.yaml", "--set", "model.texture_dim"], "must look like key=value"),
    ("set-unknown-key", ["run", "tiny.yaml", "--set", "optim.lrate=0.1"], "unknown key 'optim.lrate'"),
    ("set-section-scalar", ["run", "tiny.yaml", "--set", "model=3"], "'model' is a section"),
    ("steps-negative", ["train", "tiny.yaml", "--set", "train.images=-5"], "train.images: Input should be greater than or equal to 1"),
    ("batch-one", ["train", "tiny.yaml", "--set", "train.batch_size=1"], "train.batch_size: Input should be greater than or equal to 2"),
    ("lr-zero", ["train", "tiny.yaml", "--set", "optim.lr=0"], "optim.lr: Input should be greater than 0"),
    ("on-nonfinite-unknown", ["train", "tiny.yaml", "--set", "train.on_nonfinite=ignore"], "train.on_nonfinite: Input should be 'stop' or 'skip_step'"),
    ("recipe-device-tpu", ["run", "tiny.yaml", "--set", "device=tpu"], "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ("validate-missing", ["recipes", "validate", "nope.yaml"], "recipe 'nope.yaml' not found"),
    ("show-bad-set", ["recipes", "show", "tiny.yaml", "--set", "seed=abc"], "seed: Input should be a valid integer"),
    # data
    ("data-unknown-dataset", ["run", "tiny.yaml", "--set", "data.dataset=imagenet"], "unknown dataset 'imagenet'"),
    ("data-folder-no-root", ["run", "tiny.yaml", "--set", "data.dataset=folder"], "data.root"),
    ("data-folder-missing", ["run", "tiny.yaml", "--set", "data.dataset=folder", "--set", "data.root=no_such_dir"], "no_such_dir"),
    ("data-folder-empty", ["run", "tiny.yaml", "--set", "data.dataset=folder", "--set", "data.root=empty"], "empty"),
    ("data-folder-corrupt", ["run", "tiny.yaml", "--set", "data.dataset=folder", "--set", "data.root=not_images"], "2 unreadable image file(s) under not_images"),
    ("data-manifest-bad", ["run", "tiny.yaml", "--set", "data.dataset=folder", "--set", "data.root=photos32",
                           "--set", "data.manifest=broken_manifest.json"], "is not readable JSON"),
    ("data-manifest-photos", ["run", "tiny.yaml", "--set", "data.manifest=missing.json"], "data.manifest=missing.json is read only by dataset 'folder'"),
    # outputs of training
    ("ckptdir-under-file", ["run", "tiny.yaml", "--set", "tracking.checkpoint_dir=a_file/ckpts"], "a_file is a file"),
    ("ckptdir-proc", ["run", "tiny.yaml", "--set", "tracking.checkpoint_dir=/proc/swapbench"], "is not writable"),
    ("tracking-dead-server", ["run", "tiny.yaml", "--set", "tracking.uri={dead}"], "does not answer"),
    ("tracking-missing-folder", ["run", "tiny.yaml", "--set", "tracking.uri=sqlite:///no_dir/x.db"], "in a folder that does not exist"),
    # checkpoints
    ("ckpt-missing", ["evaluate", "no_such.safetensors"], "checkpoint no_such.safetensors does not exist"),
    ("ckpt-truncated", ["evaluate", "bad/truncated.safetensors"], "is not a readable safetensors file"),
    ("ckpt-tampered", ["evaluate", "bad/tampered.safetensors"], "the file is corrupt or was replaced"),
    ("ckpt-no-sidecar", ["evaluate", "bad/no_sidecar.safetensors"], "has no no_sidecar.json beside it"),
    ("ckpt-bad-sidecar", ["evaluate", "bad/bad_sidecar.safetensors"], "holds no sha256"),
    ("ckpt-other-architecture", ["evaluate", "bad/other_architecture.safetensors"], "does not fit the architecture"),
    ("ckpt-not-swapbench", ["evaluate", "bad/foreign.safetensors"], "was not written by swapbench"),
    ("ckpt-wrong-family-edit", ["edit", "swap", "--run", "bad/stylegan2.safetensors", "--structure", "photos32/a.png",
                                "--texture", "photos32/b.png", "--out", "sheet.png"], "stylegan2"),
    ("ckpt-wrong-family-metric", ["evaluate", "bad/stylegan2.safetensors", "--metrics", "swap_fid"], "metric 'swap_fid' needs a model"),
    ("resume-checkpoint-of-other-run", ["resume", "{killed}", "--checkpoint", "{ckpt}"], "belongs to run"),
    # evaluate
    ("eval-unknown-metric", ["evaluate", "{fin}", "--metrics", "fid_nope"], "unknown metric 'fid_nope'"),
    ("eval-empty-metrics", ["evaluate", "{fin}", "--metrics", ","], "names no metric"),
    ("eval-n-zero", ["evaluate", "{fin}", "--n", "0"], "Invalid value for '--n': Input should be greater than or equal to 2"),
    ("eval-n-huge", ["evaluate", "{fin}", "--n", "100000"], "--n 100000 is too many test images"),
    ("eval-unknown-run", ["evaluate", "0123456789abcdef0123456789abcdef"], "no MLflow run '0123456789abcdef0123456789abcdef'"),
    ("eval-device-tpu", ["score", "lpips", "photos32/a.png", "photos32/b.png", "--device", "tpu"], "device 'tpu' is not one"),
    # run ids
    ("resume-unknown", ["resume", "0123456789abcdef0123456789abcdef"], "no MLflow run"),
    ("resume-finished", ["resume", "{fin}"], "already finished"),
    ("resume-running", ["resume", "{running}"], "still RUNNING in MLflow"),
    ("resume-no-checkpoint", ["resume", "{killed}"], "has no checkpoint at"),
    ("compare-unknown", ["compare", "{fin}", "0123456789abcdef0123456789abcdef"], "no MLflow run"),
    ("figure-unknown-run", ["figure", "swaps", "--runs", "0123456789abcdef0123456789abcdef", "--out", "fig.png"], "no MLflow run"),
    # score inputs
    ("score-sizes-lpips", ["score", "lpips", "photos32/a.png", "photos64/a.png"], "LPIPS compares images of the same size"),
    ("score-sizes-sifid", ["score", "sifid", "photos32", "photos64"], "SIFID compares each pair at one size"),
    ("score-one-image", ["score", "fid", "one_image", "photos32"], "the score needs at least 2"),
    ("score-missing-folder", ["score", "kid", "nope", "photos32"], "folder nope does not exist"),
    ("score-not-images", ["score", "fid", "not_images", "photos32"], "cannot read image file"),
    ("score-empty-folder", ["score", "fid", "empty", "photos32"], "has 0 image file(s)"),
    ("score-missing-file", ["score", "lpips", "nope.png", "photos32/a.png"], "image file nope.png does not exist"),
    ("score-unknown-net", ["score", "lpips", "photos32/a.png", "photos32/b.png", "--net", "squeeze"], "is not an LPIPS network"),
    ("score-unpaired-sifid", ["score", "sifid", "photos32", "photos32_other_names"], "has no partner"),
    ("score-fid-device-tpu", ["score", "fid", "photos32", "photos32", "--device", "tpu"], "device 'tpu' is not one"),
    # edit inputs
    ("edit-out-not-png", ["edit", "swap", "--run", "{ckpt}", "--structure", "photos32/a.png", "--texture",
                          "photos32/b.png", "--out", "sheet.jpg"], "give --out a .png path"),
    ("edit-out-under-file", ["edit", "swap", "--run", "{ckpt}", "--structure", "photos32/a.png", "--texture",
                             "photos32/b.png", "--out", "a_file/sheet.png"], "a_file is a file"),
    ("edit-missing-image", ["edit", "swap", "--run", "{ckpt}", "--structure", "nope.png", "--texture",
                            "photos32/b.png", "--out", "sheet.png"], "nope.png"),
    ("edit-bad-alpha", ["edit", "swap", "--run", "{ckpt}", "--structure", "photos32/a.png", "--texture",
                        "photos32/b.png", "--out", "sheet.png", "--alpha", "a,b"], "--alpha 'a,b' must be comma-separated numbers"),
    ("edit-nan-alpha", ["edit", "swap", "--run", "{ckpt}", "--structure", "photos32/a.png", "--texture",
                        "photos32/b.png", "--out", "sheet.png", "--alpha", "nan"], "finite numbers"),
    # outputs
    ("leaderboard-out-folder", ["leaderboard", "--out", "photos32"], "--out photos32 is a folder"),
    ("leaderboard-out-proc", ["leaderboard", "--out", "/proc/swapbench/table.md"], "is not writable"),
    ("leaderboard-format", ["leaderboard", "--format", "xls"], "xls"),
    ("leaderboard-no-experiment", ["leaderboard", "--experiment", "nope"], "no MLflow experiment 'nope'"),
    ("leaderboard-dead-server", ["leaderboard", "--experiment", "tiny"], "does not answer", {"MLFLOW_TRACKING_URI": "{dead}"}),
    ("archive-no-experiment", ["archive", "write", "--out", "runs", "--experiment", "nope"], "no MLflow experiment 'nope'"),
    ("archive-out-under-file", ["archive", "write", "--out", "a_file/runs"], "a_file is a file"),
    ("archive-unknown-run", ["archive", "show", "0123456789abcdef", "--dir", "photos32"], "no run '0123456789abcdef'"),
    ("preview-out-under-file", ["datasets", "preview", "photos", "--out", "a_file/grid.png", "--n", "2"], "a_file is a file"),
    ("preview-out-suffix", ["datasets", "preview", "photos", "--out", "grid.txt", "--n", "2"], "must end in .png"),
    ("export-out-dir-file", ["datasets", "export", "photos", "--out-dir", "a_file", "--n", "2"], "a_file is a file"),
    ("export-would-overwrite", ["datasets", "export", "photos", "--out-dir", "exported", "--n", "2"], "pass --force to overwrite"),
    ("figure-out-under-file", ["figure", "swaps", "--runs", "{fin}", "--out", "a_file/fig.png"], "a_file is a file"),
    ("figure-out-folder", ["figure", "curve", "--x", "seed", "--metrics", "recon_psnr", "--out", "photos32.png",
                           "--experiment", "tiny"], "photos32.png is a folder"),
    # sweeps
    ("sweep-yaml-error", ["sweep", "sweep_yaml_error.yaml"], "line 2 is not valid YAML"),
    ("sweep-unknown-key", ["sweep", "sweep_unknown_key.yaml"], "sweep sweep_unknown_key.yaml: seeed"),
    ("sweep-not-mapping", ["sweep", "sweep_list.yaml"], "must be a YAML mapping"),
    ("sweep-bad-override", ["sweep", "sweep_bad_override.yaml"], "unknown key 'model.texure_dim'"),
    ("sweep-jobs-zero", ["sweep", "sweep_unknown_key.yaml", "--jobs", "0"], "Invalid value for '--jobs': Input should be greater than or equal to 1"),
    ("sweep-missing", ["sweep", "no_such_sweep"], "sweep 'no_such_sweep' not found"),
    # weights and the rest
    ("weights-corrupt-cache", ["weights", "fetch"], "delete or replace that file", {"SWAPBENCH_HOME": "corrupt_home"}),
    ("registry-unknown", ["registry", "encodr"], "no registry 'encodr' (did you mean 'encoder'?)"),
    ("datasets-unknown", ["datasets", "preview", "imagenet", "--out", "grid.png"], "unknown dataset 'imagenet'"),
    ("datasets-n-zero", ["datasets", "export", "photos", "--out-dir", "new_dir", "--n", "0"], "Invalid value for '--n': Input should be greater than or equal to 1"),
    ("project-unknown-method", ["project", "--methods", "magic", "--n", "2"], "magic"),
    ("unknown-command", ["trian", "tiny.yaml"], "No such command 'trian'"),
    ("unknown-option", ["run", "tiny.yaml", "--epochs", "3"], "No such option: --epochs"),
    ("sync-no-journal", ["sync", "photos32"], "holds no tracking journal"),
    ("swaps-unknown-method", ["swaps", "--methods", "sae,magic"], "unknown swap_method 'magic'"),
    ("swaps-needs-run", ["swaps", "--methods", "gatys,sae", "--n", "4"], "swap method 'sae' needs a trained swap_ae run; pass --sae-run"),
    ("swaps-no-data", ["swaps", "--methods", "gatys", "--n", "4"], "pass --recipe NAME"),
    ("swap-sizes-differ", ["swap", "photos32/a.png", "photos64/b.png", "--out", "s.png"], "resize them to one size first"),
]


def _png(path: Path, side: int, mode: str = "RGB", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).convert(mode).save(path)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> dict[str, str]:
    """A template folder with everything the cases need, and the ids that fill the placeholders."""
    import torch

    from swapbench.experiments.pipeline import train_and_evaluate
    from swapbench.recipe import load_recipe, recipe_from_dict
    from swapbench.registry import TRAINERS
    from swapbench.training.checkpoint import load_checkpoint, save_checkpoint

    ws = tmp_path_factory.mktemp("bad_inputs")
    (ws / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    (ws / "yaml_error.yaml").write_text("name: x\nmodel: : 2\n")
    (ws / "binary.yaml").write_bytes(bytes(range(128, 256)) * 4)
    (ws / "a_list.yaml").write_text("- 1\n- 2\n")
    (ws / "unknown_key.yaml").write_text(yaml.safe_dump({**TINY_RECIPE, "model": {"texure_dim": 8}}))
    (ws / "wrong_type.yaml").write_text(yaml.safe_dump({**TINY_RECIPE, "train": {"batch_size": "many"}}))
    (ws / "cycle_a.yaml").write_text("extends: cycle_b.yaml\n")
    (ws / "cycle_b.yaml").write_text("extends: cycle_a.yaml\n")
    (ws / "sweep_yaml_error.yaml").write_text("base: tiny.yaml\nseeds: : 2\n")
    (ws / "sweep_unknown_key.yaml").write_text("base: tiny.yaml\nseeed: [1]\n")
    (ws / "sweep_list.yaml").write_text("- tiny.yaml\n")
    (ws / "sweep_bad_override.yaml").write_text("base: tiny.yaml\nset: [model.texure_dim=4]\n")
    (ws / "broken_manifest.json").write_text("{not json")
    (ws / "a_file").write_text("a file, not a folder\n")
    (ws / "empty").mkdir()
    for name in ("a", "b", "c", "d"):
        _png(ws / "photos32" / f"{name}.png", 32, seed=ord(name))
        _png(ws / "photos64" / f"{name}.png", 64, seed=ord(name))
        _png(ws / "photos32_other_names" / f"other_{name}.png", 32, seed=ord(name))
    (ws / "photos32.png").mkdir()  # a folder with a file's name
    _png(ws / "one_image" / "a.png", 32)
    for name in ("a.png", "b.png"):
        (ws / "not_images").mkdir(exist_ok=True)
        (ws / "not_images" / name).write_text("not an image")
    _png(ws / "exported" / "test_0000.png", 32)  # earlier work an export would overwrite
    (ws / "corrupt_home" / "weights").mkdir(parents=True)
    (ws / "corrupt_home" / "weights" / "alexnet.ckpt").write_bytes(b"damaged")

    store = f"sqlite:///{ws / 'mlflow.db'}"
    cwd, uri = os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(ws)
    os.environ["MLFLOW_TRACKING_URI"] = store
    try:
        finished = train_and_evaluate(load_recipe(ws / "tiny.yaml"), evaluate_after=False, progress=False).run_id
    finally:
        os.chdir(cwd)
        os.environ.pop("MLFLOW_TRACKING_URI") if uri is None else os.environ.update(MLFLOW_TRACKING_URI=uri)
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    running = client.create_run(experiment, tags={"swapbench.recipe": "tiny"}).info.run_id
    killed = client.create_run(experiment, tags={"swapbench.recipe": "tiny"}).info.run_id
    client.set_terminated(killed, "KILLED")

    ckpt = ws / "checkpoints" / finished / "last.safetensors"
    bad = ws / "bad"
    bad.mkdir()
    state, meta = load_checkpoint(ckpt)
    data = ckpt.read_bytes()
    (bad / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    from swapbench.training.checkpoint import sha256_file

    (bad / "truncated.json").write_text(json.dumps({"sha256": sha256_file(bad / "truncated.safetensors")}))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    (bad / "tampered.safetensors").write_bytes(bytes(flipped))
    shutil.copy(ckpt.with_suffix(".json"), bad / "tampered.json")
    shutil.copy(ckpt, bad / "no_sidecar.safetensors")
    shutil.copy(ckpt, bad / "bad_sidecar.safetensors")
    (bad / "bad_sidecar.json").write_text("[1, 2")
    other = {**meta, "recipe": {**meta["recipe"], "model": {**meta["recipe"]["model"], "channels": 8}}}
    save_checkpoint(bad / "other_architecture.safetensors", state, other)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(bad / "foreign.safetensors"))
    (bad / "foreign.json").write_text(json.dumps({"sha256": sha256_file(bad / "foreign.safetensors")}))
    sg2 = recipe_from_dict({**TINY_RECIPE, "model": {**TINY_RECIPE["model"], "family": "stylegan2",
                                                     "generator": "stylegan2", "cooccur_discriminator": None},
                            "loss": {"cooccur": 0, "patch_r1": 0}, "stylegan2": {"w_dim": 8, "mapping_layers": 1}})
    TRAINERS.get("stylegan2")(sg2).save(bad / "stylegan2.safetensors")
    return {"ws": str(ws), "fin": finished, "running": running, "killed": killed, "ckpt": str(ckpt),
            "dead": f"http://127.0.0.1:{free_port()}"}


def _fill(text: str, ids: dict[str, str]) -> str:
    return text.format(**ids) if "{" in text else text




def _snapshot(folder: Path, store: str) -> tuple[set[str], dict[str, str]]:
    files = {str(p.relative_to(folder)) for p in folder.rglob("*")} - {"mlflow.db", "mlflow.db-journal"}
    client = mlflow.MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return files, {r.info.run_id: r.info.status for r in runs}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_leaves_nothing_behind(case, workspace, tmp_path, monkeypatch):
    name, argv, expected, *env = case
    ws = tmp_path / "ws"
    shutil.copytree(workspace["ws"], ws, symlinks=True)
    ids = {**workspace, "ws": str(ws), "ckpt": workspace["ckpt"].replace(workspace["ws"], str(ws))}
    store = f"sqlite:///{ws / 'mlflow.db'}"
    monkeypatch.chdir(ws)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("SWAPBENCH_GIT_COMMIT", "test")  # no git call per case
    for key, value in (env[0] if env else {}).items():
        monkeypatch.setenv(key, str(ws / value) if key == "SWAPBENCH_HOME" else _fill(value, ids))
    before = _snapshot(ws, store)

    code, stdout, stderr = invoke([_fill(a, ids) for a in argv])

    lines = stderr.strip().splitlines()
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr + stdout
    assert _fill(expected, ids) in lines[0], lines[0]
    assert _snapshot(ws, store) == before  # no new file or folder, no new run, no status changed


def test_there_are_at_least_60_cases_and_the_readme_table_lists_them():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    table = readme_table()
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- bad-inputs:start -->\n", "<!-- bad-inputs:end -->"
    if os.environ.get("SWAPBENCH_WRITE_README"):
        head, rest = readme.split(start)
        readme = head + start + table + end + rest.split(end, 1)[1]
        (ROOT / "README.md").write_text(readme)
    assert start + table + end in readme, "README's bad-input table is stale: SWAPBENCH_WRITE_README=1 pytest tests/test_bad_inputs.py"


def readme_table() -> str:
    rows = ["| # | case | command | the `error:` line says |", "| --- | --- | --- | --- |"]
    for i, (name, argv, expected, *env) in enumerate(CASES, 1):
        command = " ".join(["swapbench", *argv]).replace("|", "\\|")
        prefix = " ".join(f"{k}={v}" for k, v in (env[0] if env else {}).items())
        said = re.sub(r"([|`])", r"\\\1", expected)
        rows.append(f"| {i} | {name} | `{(prefix + ' ' if prefix else '') + command}` | {said} |")
    return "\n".join(rows) + "\n"
