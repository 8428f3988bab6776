from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import TINY, run_cli
from PIL import Image

from swapbench.data import test_images as split_images
from swapbench.data.pairs import draw_pairs
from swapbench.errors import UserError
from swapbench.experiments.figures import figure_curve, figure_swaps, load_run_models
from swapbench.experiments.sweep import run_sweep
from swapbench.visualize import to_uint8


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """Four finished 2-step runs: texture_dim 4 and 8, seeds 0 and 1, in a local MLflow store."""
    tmp = tmp_path_factory.mktemp("figures")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}))
    (tmp / "dims.yaml").write_text(yaml.safe_dump({"base": "tiny.yaml", "grid": {"model.texture_dim": [4, 8]},
                                                   "seeds": [0, 1]}))
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    parent, children, _ = run_sweep(tmp / "dims.yaml", echo=lambda *a: None)
    yield tmp, parent, children
    mp.undo()


@pytest.fixture
def in_store(sweep_store, monkeypatch):
    tmp, parent, children = sweep_store
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    return tmp, parent, children


def test_swap_figure_shows_each_runs_swap_of_the_same_pairs(in_store, tmp_path):
    _, _, children = in_store
    runs = [children[0], children[2]]
    out = figure_swaps(runs, tmp_path / "swaps.png", n=3, cell=16)  # cell = resolution: tiles are exact

    loaded = load_run_models(runs)
    images = split_images(loaded[0].recipe)
    pairs = draw_pairs(3, images.shape[0], loaded[0].recipe.eval.pairs_seed)
    a, b = images[[p[0] for p in pairs]], images[[p[1] for p in pairs]]
    sheet = np.asarray(Image.open(out).convert("RGB"))
    pad, cell = 4, 16
    header = max(18, cell // 5)
    assert sheet.shape == (header + pad + 3 * (cell + pad), pad + 4 * (cell + pad), 3)

    def tile(row: int, col: int) -> np.ndarray:
        y, x = header + pad + row * (cell + pad), pad + col * (cell + pad)
        return sheet[y:y + cell, x:x + cell]

    for j, source in enumerate([a, b]):
        np.testing.assert_array_equal(tile(1, j), to_uint8(source[1]).permute(1, 2, 0).numpy())
    for k, run in enumerate(loaded):
        expected = to_uint8(run.model.swap(a, b)).permute(0, 2, 3, 1).numpy()
        for row in range(3):
            np.testing.assert_array_equal(tile(row, 2 + k), expected[row])

    record = json.loads(out.with_suffix(".json").read_text())
    assert [r["run_id"] for r in record["runs"]] == runs
    assert record["pairs"] == [list(p) for p in pairs]
    assert [r["label"] for r in record["runs"]] == [r.label for r in loaded] == ["model.texture_dim=4", "model.texture_dim=8"]


def test_curve_figure_plots_a_setting_over_the_sweep(in_store, tmp_path):
    _, parent, children = in_store
    out = figure_curve(tmp_path / "dims.png", "model.texture_dim", ["recon_psnr"], sweep=parent)
    assert Image.open(out).size[0] > 100
    record = json.loads(out.with_suffix(".json").read_text())
    assert sorted(r["run_id"] for r in record["runs"]) == sorted(children)
    assert sorted(int(r["x"]) for r in record["runs"]) == [4, 4, 8, 8]
    assert all(isinstance(r["recon_psnr"], float) for r in record["runs"])

    with pytest.raises(UserError, match="no run logged swap_fid"):
        figure_curve(tmp_path / "x.png", "model.texture_dim", ["swap_fid"], sweep=parent)
    with pytest.raises(UserError, match="not numeric"):
        figure_curve(tmp_path / "x.png", "model.encoder", ["recon_psnr"], sweep=parent)
    with pytest.raises(UserError, match="no setting"):
        figure_curve(tmp_path / "x.png", "model.nope", ["recon_psnr"], sweep=parent)


def test_swap_figure_refuses_runs_on_different_data(in_store, tmp_path, monkeypatch):
    tmp, _, children = in_store
    other = tmp / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "dataset": "synthetic"},
                                     "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}))
    done = run_cli("train", str(other), "--no-progress", cwd=tmp,
                   env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"})
    assert done.returncode == 0, done.stderr
    other_run = done.stdout.split("run ")[1].split(":")[0]
    with pytest.raises(UserError, match=r"data\.dataset differ"):
        figure_swaps([children[0], other_run], tmp_path / "bad.png")


def test_figure_cli_errors_are_one_line(in_store, tmp_path):
    tmp, _, children = in_store
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    bad_suffix = run_cli("figure", "swaps", "--runs", children[0], "--out", str(tmp_path / "f.jpg"), cwd=tmp, env=env)
    assert bad_suffix.returncode == 2 and bad_suffix.stderr.strip().count("\n") == 0
    assert "give --out a .png path" in bad_suffix.stderr
    missing = run_cli("figure", "swaps", "--runs", "0123abcd", "--out", str(tmp_path / "f.png"), cwd=tmp, env=env)
    assert missing.returncode == 2 and "no MLflow run '0123abcd'" in missing.stderr
    labels = run_cli("figure", "swaps", "--runs", children[0], "--labels", "a,b", "--out", str(tmp_path / "f.png"),
                     cwd=tmp, env=env)
    assert labels.returncode == 2 and "2 labels for 1 runs" in labels.stderr


def test_curve_against_a_logged_cost_shows_each_runs_interval_variant_and_the_copy_controls():
    import pandas as pd

    from swapbench.experiments.figures import metric_curve

    m = "metrics.gt_swap_lpips"
    df = pd.DataFrame({
        "run_id": ["r1", "r2", "r3"], "tags.swapbench.variant": ["base", "budget_50", "width_32"],
        "metrics.train/cpu_seconds": [300.0, 150.0, 700.0],
        m: [0.6, 0.7, 0.55], f"{m}_ci_low": [0.55, 0.66, 0.5], f"{m}_ci_high": [0.65, 0.74, 0.6],
        # the same pairs in every run: one line each; recon_a is each model's own row: no line
        "metrics.control/copy_a/gt_swap_lpips": [0.64] * 3, "metrics.control/copy_a/gt_swap_lpips_ci_low": [0.61] * 3,
        "metrics.control/copy_a/gt_swap_lpips_ci_high": [0.67] * 3,
        "metrics.control/copy_b/gt_swap_lpips": [0.28] * 3, "metrics.control/recon_a/gt_swap_lpips": [0.7, 0.8, 0.75],
        # logged by one run only (scored before the control existed): cannot be drawn for the others
        "metrics.control/truth_flat/gt_swap_lpips": [None, 0.57, None],
    })
    ax = metric_curve(df, "train/cpu_seconds", ["gt_swap_lpips"]).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["base", "budget_50", "width_32"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) >= {"control: copy_a", "control: copy_b"} and "control: recon_a" not in lines
    assert "control: truth_flat" not in lines
    assert lines["control: copy_b"].get_ydata()[0] == 0.28
    points = ax.containers[0].lines[0]  # the errorbar's markers, in x order
    assert list(points.get_xdata()) == [150.0, 300.0, 700.0] and list(points.get_ydata()) == [0.7, 0.6, 0.55]
    low, high = ax.containers[0].lines[2][0].get_segments()[0][:, 1]  # budget_50's interval
    assert (low, high) == pytest.approx((0.66, 0.74))
    with pytest.raises(UserError, match="no setting or logged number"):
        metric_curve(df, "train/nope", ["gt_swap_lpips"])
