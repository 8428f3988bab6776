"""Scores against the reference implementations, with the real networks and small N."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image
from test_weights import cached_or_skip

from swapbench.data.photos import PhotoCrops
from swapbench.evaluation.metrics.inception import conv4_samples, to_uint8_hwc


@pytest.fixture(scope="module")
def nets():
    cached_or_skip("inception")
    cached_or_skip("lpips_alex")
    cached_or_skip("lpips_vgg")


def save_folder(folder, images: torch.Tensor, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(to_uint8_hwc(images)):
        Image.fromarray(img).save(folder / (names[i] if names else f"{i:03d}.png"))
    return folder


def crops(n: int, resolution: int = 64, split: str = "test") -> torch.Tensor:
    ds = PhotoCrops(split, resolution, test_images=n, seed=1)
    return torch.stack([ds[i] for i in range(n)])


@pytest.fixture(scope="module")
def folders(tmp_path_factory, nets):
    root = tmp_path_factory.mktemp("fid")
    a = save_folder(root / "a", crops(12, split="test"))
    b = save_folder(root / "b", crops(12, split="train"))
    return a, b


def test_fid_equals_clean_fid_compute_fid(folders):
    from cleanfid import fid as cfid

    from swapbench.evaluation.metrics.inception import InceptionFeatures
    from swapbench.evaluation.metrics.standalone import fid_folders

    a, b = folders
    ours = fid_folders(a, b)["value"]
    extractor = InceptionFeatures("cpu").extractor
    theirs = cfid.compute_fid(str(a), str(b), mode="clean", custom_feat_extractor=extractor,
                              device=torch.device("cpu"), num_workers=0, batch_size=8, verbose=False)
    assert ours == pytest.approx(theirs, abs=1e-3)
    assert ours > 1


def test_kid_equals_clean_fid_kernel_distance_on_the_same_features(folders):
    from cleanfid import fid as cfid

    from swapbench.evaluation.metrics.distances import kernel_distance, kid_subset_values
    from swapbench.evaluation.metrics.inception import InceptionFeatures
    from swapbench.evaluation.metrics.standalone import read_folder

    a, b = folders
    net = InceptionFeatures("cpu")
    fa, fb = net.pool_uint8(list(read_folder(a).values())), net.pool_uint8(list(read_folder(b).values()))
    np.random.seed(0)
    theirs = cfid.kernel_distance(fa, fb, num_subsets=100)
    assert kernel_distance(fa, fb, num_subsets=100, seed=0) == pytest.approx(theirs, rel=1e-9)
    assert np.std(kid_subset_values(fa, fb, num_subsets=100, seed=0)) < 1e-12  # 12 <= 1000: whole sets
    np.random.seed(0)
    theirs = cfid.kernel_distance(fa, fb, num_subsets=100, max_subset_size=6)
    values = kid_subset_values(fa, fb, num_subsets=100, max_subset_size=6, seed=0)
    assert np.mean(values) == pytest.approx(theirs, rel=1e-9) and np.std(values) > 1e-6


def test_fid_of_a_folder_with_itself_is_zero_and_grows_with_noise(tmp_path, nets):
    from swapbench.evaluation.metrics.distances import frechet_distance
    from swapbench.evaluation.metrics.inception import InceptionFeatures

    torch.manual_seed(0)
    images = crops(12)
    net = InceptionFeatures("cpu")
    clean = net.pool(images)
    assert abs(frechet_distance(clean, clean)) < 1e-3
    fids = [frechet_distance(clean, net.pool((images + s * torch.randn_like(images)).clamp(-1, 1)))
            for s in (0.05, 0.2, 0.5)]
    assert fids[0] < fids[1] < fids[2], fids


def test_sifid_zero_for_itself_grows_with_texture_change_and_counts_samples(nets):
    from swapbench.evaluation.metrics.distances import sifid_pair
    from swapbench.evaluation.metrics.inception import InceptionFeatures

    net = InceptionFeatures("cpu")
    x = crops(2, resolution=128)
    maps = net.conv4(x)
    assert sifid_pair(maps[0], maps[0]) == pytest.approx(0, abs=1e-3)
    torch.manual_seed(0)
    changed = [sifid_pair(maps[0], net.conv4((x[:1] + s * torch.randn_like(x[:1])).clamp(-1, 1))[0])
               for s in (0.05, 0.2, 0.5)]
    assert 0 < changed[0] < changed[1] < changed[2], changed  # grows with the texture change
    assert sifid_pair(maps[0], maps[1]) > 0
    for resolution, expected in ((64, 144), (128, 784), (256, 3600)):
        m = net.conv4(torch.zeros(1, 3, resolution, resolution))
        assert m.shape[1] == 192 and m.shape[2] * m.shape[3] == expected == conv4_samples(resolution)


def test_lpips_matches_the_lpips_package_pipeline_and_recorded_values(tmp_path, nets):
    import lpips

    from swapbench.evaluation.metrics.standalone import lpips_files
    from swapbench.nn.lpips import build_lpips

    img = crops(2, resolution=64)
    save_folder(tmp_path, img, ["x.png", "y.png"])
    for net in ("alex", "vgg"):
        ours = lpips_files(tmp_path / "x.png", tmp_path / "y.png", net)["value"]
        model = build_lpips(net)
        load = lambda name: np.asarray(Image.open(tmp_path / name).convert("RGB"))  # noqa: E731
        reference = model(lpips.im2tensor(load("x.png")), lpips.im2tensor(load("y.png"))).item()
        assert ours == pytest.approx(reference, abs=1e-6)
    # Recorded with this test's own inputs (photos test crops 0 and 1, seed 1, 64 px) on the CPU
    # by the first version of this suite; a change means the network or the input pipeline changed.
    assert lpips_files(tmp_path / "x.png", tmp_path / "y.png", "alex")["value"] == pytest.approx(RECORDED["alex"], abs=1e-4)
    assert lpips_files(tmp_path / "x.png", tmp_path / "y.png", "vgg")["value"] == pytest.approx(RECORDED["vgg"], abs=1e-4)


def test_lpips_to_a_fixed_target_equals_lpips_and_passes_gradients(nets):
    from swapbench.nn.lpips import LpipsToTarget, build_lpips

    targets, images = crops(3, resolution=64), crops(6, resolution=64)[3:]
    for net in ("alex", "vgg"):
        model = build_lpips(net)
        cached = LpipsToTarget(model, targets)
        x = images.clone().requires_grad_(True)
        value = cached(x)
        assert value.shape == (3, 1, 1, 1)
        assert torch.equal(value, model(images, targets))  # the same operations in the same order
        value.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert torch.allclose(cached(targets), torch.zeros(3, 1, 1, 1), atol=1e-7)


# measured on 2026-11-25 with torch 2.14.1 on x86_64 (2 CPU cores), swapbench commit after 95fc836
RECORDED = {"alex": 0.7139019966125488, "vgg": 0.8715560436248779}


def test_score_cli_json_and_bad_input(tmp_path, folders):
    a, b = folders
    proc = run_cli("score", "kid", str(a), str(b), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["metric"] == "kid" and result["n"] == 12 and isinstance(result["value"], float)
    proc = run_cli("score", "sifid", str(a), str(a), "--json", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["value"] == pytest.approx(0, abs=1e-3)

    one = save_folder(tmp_path / "one", crops(1))
    renamed = save_folder(tmp_path / "renamed", crops(2), ["p.png", "q.png"])
    broken = save_folder(tmp_path / "broken", crops(2))
    (broken / "zzz.png").write_text("not an image")
    cases = [
        (["score", "fid", str(tmp_path / "missing"), str(b)], "does not exist"),
        (["score", "fid", str(one), str(b)], "the score needs at least 2"),
        (["score", "sifid", str(renamed), str(save_folder(tmp_path / "plain", crops(2)))], "has no partner"),
        (["score", "kid", str(broken), str(b)], "zzz.png"),
        (["score", "lpips", str(a / "000.png"), str(tmp_path / "nope.png")], "nope.png does not exist"),
        (["score", "lpips", str(a / "000.png"), str(a / "001.png"), "--net", "squeeze"], "not an LPIPS network"),
    ]
    for args, expected in cases:
        proc = run_cli(*args, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], (args, proc.stderr)


def test_sifid_is_not_invented_for_images_too_small_for_conv4(nets, caplog):
    from types import SimpleNamespace

    from swapbench.evaluation.metrics.swap_realism import sifid

    for side in (16, 32, 64, 70):
        ctx = SimpleNamespace(images=torch.zeros(4, 3, side, side), notes={})
        scores = sifid(ctx)
        assert np.isnan(scores["sifid"]) and scores["sifid_samples"] == conv4_samples(side)
        assert f"not comparable at {side} px" in ctx.notes["sifid"]
    assert "sifid is not comparable at 16 px" in caplog.text
    assert conv4_samples(70) <= 192 < conv4_samples(71)  # from 71 px on more samples than dimensions


def test_frechet_is_exact_where_sqrtm_is_well_posed_and_survives_where_not():
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    from swapbench.evaluation.metrics.distances import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 8)), rng.standard_normal((30, 8)) * 1.5 + 0.3  # n > d: well posed
    reference = cleanfid_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    # 16 samples in 192 dimensions (SIFID of a 32 px image): a finite, non-negative number, 0 for itself
    a, b = rng.standard_normal((16, 192)), rng.standard_normal((16, 192)) + 0.5
    assert frechet_distance(a, b) > 0 and abs(frechet_distance(a, a)) < 1e-9
