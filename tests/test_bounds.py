from __future__ import annotations

import mlflow
import yaml
from conftest import TINY
from test_weights import cached_or_skip

from baselines.bounds.supervised_swap import main, supervised_batch
from swapbench.data import synthetic


def test_the_target_has_the_structure_images_layout_and_the_texture_images_style():
    import torch

    a, b, truth = supervised_batch(3, 32, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same draws: layouts of A and B, then styles of A and B
    layouts = torch.randint(synthetic.TRAIN_LAYOUTS, (2, 3), generator=g).tolist()
    styles = torch.randint(synthetic.TRAIN_STYLES, (2, 3), generator=g).tolist()
    la, lb = synthetic.layouts("train", layouts[0]), synthetic.layouts("train", layouts[1])
    sa, sb = synthetic.styles("train", styles[0]), synthetic.styles("train", styles[1])
    assert torch.equal(a, synthetic.render(la, sa, 32)) and torch.equal(b, synthetic.render(lb, sb, 32))
    assert torch.equal(truth, synthetic.render(la, sb, 32))
    assert not torch.equal(truth, a) and not torch.equal(truth, b)


def test_bound_trains_scores_with_the_controls_and_logs_a_run(tmp_path, monkeypatch, capsys):
    cached_or_skip("lpips_alex")
    cached_or_skip("lpips_vgg")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    recipe = {**TINY, "data": {"dataset": "synthetic", "resolution": 32, "test_images": 8},
              "tracking": {"checkpoint_dir": str(tmp_path / "checkpoints")}}
    (tmp_path / "syn.yaml").write_text(yaml.safe_dump(recipe))
    assert main([str(tmp_path / "syn.yaml"), "--cpu-seconds", "1", "--threads", "1"]) == 0
    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["bounds"], output_format="list")
    m = run.data.metrics
    assert m["train/images_seen"] > 0 and m["train/cpu_seconds"] >= 1
    for key in ("gt_swap_lpips", "control/copy_a/gt_swap_lpips", "control/copy_b/gt_swap_lpips",
                "control/truth_flat/gt_swap_lpips", "recon_lpips_vgg", "control/thumbnail_4x/recon_lpips_vgg"):
        assert 0 <= m[key] <= 2, key
    assert run.data.tags["swapbench.variant"] == "supervised_swap_bound"
    assert "gt_swap_lpips" in capsys.readouterr().out


def test_a_photos_recipe_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "photos.yaml").write_text(yaml.safe_dump({**TINY, "data": {"resolution": 32, "test_images": 8}}))
    assert main([str(tmp_path / "photos.yaml"), "--cpu-seconds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs the synthetic data's true swap" in err
