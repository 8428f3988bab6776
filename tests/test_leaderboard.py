from __future__ import annotations

import io
import json

import mlflow
import pandas as pd
import pytest
from conftest import run_cli

from swapbench.errors import UserError
from swapbench.leaderboard import best_rows, build_tables, compare_runs, load_runs, render


def log_run(variant: str, seed: int, scores: dict, resolution: int = 32, dataset: str = "photos") -> str:
    with mlflow.start_run() as run:
        mlflow.log_params({"data.dataset": dataset, "data.resolution": resolution, "data.test_images": 64,
                           "eval.swap_pairs": 64, "score.inception_sha256": "abc", "seed": seed,
                           "model.texture_dim": {"small": 8, "mid": 64, "big": 256}[variant]})
        mlflow.set_tags({"swapbench.variant": variant, "swapbench.recipe": "base", "swapbench.git_commit": "f" * 40})
        mlflow.log_metrics({**scores, **{f"{k}_n": 64 for k in scores}})
        return run.info.run_id


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("board")
    ids = {
        ("small", 0): log_run("small", 0, {"swap_fid": 300.0, "recon_psnr": 15.0}),
        ("small", 1): log_run("small", 1, {"swap_fid": 310.0, "recon_psnr": 15.5}),
        ("mid", 0): log_run("mid", 0, {"swap_fid": 250.0, "recon_psnr": 17.0}),
        ("big", 0): log_run("big", 0, {"swap_fid": 280.0, "recon_psnr": 18.0}),
    }
    return uri, ids


def test_one_row_per_variant_with_mean_std_and_direction_aware_best(store):
    uri, ids = store
    (table,) = build_tables(load_runs("board", uri=uri))
    frame = table.frame.set_index("variant")
    assert list(frame.index) == ["big", "mid", "small"]
    assert frame.loc["small", "swap_fid"] == 305.0 and frame.loc["small", "swap_fid_std"] == pytest.approx(7.0711, 1e-4)
    assert frame.loc["small", "runs"] == 2 and frame.loc["small", "swap_fid_n"] == 64
    assert ids[("small", 0)] in frame.loc["small", "run_ids"] and ids[("small", 1)] in frame.loc["small", "run_ids"]
    best = {m: table.frame.loc[i, "variant"] for m, i in best_rows(table).items()}
    assert best == {"swap_fid": "mid", "recon_psnr": "big"}  # FID: lower is better; PSNR: higher


def test_every_format_parses_and_marks_the_best(store):
    uri, _ = store
    tables = build_tables(load_runs("board", uri=uri))
    md = render(tables, "md")
    assert "swap_fid ↓ (N=64)" in md and "recon_psnr ↑ (N=64)" in md and "**250**" in md and "**18**" in md
    csv = pd.read_csv(io.StringIO(render(tables, "csv")))
    assert set(csv["variant"]) == {"small", "mid", "big"} and "run_ids" in csv
    data = json.loads(render(tables, "json"))
    assert len(data[0]["rows"]) == 3
    html = pd.read_html(io.StringIO(render(tables, "html")))[0]
    assert len(html) == 3
    assert "\\textbf{250}" in render(tables, "latex")
    with pytest.raises(UserError, match="not one of"):
        render(tables, "xlsx")


def test_incomparable_runs_are_never_mixed(store):
    uri, _ = store
    log_run("mid", 0, {"swap_fid": 1.0, "recon_psnr": 40.0}, resolution=64)
    tables = build_tables(load_runs("board", uri=uri))
    assert len(tables) == 2
    assert {t.note.split("data.resolution=")[1].split(",")[0] for t in tables} == {"32", "64"}
    assert "incomparable" in render(tables, "md")


def test_compare_lists_exactly_the_differing_settings(store):
    uri, ids = store
    settings, scores = compare_runs(ids[("small", 0)], ids[("mid", 0)], uri=uri)
    assert set(settings["setting"]) == {"model.texture_dim"}
    assert set(scores["score"]) == {"recon_psnr", "swap_fid"}


def test_leaderboard_cli(store, tmp_path):
    uri, _ = store
    proc = run_cli("leaderboard", "--experiment", "board", "--format", "md", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 0, proc.stderr
    assert "| variant" in proc.stdout and "**250**" in proc.stdout
    proc = run_cli("leaderboard", "--experiment", "nope", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 2 and "no MLflow experiment 'nope'" in proc.stderr


def test_sweep_parents_and_foreign_runs_are_not_rows(store):
    uri, _ = store
    with mlflow.start_run(tags={"swapbench.sweep_id": "x"}):
        pass  # a sweep parent: no recipe, no scores
    with mlflow.start_run():
        mlflow.log_metric("swap_fid", 1.0)  # some other tool's run
    (table,) = build_tables(load_runs("board", uri=uri))
    assert sorted(table.frame["variant"]) == ["big", "mid", "small"]
