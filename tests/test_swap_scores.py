"""Swap scores that cannot be gamed: the held-out reference set, the controls, the disentanglement
scores, the intervals and the one exact Frechet computation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from PIL import Image
from test_weights import cached_or_skip
from torch import nn

from swapbench.evaluation.evaluate import build_context, evaluate, reference_record
from swapbench.recipe import Recipe

CPU = torch.device("cpu")


def recipe(dataset: str = "photos", resolution: int = 32, test_images: int = 8, reference: int = 12, **data) -> Recipe:
    return Recipe.model_validate({
        **TINY, "data": {"dataset": dataset, "resolution": resolution, "test_images": test_images, **data},
        "eval": {**TINY["eval"], "swap_pairs": 8, "reference_images": reference, "bootstrap_samples": 200},
    })


def digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


class Spy(nn.Module):
    """A stand-in autoencoder: structure code = 4x4 luminance normalised per image, texture code =
    channel means and stds;
    swap = B's colour statistics on A's normalised image. Records what it was asked to swap."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def encode(self, x):
        lum = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)
        normalised = (lum - lum.mean(1, keepdim=True)) / (lum.std(1, keepdim=True) + 1e-6)
        return normalised, torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)

    def reconstruct(self, x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # a slightly blurred copy

    def swap(self, a, b):
        self.calls.append((a.clone(), b.clone()))
        mean_a, std_a = a.mean((2, 3), keepdim=True), a.std((2, 3), keepdim=True) + 1e-6
        mean_b, std_b = b.mean((2, 3), keepdim=True), b.std((2, 3), keepdim=True)
        return ((a - mean_a) / std_a * std_b + mean_b).clamp(-1, 1)


# -- the reference set --------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["photos", "synthetic"])
def test_reference_set_shares_no_image_with_the_sources(dataset):
    from swapbench.data import build_dataset, test_images

    r = recipe(dataset)
    ctx = build_context(Spy(), r, CPU)
    assert ctx.reference == range(8, 20) and ctx.n == 8
    sources = {a for a, _ in ctx.pairs} | {b for _, b in ctx.pairs}
    assert sources <= set(range(ctx.n)) and not sources & set(ctx.reference)
    reference = {digest(ctx.dataset[i]) for i in ctx.reference}
    assert len(reference) == 12 and not reference & {digest(img) for img in ctx.images}
    # the scored images are exactly those of the recipe's own (shorter) test split
    assert torch.equal(ctx.images, test_images(r, build_dataset(r, "test")))
    if dataset == "synthetic":  # no layout or style of a reference item is one of a source's
        ref_factors = {f for i in ctx.reference for f in ctx.dataset.factors(i)}
        assert not ref_factors & {f for i in range(ctx.n) for f in ctx.dataset.factors(i)}
    record = reference_record(r, ctx.reference)
    assert record["n"] == 12 and record["indices"] == [8, 20] and "fixed test seed" in record["drawn"]


def test_a_folder_reference_is_the_test_files_after_the_sources(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    r = recipe("folder", test_images=4, reference=100, root=str(tmp_path), test_fraction=0.5)
    ctx = build_context(Spy(), r, CPU)
    files = ctx.dataset.manifest()["files"]
    assert len(files) == 10 and ctx.reference == range(4, 10)  # as many as the split allows
    record = reference_record(r, ctx.reference, ctx.dataset.manifest())
    assert record["files"] == files[4:] and not set(record["files"]) & set(files[:4])


# -- controls ----------------------------------------------------------------------------------

def test_controls_use_exactly_the_models_pairs():
    model = Spy()
    ctx = build_context(model, recipe(), CPU)
    scores = evaluate(ctx, ["swap_reencode_structure", "swap_reencode_texture"])
    (a_in, b_in), = model.calls  # one batch of 8 pairs
    a, b = ctx.structure_indices, ctx.texture_indices
    assert torch.equal(a_in, ctx.images[a]) and torch.equal(b_in, ctx.images[b])
    assert torch.equal(ctx.control("copy_a").swaps, ctx.images[a])
    assert torch.equal(ctx.control("copy_b").swaps, ctx.images[b])
    assert torch.equal(ctx.control("recon_a").swaps, model.reconstruct(ctx.images)[a])
    for control in ("copy_a", "copy_b", "recon_a"):
        for score in ("swap_reencode_structure", "swap_reencode_texture"):
            assert f"control/{control}/{score}" in scores and f"control/{control}/{score}_ci_low" in scores
    assert not any(k.startswith("control/truth_flat/") for k in scores)  # photos have no true swap
    # by construction: copying A gives back A's codes exactly and B's only as far as a random pair
    assert scores["control/copy_a/swap_reencode_structure"] == 1 and scores["control/copy_a/swap_reencode_texture"] == 0
    assert scores["control/copy_b/swap_reencode_texture"] == 1 and scores["control/copy_b/swap_reencode_structure"] == 0


def test_reconstruction_scores_come_with_a_thumbnail_control_that_needs_no_model():
    from swapbench.evaluation.metrics.reconstruction import psnr

    ctx = build_context(Spy(), recipe(), CPU)
    scores = evaluate(ctx, ["recon_psnr", "recon_l1", "swap_reencode_texture"])
    x = ctx.images
    small = x.view(*x.shape[:2], x.shape[2] // 4, 4, x.shape[3] // 4, 4).mean((3, 5))  # 4x4 block means
    thumbnails = F.interpolate(small, size=x.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
    assert torch.allclose(ctx.control("thumbnail_4x").reconstructions, thumbnails, atol=1e-6)
    assert scores["control/thumbnail_4x/recon_psnr"] == pytest.approx(float(psnr(thumbnails, x).mean()), rel=1e-5)
    assert scores["control/thumbnail_4x/recon_l1_ci_low"] <= scores["control/thumbnail_4x/recon_l1"]
    # the Spy's 3x3 blur keeps more than a 4x thumbnail; swap scores get no thumbnail row, recon scores no copy rows
    assert scores["recon_psnr"] > scores["control/thumbnail_4x/recon_psnr"]
    assert not any(k.startswith("control/thumbnail_4x/swap") or k.startswith("control/copy_a/recon") for k in scores)


class Truth(Spy):
    """The ground-truth swapper of a synthetic test split (its images found by their bytes)."""

    def __init__(self, dataset, images):
        super().__init__()
        self.dataset, self.index = dataset, {digest(img): i for i, img in enumerate(images)}

    def swap(self, a, b):
        rows = lambda x: [self.index[digest(img)] for img in x]  # noqa: E731
        return self.dataset.gt_swap(rows(a), rows(b))


def test_truth_flat_lies_between_the_true_swap_and_both_copies():
    """On synthetic data the flattened true swap is logged as a control: worse than the true swap on
    gt_swap_lpips (patterns matter), better than copying A (layout and colours are right)."""
    cached_or_skip("lpips_vgg")
    ctx = build_context(Spy(), recipe("synthetic", resolution=64), CPU)
    ctx.model = Truth(ctx.dataset, ctx.images)
    scores = evaluate(ctx, ["gt_swap_lpips"])
    assert scores["gt_swap_lpips"] < 1e-6
    flat = scores["control/truth_flat/gt_swap_lpips"]
    assert 0.2 < flat < scores["control/copy_a/gt_swap_lpips"], scores
    assert scores["control/truth_flat/gt_swap_lpips_ci_low"] <= flat <= scores["control/truth_flat/gt_swap_lpips_ci_high"]


def test_no_control_wins_every_column():
    """On synthetic data with the ground-truth swapper: copy_a is worst at texture transfer, copy_b
    worst at keeping structure; each control loses to the model somewhere."""
    cached_or_skip("lpips_vgg")

    r = recipe("synthetic")
    ctx = build_context(Spy(), r, CPU)
    ctx.model = Truth(ctx.dataset, ctx.images)
    # the encoder-free scores (the re-encoding scores would judge this stand-in's crude encoder)
    texture, structure = {"swap_texture_dist": "down"}, {"swap_structure_dist": "down"}
    scores = evaluate(ctx, [*texture, *structure, "swap_reencode_texture"])
    rows = {"model": "", **{c: f"control/{c}/" for c in ("copy_a", "copy_b", "recon_a")}}

    def ranked(score: str, way: str) -> list[str]:  # best first
        return sorted(rows, key=lambda k: scores[rows[k] + score] * (1 if way == "down" else -1))

    for score, way in {**texture, "swap_reencode_texture": "up"}.items():
        assert ranked(score, way)[-1] == "copy_a", (score, scores)
        assert ranked(score, way).index("model") < ranked(score, way).index("recon_a")
    for score, way in structure.items():
        assert ranked(score, way)[-1] == "copy_b", (score, scores)
        assert ranked(score, way)[0] == "copy_a"  # copying A keeps A's layout exactly: distance 0
    for control in ("copy_a", "copy_b", "recon_a"):
        assert any(ranked(s, w).index(control) > ranked(s, w).index("model") for s, w in {**texture, **structure}.items())


# -- the exact Frechet distance, KID and intervals --------------------------------------------

@pytest.mark.parametrize("d", [8, 64, 256])
@pytest.mark.parametrize("factor", [1.1, 2, 5])
def test_fid_equals_clean_fid_where_it_is_well_posed(d, factor):
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    from swapbench.evaluation.metrics.distances import fit_gaussian, frechet_distance

    rng = np.random.default_rng(d)
    n = int(d * factor) + 2
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.3
    b = rng.standard_normal((n + 7, d)) * 1.2 + 0.1
    theirs = cleanfid_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert not fit_gaussian(a).sample_space  # above the dimension: the eigenvalue form
    assert abs(frechet_distance(a, b) - theirs) < 1e-4


@pytest.mark.parametrize("n,m,d", [(5, 9, 16), (20, 30, 64), (60, 300, 128)])
def test_sample_space_form_below_the_dimension_is_exact(n, m, d):
    from swapbench.evaluation.metrics.distances import fit_gaussian, frechet_distance

    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((m, d)) * 0.7 + 0.2
    assert fit_gaussian(a).sample_space
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.linalg.eigvals(sa @ sb)  # independent route: the eigenvalues of the product
    direct = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum()
    # (the eigenvalue route carries noise of ~1e-7 in the sqrt of each of its d - n zero eigenvalues)
    assert frechet_distance(a, b) == pytest.approx(direct, abs=1e-4)
    assert abs(frechet_distance(a, a)) < 1e-9


@pytest.mark.parametrize("n,d", [(12, 32), (80, 16), (45, 50)])
def test_distances_on_jackknife_subsets_equal_recomputing(n, d):
    from swapbench.evaluation.metrics.distances import frechet_distance, frechet_on_subsets, kernel_distance, kid_on_subsets
    from swapbench.evaluation.metrics.intervals import jackknife_subsets

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((40, d)) + 0.3
    subsets = jackknife_subsets(n, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(subsets, jackknife_subsets(n, seed=3)))
    fast = frechet_on_subsets(a, b, subsets)  # (45, 50): subsets of 42 and 43 rows, both below d
    assert fast == pytest.approx([frechet_distance(a[i], b) for i in subsets], abs=1e-8)
    sources = a * 0.5 + rng.standard_normal((n, d))  # each row paired with its own source row
    paired = frechet_on_subsets(a, sources, subsets, paired=True)
    assert paired == pytest.approx([frechet_distance(a[i], sources[i]) for i in subsets], abs=1e-8)
    kid = kid_on_subsets(a, b, subsets, num_subsets=5, seed=4)
    assert kid == pytest.approx([kernel_distance(a[i], b, num_subsets=5, seed=4) for i in subsets], rel=1e-10)


def test_jackknife_needs_three_rows():
    """Two pairs leave subsets of one row, which have no covariance (SVD of NaN): no interval instead."""
    from swapbench.evaluation.metrics.distances import frechet_on_subsets
    from swapbench.evaluation.metrics.intervals import jackknife_subsets, with_jackknife_interval

    assert jackknife_subsets(2, seed=0) == [] and len(jackknife_subsets(3, seed=0)) == 3
    a, b = np.random.default_rng(0).standard_normal((2, 8)), np.random.default_rng(1).standard_normal((9, 8))
    out = with_jackknife_interval("fid", 1.0, frechet_on_subsets(a, b, jackknife_subsets(2, 0)), 2)
    assert out == {"fid": 1.0, "fid_n": 2}


@pytest.mark.parametrize("n", [7, 20, 63])
def test_jackknife_groups_leave_every_row_out_exactly_once(n):
    from swapbench.evaluation.metrics.intervals import JACKKNIFE_GROUPS, jackknife_subsets

    subsets = jackknife_subsets(n, seed=0)
    assert len(subsets) == min(n, JACKKNIFE_GROUPS)
    left_out = np.concatenate([np.setdiff1d(np.arange(n), kept) for kept in subsets])
    assert np.array_equal(np.sort(left_out), np.arange(n))  # a partition: no row repeated, none lost
    sizes = {n - len(kept) for kept in subsets}
    assert max(sizes) - min(sizes) <= 1
    assert not all(np.array_equal(x, y) for x, y in zip(subsets, jackknife_subsets(n, seed=1)))


def test_jackknife_interval_of_a_mean_is_the_t_interval():
    """Delete-one jackknife of the sample mean: SE = s / sqrt(n) exactly (an identity, not an estimate)."""
    from scipy.stats import t

    from swapbench.evaluation.metrics.intervals import jackknife_interval, jackknife_subsets

    x = np.random.default_rng(5).standard_normal(20) * 2 + 1
    leave_out = np.array([x[i].mean() for i in jackknife_subsets(20, seed=0, groups=20)])
    lo, hi = jackknife_interval(x.mean(), leave_out)
    half = t.ppf(0.975, 19) * x.std(ddof=1) / np.sqrt(20)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-10)


def test_fid_and_kid_intervals_hold_their_estimate():
    """The bootstrap with replacement put every resampled FID above the estimate (repeated rows shrink the
    fitted covariance); the jackknife interval is centred on it, and narrows as N grows."""
    from swapbench.evaluation.metrics.distances import frechet_distance, frechet_on_subsets, kernel_distance, kid_on_subsets
    from swapbench.evaluation.metrics.intervals import (
        bootstrap_indices,
        jackknife_subsets,
        percentile_interval,
        with_jackknife_interval,
    )

    rng = np.random.default_rng(6)
    ref = rng.standard_normal((300, 24))
    widths = []
    for n in (40, 160):
        a = rng.standard_normal((n, 24)) * 1.2 + 0.1
        fid = frechet_distance(a, ref)
        boot = [frechet_distance(a[i], ref) for i in bootstrap_indices(n, 200, seed=0)]
        assert percentile_interval(boot)[0] > fid  # the old interval missed its own estimate
        out = with_jackknife_interval("fid", fid, frechet_on_subsets(a, ref, jackknife_subsets(n, 0)), n)
        assert out["fid_ci_low"] < fid < out["fid_ci_high"]
        widths.append(out["fid_ci_high"] - out["fid_ci_low"])
        kid = kernel_distance(a, ref)
        out = with_jackknife_interval("kid", kid, kid_on_subsets(a, ref, jackknife_subsets(n, 0)), n)
        assert out["kid_ci_low"] < kid < out["kid_ci_high"]
    assert widths[1] < widths[0]


def test_kid_equals_clean_fid_with_unequal_sets():
    from cleanfid.fid import kernel_distance as cleanfid_kid

    from swapbench.evaluation.metrics.distances import kernel_distance

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((30, 16)), rng.standard_normal((50, 16)) + 0.2
    np.random.seed(7)
    assert kernel_distance(a, b, num_subsets=20, seed=7) == pytest.approx(cleanfid_kid(a, b, num_subsets=20), rel=1e-12)


def test_mean_intervals_are_percentiles_of_resampled_means():
    from swapbench.evaluation.metrics.intervals import bootstrap_indices, mean_with_interval, ratio_with_interval

    values = np.random.default_rng(0).standard_normal(50) + 3
    idx = bootstrap_indices(50, 2000, seed=0)
    out = mean_with_interval("s", values, idx)
    assert out["s"] == pytest.approx(values.mean()) and out["s_n"] == 50
    assert out["s_ci_low"] == pytest.approx(np.percentile(values[idx].mean(1), 2.5))
    assert out["s_ci_low"] < out["s"] < out["s_ci_high"]
    half = 1.96 * values.std(ddof=1) / np.sqrt(50)  # the normal interval it should approximate
    assert out["s_ci_high"] - out["s_ci_low"] == pytest.approx(2 * half, rel=0.15)
    assert set(mean_with_interval("s", values, bootstrap_indices(50, 0, 0))) == {"s", "s_n"}
    ratio = ratio_with_interval("r", values, values * 2, idx)
    assert ratio["r"] == pytest.approx(0.5) and ratio["r_ci_low"] == pytest.approx(0.5)


def test_rank_agreement_with_the_ground_truth():
    import pandas as pd

    from swapbench.evaluation.metrics.agreement import rank_agreement

    runs = pd.DataFrame({"metrics.gt_swap_lpips": [0.1, 0.2, 0.3, 0.4, 0.5],
                         "metrics.swap_texture_dist": [1.0, 1.5, 1.7, 3.0, 4.0],  # same order, same direction
                         "metrics.swap_reencode_texture": [0.9, 0.8, 0.5, 0.4, 0.1],  # same order, higher is better
                         "metrics.swap_fid": [500, 400, 300, 200, 100]})  # the reverse
    table = rank_agreement(runs, ["swap_texture_dist", "swap_reencode_texture", "swap_fid"]).set_index("score")
    assert table.loc["swap_texture_dist", "agreement"] == pytest.approx(1)
    assert table.loc["swap_reencode_texture", "spearman"] == pytest.approx(-1)
    assert table.loc["swap_reencode_texture", "agreement"] == pytest.approx(1)
    assert table.loc["swap_fid", "agreement"] == pytest.approx(-1) and (table["runs"] == 5).all()


def test_legacy_pytorch_features_give_clean_fids_legacy_pytorch_fid(tmp_path):
    cached_or_skip("inception")
    from cleanfid import fid as cfid

    from swapbench.evaluation.metrics.distances import frechet_distance
    from swapbench.evaluation.metrics.inception import InceptionFeatures, to_uint8_hwc

    folders = []
    for split in ("test", "train"):
        from swapbench.data.photos import PhotoCrops

        ds = PhotoCrops(split, 40, test_images=6, seed=1)
        folder = tmp_path / split
        folder.mkdir()
        for i, img in enumerate(to_uint8_hwc(torch.stack([ds[i] for i in range(6)]))):
            Image.fromarray(img).save(folder / f"{i}.png")
        folders.append(folder)
    net = InceptionFeatures("cpu")
    ours = [net.pool_uint8([np.asarray(Image.open(p)) for p in sorted(f.iterdir())], "legacy_pytorch") for f in folders]
    theirs = cfid.compute_fid(str(folders[0]), str(folders[1]), mode="legacy_pytorch", custom_feat_extractor=net.extractor,
                              device=CPU, num_workers=0, batch_size=6, verbose=False)
    assert frechet_distance(*ours) == pytest.approx(theirs, abs=1e-3)
    clean = frechet_distance(*(net.pool_uint8([np.asarray(Image.open(p)) for p in sorted(f.iterdir())]) for f in folders))
    assert abs(clean - theirs) > 1e-3  # the two resizes really differ


def test_skip_metrics_leaves_scores_out_of_all_and_keeps_the_rest_with_their_controls():
    from swapbench.experiments.pipeline import requested_metrics
    from swapbench.recipe import load_recipe
    from swapbench.registry import METRICS

    keep = {"swap_reencode_structure", "recon_psnr"}
    skip = [n for n in METRICS.names() if n not in keep]
    requested, skipped = requested_metrics(load_recipe("small", [f"eval.skip_metrics=[{', '.join(skip)}]"]))
    assert requested == "all" and skipped == skip
    assert requested_metrics(load_recipe("small"), ["recon_psnr"]) == (["recon_psnr"], [])  # the command line's list
    scores = evaluate(build_context(Spy(), recipe(), CPU), requested, skipped)
    suffixes = ("", "_ci_low", "_ci_high", "_n", "_n_sources")  # photos: crops of 4 photographs
    assert {k.split("/")[-1] for k in scores} == {f"{name}{end}" for name in keep for end in suffixes}
    assert "control/copy_b/swap_reencode_structure" in scores and "control/thumbnail_4x/recon_psnr" in scores
