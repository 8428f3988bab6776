from __future__ import annotations

import importlib
import io
import json
import sys

import mlflow
import pandas as pd
import pytest
from conftest import run_cli

from swapbench.errors import UserError
from swapbench.experiments.leaderboard import best_rows, build_tables, compare_runs, load_runs, render


def log_run(variant: str, seed: int, scores: dict, resolution: int = 32, dataset: str = "photos",
            controls: dict | None = None) -> str:
    """A finished run; each score gets an interval of +-5 and N=64 unless ``scores`` gives them."""
    with mlflow.start_run() as run:
        mlflow.log_params({"data.dataset": dataset, "data.resolution": resolution, "data.test_images": 64,
                           "eval.swap_pairs": 64, "score.inception_sha256": "abc", "seed": seed,
                           "model.texture_dim": {"small": 8, "mid": 64, "big": 256}[variant]})
        mlflow.set_tags({"swapbench.variant": variant, "swapbench.recipe": "base", "swapbench.git_commit": "f" * 40})
        logged = {}
        for prefix, values in [("", scores), *((f"control/{c}/", v) for c, v in (controls or {}).items())]:
            for k, v in values.items():
                logged.update({f"{prefix}{k}": v, f"{prefix}{k}_n": 64,
                               f"{prefix}{k}_ci_low": v - 5, f"{prefix}{k}_ci_high": v + 5})
        mlflow.log_metrics(logged)
        return run.info.run_id


SWAP = {"swap_reencode_texture": 0.5, "swap_structure_dist": 0.1}
CONTROLS = {"copy_a": {"swap_fid": 50.0, "swap_reencode_texture": 0.0, "swap_structure_dist": 0.0},
            "copy_b": {"swap_fid": 52.0, "swap_reencode_texture": 1.0, "swap_structure_dist": 0.3}}


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("board")
    ids = {
        ("small", 0): log_run("small", 0, {"swap_fid": 300.0, "recon_psnr": 15.0, **SWAP}, controls=CONTROLS),
        ("small", 1): log_run("small", 1, {"swap_fid": 310.0, "recon_psnr": 15.5, **SWAP}, controls=CONTROLS),
        ("mid", 0): log_run("mid", 0, {"swap_fid": 250.0, "recon_psnr": 17.0, **SWAP}, controls=CONTROLS),
        ("big", 0): log_run("big", 0, {"swap_fid": 280.0, "recon_psnr": 18.0, **SWAP}, controls=CONTROLS),
    }
    return uri, ids


def test_one_row_per_variant_with_mean_std_interval_seeds_and_best_only_where_intervals_separate(store):
    uri, ids = store
    (table,) = build_tables(load_runs("board", uri=uri))
    frame = table.frame.set_index("variant")
    assert list(frame.index) == ["big", "mid", "small", "control: copy_a", "control: copy_b"]
    assert frame.loc["small", "swap_fid"] == 305.0 and frame.loc["small", "swap_fid_std"] == pytest.approx(7.0711, 1e-4)
    assert frame.loc["small", "runs"] == 2 and frame.loc["small", "seeds"] == 2 and frame.loc["small", "swap_fid_n"] == 64
    # the union of the seeds' intervals: 295..305 and 305..315
    assert (frame.loc["small", "swap_fid_ci_low"], frame.loc["small", "swap_fid_ci_high"]) == (295.0, 315.0)
    assert ids[("small", 0)] in frame.loc["small", "run_ids"] and ids[("small", 1)] in frame.loc["small", "run_ids"]
    best = {m: table.frame.loc[i, "variant"] for m, i in best_rows(table).items()}
    # FID: lower is better, 250 +- 5 separates from 280 +- 5; PSNR 18 +- 5 overlaps 17 +- 5: no mark;
    # the controls (swap_fid 50) are never ranked, the equal texture/structure scores overlap
    assert best == {"swap_fid": "mid"}


def test_every_format_parses_and_marks_the_best(store):
    uri, _ = store
    tables = build_tables(load_runs("board", uri=uri))
    md = render(tables, "md")
    assert "swap_fid ↓ (N=64)" in md and "recon_psnr ↑ (N=64)" in md and "**250 [245, 255]**" in md
    assert "**18" not in md and "| control: copy_a" in md and "(reference row)" in md and "union" in md
    csv = pd.read_csv(io.StringIO(render(tables, "csv")))
    assert set(csv["variant"]) == {"small", "mid", "big", "control: copy_a", "control: copy_b"} and "run_ids" in csv
    data = json.loads(render(tables, "json"))
    assert len(data[0]["rows"]) == 5
    html = pd.read_html(io.StringIO(render(tables, "html")))[0]
    assert len(html) == 5
    assert "\\textbf{250 [245, 255]}" in render(tables, "latex")
    with pytest.raises(UserError, match="not one of"):
        render(tables, "xlsx")


