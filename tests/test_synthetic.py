from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import fields

import pytest
import torch
from conftest import run_cli
from PIL import Image

from swapbench.data import build_dataset
from swapbench.data import synthetic as S
from swapbench.data.pairs import draw_pairs, load_pairs, pairs_record, save_pairs
from swapbench.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, PhotoCrops
from swapbench.recipe import load_recipe


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def test_same_bytes_in_another_process():
    ds = S.SyntheticDataset("train", 64)
    here = digest(torch.stack(ds.__getitems__([0, 5, 123456])))
    code = ("import hashlib, torch; from swapbench.data.synthetic import SyntheticDataset as D;"
            "x = torch.stack(D('train', 64).__getitems__([0, 5, 123456]));"
            "print(hashlib.sha256(x.numpy().tobytes()).hexdigest())")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there


def test_item_equals_batched_fetch_and_render_of_its_factors():
    ds = S.SyntheticDataset("test", 32, test_images=8)
    batch = torch.stack(ds.__getitems__(list(range(8))))
    assert batch.shape == (8, 3, 32, 32) and batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(ds[3], batch[3])
    assert torch.equal(batch[3], S.render(S.layouts("test", [3]), S.styles("test", [3]), 32)[0])


@pytest.mark.parametrize("resolution", [32, 64, 128, 512])
def test_any_resolution(resolution):
    x = S.SyntheticDataset("test", resolution, test_images=2)[1]
    assert x.shape == (3, resolution, resolution)


def test_gt_swap_is_the_render_of_a_layout_and_b_style_and_differs_from_both():
    ds = S.SyntheticDataset("test", 64, test_images=8)
    a, b = ds[2], ds[5]
    gt = ds.gt_swap([2], [5])[0]
    assert torch.equal(gt, S.render(S.layouts("test", [2]), S.styles("test", [5]), 64)[0])
    assert (gt - a).abs().mean() > 0.05 and (gt - b).abs().mean() > 0.05
    # swapping back gives the original images
    assert torch.equal(ds.gt_swap([2], [2])[0], a)


def test_flat_patterns_give_each_region_one_colour_that_keeps_its_mean():
    lay, sty = S.layouts("test", [0, 1, 2]), S.styles("test", [3, 4, 5])
    sty.grain = torch.zeros_like(sty.grain)
    drawn, flat = S.render(lay, sty, 64), S.render(lay, sty, 64, flat_patterns=True)
    inside = S.region_weights(lay, 64) > 0.999  # (N, R, H, W) pixels well inside one region
    spread = [(img[:, m].std(dim=1).max(), ref[:, m].std(dim=1).max())
              for img, ref, masks in zip(flat, drawn, inside) for m in masks if m.sum() > 50]
    assert spread and all(f < 1e-3 for f, _ in spread) and max(d for _, d in spread) > 0.1
    # the flat image is the drawn one's mean wherever nothing clamps: same colours on average
    assert (flat.mean() - drawn.mean()).abs() < 0.02


def _params(factor) -> torch.Tensor:
    n = factor.grain.shape[0] if hasattr(factor, "grain") else factor.horizon.shape[0]
    return torch.cat([getattr(factor, f.name).float().reshape(n, -1) for f in fields(factor)], dim=1)


def test_train_and_test_factors_are_disjoint():
    train_l, test_l = _params(S.layouts("train", list(range(500)))), _params(S.layouts("test", list(range(64))))
    train_s, test_s = _params(S.styles("train", list(range(500)))), _params(S.styles("test", list(range(64))))
    assert torch.cdist(test_l, train_l).min() > 1e-3
    assert torch.cdist(test_s, train_s).min() > 1e-3
    ds = S.SyntheticDataset("train", 32)
    assert {ds.factors(i)[0] for i in range(S.TRAIN_LAYOUTS + 5)} == set(range(S.TRAIN_LAYOUTS))


def test_photos_split_by_photo_and_deterministic(tiny):
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    assert {"motorcycle_left", "motorcycle_right"} <= set(TRAIN_PHOTOS)  # one scene, one split
    a = PhotoCrops("train", 32, seed=3)
    assert torch.equal(a[7], PhotoCrops("train", 32, seed=3)[7])
    assert not torch.equal(a[7], PhotoCrops("train", 32, seed=4)[7])
    test = PhotoCrops("test", 32, test_images=4, seed=3)
    assert torch.equal(test[1], PhotoCrops("test", 32, test_images=4, seed=99)[1])  # test ignores the seed
    assert build_dataset(tiny, "test").manifest()["photos"] == list(TEST_PHOTOS)


def test_pairs_fixed_distinct_and_saved(tmp_path):
    pairs = draw_pairs(200, 10, seed=0)
    assert pairs == draw_pairs(200, 10, seed=0) and pairs != draw_pairs(200, 10, seed=1)
    assert all(a != b and 0 <= a < 10 and 0 <= b < 10 for a, b in pairs)
    path = save_pairs(tmp_path / "pairs.json", pairs_record(pairs, 0, {"dataset": "folder", "files": list("abcdefghij")}))
    assert load_pairs(path) == pairs


def test_synthetic_recipes_resolve():
    r = load_recipe("synthetic_quickstart")
    assert r.data.dataset == "synthetic" and r.data.resolution == load_recipe("quickstart").data.resolution
    assert load_recipe("swap_ae_synthetic").data.dataset == "synthetic"


def test_preview_cli_writes_pngs_of_the_right_size(tmp_path):
    proc = run_cli("datasets", "preview", "synthetic", "--n", "9", "--resolution", "32", "--out",
                   str(tmp_path / "grid.png"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2) and grid.mode == "RGB"
    gt = Image.open(tmp_path / "grid_layout_x_style.png")
    assert gt.size == (6 * 32 + 7 * 2, 6 * 32 + 7 * 2)
    proc = run_cli("datasets", "list", cwd=tmp_path)
    assert proc.returncode == 0 and all(n in proc.stdout for n in ("photos", "synthetic", "folder"))


def test_bench_cli_reports_images_per_second(tmp_path):
    proc = run_cli("datasets", "bench", "synthetic", "--resolution", "32", "--n", "64", "--batch", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "synthetic train at 32 px:" in proc.stdout and "images/s" in proc.stdout
