"""The protocol that can tell (DESIGN.md, "A protocol that can tell"): validation apart from test,
intervals over independent sources, the synthetic part scores and their controls, the middle control."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image
from test_swap_scores import CPU, Spy, recipe

import swapbench.data.synthetic as S
from swapbench.data import build_dataset
from swapbench.data.photos import PHOTO_FILES, TEST_PHOTOS, TRAIN_PHOTOS, VALIDATION_PHOTOS, PhotoCrops
from swapbench.errors import UserError
from swapbench.evaluation.evaluate import build_context
from swapbench.recipe import load_recipe

# -- validation and test --------------------------------------------------------------------------


def test_photo_splits_are_whole_photographs_and_the_training_photos_are_unchanged():
    assert not set(TRAIN_PHOTOS) & set(VALIDATION_PHOTOS)
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS) and not set(VALIDATION_PHOTOS) & set(TEST_PHOTOS)
    assert set(TRAIN_PHOTOS) | set(VALIDATION_PHOTOS) | set(TEST_PHOTOS) == set(PHOTO_FILES)
    # the training photographs every existing photos recipe (and the zoo's models) trained on
    assert TRAIN_PHOTOS == ("astronaut", "hubble_deep_field", "ihc", "motorcycle_left", "motorcycle_right", "retina",
                            "rocket", "brick", "grass", "china")
    val = PhotoCrops("validation", 32, test_images=24)
    test = PhotoCrops("test", 32, test_images=24)
    assert set(val.source_ids(range(24))) <= set(VALIDATION_PHOTOS)
    assert set(test.source_ids(range(24))) == set(TEST_PHOTOS)  # 24 crops reach all four
    assert torch.equal(val[3], PhotoCrops("validation", 32, test_images=24, seed=7)[3])  # independent of the seed
    assert not any(torch.equal(val[i], test[i]) for i in range(24))


def test_source_ids_name_the_photograph_each_crop_is_cut_from():
    ds = PhotoCrops("test", 32, test_images=16)
    for i, name in enumerate(ds.source_ids(range(16))):
        only = PhotoCrops("test", 32, test_images=16)
        k = ds.names.index(name)
        # the same draw from a split whose other photographs are blanked gives the same crop: it is cut from `name`
        only.photos = [p if j == k else torch.zeros_like(p) for j, p in enumerate(ds.photos)]
        assert torch.equal(only[i], ds[i])


def test_synthetic_validation_factors_are_neither_training_nor_test_ones():
    val = S.SyntheticDataset("validation", 32, test_images=16)
    ids = [val.factors(i) for i in range(16)]
    assert all(lay >= S.TRAIN_LAYOUTS and sty >= S.TRAIN_STYLES for lay, sty in ids)
    lay = torch.cat([S.layouts("train", [a for a, _ in ids]).center.flatten(1)], 1)
    test_lay = S.layouts("test", list(range(64))).center.flatten(1)
    assert torch.cdist(lay, test_lay).min() > 1e-4
    assert not torch.equal(val[0], S.SyntheticDataset("test", 32, test_images=16)[0])
    assert val.manifest()["factor_offset"] == S.VALIDATION_OFFSET


def test_a_folder_validation_split_comes_out_of_training_and_leaves_the_test_files_alone(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    base = recipe("folder", root=str(tmp_path), test_fraction=0.2, test_images=2)
    with_val = recipe("folder", root=str(tmp_path), test_fraction=0.2, test_images=2, validation_fraction=0.2)
    old_test, old_train = build_dataset(base, "test").files, build_dataset(base, "train").files
    test, train, val = (build_dataset(with_val, s).files for s in ("test", "train", "validation"))
    assert test == old_test and len(val) == 4 and set(val) <= set(old_train) and not set(val) & set(train)
    with pytest.raises(UserError, match="data.validation_fraction"):
        build_dataset(base, "validation")


def test_the_split_setting_keeps_every_existing_recipe_hash():
    quick = load_recipe("quickstart")
    assert load_recipe("quickstart", ["eval.split=test"]).hash() == quick.hash()
    assert load_recipe("quickstart", ["data.validation_fraction=0"]).hash() == quick.hash()
    assert load_recipe("quickstart", ["eval.split=validation"]).hash() != quick.hash()
    with pytest.raises(UserError):
        load_recipe("quickstart", ["eval.split=train"])


def test_scores_say_their_split_and_validation_is_scored_on_validation_images(tmp_path):
    from swapbench.experiments.pipeline import score_model

    r = recipe()
    both = r.model_copy(update={"eval": r.eval.model_copy(update={"split": "both"})})
    scores = score_model(Spy(), both, CPU, ["swap_reencode_texture"])
    assert "swap_reencode_texture" in scores and "val/swap_reencode_texture" in scores
    assert "val/control/copy_b/swap_reencode_texture" in scores
    val_ctx = build_context(Spy(), r, CPU, split="validation")
    assert set(val_ctx.dataset.source_ids(range(val_ctx.n))) <= set(VALIDATION_PHOTOS)


def _log(split_scores: dict[str, float]) -> None:
    with mlflow.start_run():
        mlflow.log_params({"data.dataset": "photos", "data.resolution": 32, "data.test_images": 64,
                           "eval.swap_pairs": 64, "score.inception_sha256": "abc", "seed": 0})
        mlflow.set_tags({"swapbench.variant": "v", "swapbench.recipe": "base"})
        mlflow.log_metrics(split_scores)


def test_a_leaderboard_never_mixes_splits(tmp_path):
    from swapbench.experiments.leaderboard import build_tables, load_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("splits")
    _log({"swap_structure_dist": 0.1, "val/swap_structure_dist": 0.7})
    (test,) = build_tables(load_runs("splits", uri=uri))
    (val,) = build_tables(load_runs("splits", uri=uri), split="validation")
    assert test.frame["swap_structure_dist"].tolist() == [0.1] and "test split" in test.note
    assert val.frame["swap_structure_dist"].tolist() == [0.7] and "validation split" in val.note
    mlflow.set_experiment("test_only")
    _log({"swap_structure_dist": 0.2})
    with pytest.raises(UserError, match="validation split"):
        build_tables(load_runs("test_only", uri=uri), split="validation")


# -- intervals over sources -----------------------------------------------------------------------


def test_the_cluster_bootstrap_weighs_rows_by_their_sources_draws():
    from swapbench.evaluation.metrics.intervals import cluster_bootstrap_weights, cluster_jackknife_subsets

    clusters = [("p",), ("p",), ("q",), ("r",)]
    w = cluster_bootstrap_weights(clusters, 500, 0)
    assert w.shape == (500, 4)
    assert (w[:, 0] == w[:, 1]).all()  # two crops of one photograph are drawn together, never apart
    assert np.allclose(w[:, [0, 2, 3]].sum(1), 3)  # three sources drawn per resample
    pairs = [("p", "q"), ("q", "r"), ("p", "r")]
    wp, wi = cluster_bootstrap_weights(pairs, 50, 1), cluster_bootstrap_weights([("p",), ("q",), ("r",)], 50, 1)
    assert np.allclose(wp, np.stack([wi[:, 0] * wi[:, 1], wi[:, 1] * wi[:, 2], wi[:, 0] * wi[:, 2]], 1))
    assert [k.tolist() for k in cluster_jackknife_subsets([("p",), ("p",), ("q",), ("r",), ("r",)])] == [
        [2, 3, 4], [0, 1, 3, 4], [0, 1, 2]]


def test_photo_intervals_resample_photographs_and_are_wider_than_crop_intervals():
    ctx = build_context(Spy(), recipe(test_images=32), CPU)
    assert ctx.sources is not None and len(set(ctx.sources)) == 4
    per_image = torch.tensor([float(TEST_PHOTOS.index(s)) for s in ctx.sources])  # all between-photo variation
    clustered = ctx.mean_score("x", per_image, over="images")
    assert clustered["x_n"] == 32 and clustered["x_n_sources"] == 4
    ctx.__dict__["sources"] = None  # the same values resampled as if every crop were independent
    naive = ctx.mean_score("x", per_image, over="images")
    assert "x_n_sources" not in naive
    assert clustered["x_ci_high"] - clustered["x_ci_low"] > 1.5 * (naive["x_ci_high"] - naive["x_ci_low"])
    # synthetic images are each their own source: rows stay the unit
    assert build_context(Spy(), recipe("synthetic"), CPU).sources is None


# -- the parts of a synthetic swap ----------------------------------------------------------------


def test_each_control_fails_exactly_the_part_it_should_and_the_true_swap_passes_all_three():
    from swapbench.evaluation.evaluate import evaluate
    from swapbench.evaluation.metrics.parts import PART_SCORES, passes

    r = recipe("synthetic", resolution=64, test_images=32)
    r = r.model_copy(update={"eval": r.eval.model_copy(update={"swap_pairs": 32})})
    ctx = build_context(Spy(), r, CPU)
    parts = list(PART_SCORES)
    outcome = {}
    for name, child in [("truth", ctx.with_outputs(ctx.gt_swaps)), ("copy_a", ctx.control("copy_a")),
                        ("copy_b", ctx.control("copy_b")), ("truth_flat", ctx.control("truth_flat"))]:
        scores = evaluate(child, parts)
        outcome[name] = {p: passes(p, scores[p]) for p in parts}
        assert all(f"{p}_ci_low" in scores for p in parts)
    assert outcome["truth"] == {"gt_layout": True, "gt_colour_error": True, "gt_pattern": True}
    assert outcome["copy_a"]["gt_colour_error"] is False and outcome["copy_a"]["gt_layout"] is True
    assert outcome["copy_b"]["gt_layout"] is False
    assert outcome["truth_flat"] == {"gt_layout": True, "gt_colour_error": True, "gt_pattern": False}
    # the model's scores come with every control's, truth_flat included
    scores = evaluate(ctx, parts)
    assert {f"control/{c}/{p}" for c in ("copy_a", "copy_b", "truth_flat") for p in parts} <= set(scores)


def test_part_scores_exist_only_where_the_truth_is_known():
    from swapbench.evaluation.evaluate import evaluate

    scores = evaluate(build_context(Spy(), recipe(), CPU), ["gt_layout", "gt_colour_error", "gt_pattern"])
    assert not any(k.startswith("gt_") for k in scores)


# -- the middle control ---------------------------------------------------------------------------


class Coded(Spy):
    """Spy with a decoder: decode(s, t) puts the colour statistics t on the normalised layout s."""

    def decode(self, s, t):
        side = 16
        lum = torch.nn.functional.interpolate(s.view(-1, 1, 4, 4), size=(side, side), mode="nearest")
        mean, std = t[:, :3, None, None], t[:, 3:, None, None]
        return (lum * std + mean).clamp(-1, 1)


def test_the_blend_and_the_code_midpoint_are_logged_with_the_controls():
    from swapbench.evaluation.evaluate import evaluate

    model = Coded()
    ctx = build_context(model, recipe(resolution=16), CPU)
    a, b = ctx.structure_indices, ctx.texture_indices
    assert torch.equal(ctx.control("blend").swaps, 0.5 * ctx.images[a] + 0.5 * ctx.images[b])
    (sa, ta), (sb, tb) = model.encode(ctx.images[a]), model.encode(ctx.images[b])
    assert torch.allclose(ctx.control("code_midpoint").swaps, model.decode((sa + sb) / 2, (ta + tb) / 2))
    scores = evaluate(ctx, ["swap_reencode_texture", "recon_l1"])
    assert "control/blend/swap_reencode_texture" in scores and "control/code_midpoint/swap_reencode_texture" in scores
    scores = evaluate(build_context(Spy(), recipe(resolution=16), CPU), ["swap_reencode_texture", "recon_l1"])
    assert "control/blend/swap_reencode_texture" in scores  # a pixel control: any model
    assert not any("code_midpoint" in k for k in scores)  # Spy has no decoder


def _scores(tex: float, struct: float, controls: dict[str, tuple[float, float]], half: float = 0.01) -> dict:
    out = {"swap_texture_dist": tex, "swap_texture_dist_ci_low": tex - half, "swap_texture_dist_ci_high": tex + half,
           "swap_structure_dist": struct, "swap_structure_dist_ci_low": struct - half,
           "swap_structure_dist_ci_high": struct + half}
    for c, (t, s) in controls.items():
        for name, v in (("swap_texture_dist", t), ("swap_structure_dist", s)):
            out.update({f"control/{c}/{name}": v, f"control/{c}/{name}_ci_low": v - half,
                        f"control/{c}/{name}_ci_high": v + half})
    return out


def test_a_swap_works_only_beyond_copy_a_copy_b_and_the_blend_on_both_with_intervals_apart():
    from swapbench.evaluation.protocol import swap_works

    controls = {"copy_a": (1.0, 0.0), "copy_b": (0.0, 0.5), "blend": (0.5, 0.25)}
    assert swap_works(_scores(0.3, 0.1, controls)).works is True
    # beyond both copies but not beyond the blend on texture: the rule's blind spot without a middle control
    v = swap_works(_scores(0.6, 0.1, controls))
    assert v.works is False and "blend" in v.why() and "copy" not in v.why()
    assert swap_works(_scores(0.3, 0.6, controls)).works is False  # structure no better than copy B
    assert swap_works(_scores(0.3, 0.1, controls, half=0.2)).works is False  # intervals overlap the blend's
    assert swap_works(_scores(0.3, 0.1, {"copy_a": (1.0, 0.0), "copy_b": (0.0, 0.5)})).works is None  # no blend


def test_leaderboard_tables_show_the_blend_row(tmp_path):
    from swapbench.experiments.leaderboard import build_tables, load_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("blend")
    _log({k: v for k, v in _scores(0.3, 0.1, {"copy_a": (1.0, 0.0), "copy_b": (0.0, 0.5), "blend": (0.5, 0.25)}).items()})
    (table,) = build_tables(load_runs("blend", uri=uri))
    assert "control: blend" in table.frame["variant"].tolist()


# -- the studies' sweep files ---------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["photos", "synthetic"])
def test_the_study_sweeps_validate_and_name_what_the_claims_read(dataset):
    from swapbench.experiments.claims import study
    from swapbench.experiments.sweep import load_sweep

    expected = {"losses_quickstart": ({"full", "no_cooc", "no_swap", "no_recon_gan"}, {0, 1, 2}, 32),
                "losses_reference": ({"full", "no_cooc"}, {0, 1}, 64),
                "codes_quickstart": ({"texdim_8", "texdim_64", "texdim_256", "texdim_2048", "structure_16x16",
                                      "structure_4x4"}, {0, 1, 2}, 32)}
    for name, (variants, seeds, resolution) in expected.items():
        kind, scale = name.split("_")
        spec, jobs, _ = load_sweep(study(kind, scale, dataset))
        assert spec.experiment == study(kind, scale, dataset)
        assert {j.variant for j in jobs} == variants and {j.recipe.seed for j in jobs} == seeds
        assert {j.recipe.data.dataset for j in jobs} == {dataset} and {j.recipe.data.resolution for j in jobs} == {resolution}
        assert {j.recipe.eval.split for j in jobs} == {"both"}  # choose on validation, report test
    codes = {j.variant: j.recipe.model for j in load_sweep(study("codes", "quickstart", dataset))[1]}
    assert [codes[f"texdim_{d}"].texture_dim for d in (8, 64, 256, 2048)] == [8, 64, 256, 2048]
    assert codes["structure_16x16"].structure_downsample == 2 and codes["structure_4x4"].structure_downsample == 8