def test_realism_is_never_shown_without_texture_structure_and_controls(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("bare")
    log_run("small", 0, {"swap_fid": 300.0, "recon_psnr": 15.0})  # an old run: realism alone
    log_run("mid", 0, {"swap_fid": 250.0, "recon_psnr": 17.0})
    (table,) = build_tables(load_runs("bare"))
    assert table.metrics == ["recon_psnr"] and "swap_fid not shown" in table.notes[0]
    assert "swap_fid" not in render([table], "md").split("\n\n")[1]  # not in the table itself
    log_run("big", 0, {"swap_fid": 280.0, **SWAP}, controls=CONTROLS)  # a run scored with everything
    (table,) = build_tables(load_runs("bare"), ["swap_fid"])  # asking for realism brings its companions
    assert table.metrics == ["swap_fid", "swap_reencode_texture", "swap_structure_dist"]
    assert "control: copy_a" in set(table.frame["variant"]) and "control: copy_b" in set(table.frame["variant"])


def test_incomparable_runs_are_never_mixed(store):
    uri, _ = store
    log_run("mid", 0, {"swap_fid": 1.0, "recon_psnr": 40.0}, resolution=64)
    tables = build_tables(load_runs("board", uri=uri))
    assert len(tables) == 2
    assert {t.note.split("data.resolution=")[1].split(",")[0] for t in tables} == {"32", "64"}
    assert "incomparable" in render(tables, "md")


def test_a_table_shows_only_the_controls_its_own_runs_logged(store):
    uri, _ = store  # photos runs at 32 px with the copy controls; a synthetic run also has truth_flat
    log_run("mid", 0, {"swap_fid": 260.0, **SWAP}, dataset="synthetic",
            controls={**CONTROLS, "truth_flat": {"swap_fid": 90.0, "swap_reencode_texture": 0.7, "swap_structure_dist": 0.2}})
    tables = {t.note.split("data.dataset=")[1].split(",")[0]: t for t in build_tables(load_runs("board", uri=uri))}
    assert "control: truth_flat" in set(tables["synthetic"].frame["variant"])
    assert set(tables["photos"].frame.loc[tables["photos"].frame["control"], "variant"]) == {"control: copy_a",
                                                                                          "control: copy_b"}


def test_compare_lists_exactly_the_differing_settings(store):
    uri, ids = store
    settings, scores = compare_runs(ids[("small", 0)], ids[("mid", 0)], uri=uri)
    assert set(settings["setting"]) == {"model.texture_dim"}
    assert set(scores["score"]) == {"recon_psnr", "swap_fid", *SWAP}


def test_leaderboard_cli(store, tmp_path):
    uri, _ = store
    proc = run_cli("leaderboard", "--experiment", "board", "--format", "md", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 0, proc.stderr
    assert "| variant" in proc.stdout and "**250 [245, 255]**" in proc.stdout and "control: copy_b" in proc.stdout
    proc = run_cli("leaderboard", "--experiment", "nope", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 2 and "no MLflow experiment 'nope'" in proc.stderr


def test_sweep_parents_and_foreign_runs_are_not_rows(store):
    uri, _ = store
    with mlflow.start_run(tags={"swapbench.sweep_id": "x"}):
        pass  # a sweep parent: no recipe, no scores
    with mlflow.start_run():
        mlflow.log_metric("swap_fid", 1.0)  # some other tool's run
    (table,) = build_tables(load_runs("board", uri=uri))
    assert sorted(table.frame.loc[~table.frame["control"], "variant"]) == ["big", "mid", "small"]


PLUGIN_METRIC = '''
"""A plugin module: one score, higher is better."""
from swapbench.registry import METRICS


@METRICS.register("toy_sharpness", direction="up", needs=("reconstruct",), description="A plugin's score.")
def toy_sharpness(ctx):
    return {"toy_sharpness": 1.0}
'''


def test_a_plugin_metric_with_a_direction_is_a_default_column_with_its_best_marked(tmp_path, monkeypatch):
    from swapbench.registry import METRICS

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("plugin")
    for variant, value in (("small", 10.0), ("mid", 40.0), ("big", 20.0)):
        log_run(variant, 0, {"toy_sharpness": value, "recon_psnr": 15.0})
    (table,) = build_tables(load_runs("plugin"))
    assert table.metrics == ["recon_psnr"]  # a logged number without a registered direction is no score column
    (table,) = build_tables(load_runs("plugin"), ["toy_sharpness"])  # shown when asked for, but never ranked
    assert table.metrics == ["toy_sharpness"] and best_rows(table) == {}
    (tmp_path / "toy_metric_plugin.py").write_text(PLUGIN_METRIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("toy_metric_plugin")
    try:
        (table,) = build_tables(load_runs("plugin"))
        assert table.metrics == ["recon_psnr", "toy_sharpness"]
        best = {m: table.frame.loc[i, "variant"] for m, i in best_rows(table).items()}
        assert best == {"toy_sharpness": "mid"}  # the highest, 40 +- 5 clear of 20 +- 5; equal PSNRs: no mark
        assert "toy_sharpness ↑ (N=64)" in render([table], "md") and "**40 [35, 45]**" in render([table], "md")
    finally:
        METRICS.remove("toy_sharpness")
        sys.modules.pop("toy_metric_plugin", None)

