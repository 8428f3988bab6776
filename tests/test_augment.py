from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from swapbench.data import build_dataset
from swapbench.data.augment import augment_image, hue_rotation
from swapbench.errors import UserError
from swapbench.recipe import load_recipe


def small(*overrides: str):
    return load_recipe("small", ["data.test_images=4", *overrides])


def test_augment_is_hash_neutral_when_off_and_changes_the_hash_when_on():
    assert small().hash() == small("data.augment=[]").hash()
    assert small("data.augment=[hue]").hash() != small().hash()


def test_unknown_augmentation_is_a_user_error():
    with pytest.raises(UserError, match="augment"):
        small("data.augment=[blur]")


def test_the_test_split_is_never_augmented():
    plain = build_dataset(small(), "test")
    augmented = build_dataset(small("data.augment=[hue, saturation, rot90]"), "test")
    for i in range(4):
        assert torch.equal(plain[i], augmented[i])


def test_training_items_are_quarter_turns_of_the_plain_crop_and_repeat_exactly():
    plain = build_dataset(small(), "train")
    turned = build_dataset(small("data.augment=[rot90]"), "train")
    seen = set()
    for i in range(40):
        x, y = plain[i], turned[i]
        matches = [k for k in range(4) if torch.equal(torch.rot90(x, k, dims=(1, 2)), y)]
        assert matches, f"item {i} is not a quarter turn of the plain crop"
        seen.add(matches[0])
        assert torch.equal(turned[i], y)  # same draws on every fetch
    assert seen == {0, 1, 2, 3}
    batch = turned.__getitems__([3, 7])
    assert torch.equal(batch[0], turned[3]) and torch.equal(batch[1], turned[7])
    assert turned.manifest()["augment"] == ["rot90"] and turned.manifest()["split"] == "train"


def test_hue_rotation_keeps_greys_and_brightness_and_a_third_turn_cycles_the_channels():
    assert torch.allclose(hue_rotation(2 * math.pi), torch.eye(3), atol=1e-6)
    third = hue_rotation(2 * math.pi / 3)
    assert torch.allclose(third @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    grey = torch.tensor([0.3, 0.3, 0.3])
    assert torch.allclose(hue_rotation(1.0) @ grey, grey, atol=1e-6)
    colour = torch.tensor([0.5, -0.2, 0.1])
    assert torch.isclose((hue_rotation(2.0) @ colour).sum(), colour.sum(), atol=1e-6)


def test_each_augmentation_keeps_its_own_draw_when_others_are_added():
    image = torch.rand(3, 8, 8) * 1.2 - 0.6
    draws = np.random.default_rng(1).random(3)
    hue_only = augment_image(image, ["hue"], draws)
    hue_and_turn = augment_image(image, ["hue", "rot90"], draws)
    k = min(int(draws[2] * 4), 3)
    assert torch.allclose(torch.rot90(hue_only, k, dims=(1, 2)), hue_and_turn)


def test_saturation_scales_the_distance_from_grey_by_a_half_to_two_and_leaves_greys_alone():
    grey = torch.linspace(-1, 1, 64).reshape(1, 8, 8).repeat(3, 1, 1)
    assert torch.allclose(augment_image(grey, ["saturation"], np.array([0.9, 0.9, 0.9])), grey)
    pale = torch.tensor([0.1, -0.1, 0.0]).reshape(3, 1, 1).expand(3, 4, 4)  # grey value 0
    assert torch.allclose(augment_image(pale, ["saturation"], np.array([0.0, 1.0, 0.0])), 2 * pale)
    assert torch.allclose(augment_image(pale, ["saturation"], np.array([0.0, 0.0, 0.0])), pale / 2)


def test_augment_lists_are_stored_in_applied_order_once():
    assert small("data.augment=[rot90, hue, hue]").data.augment == ["hue", "rot90"]
    assert small("data.augment=[rot90, hue]").hash() == small("data.augment=[hue, rot90]").hash()


def test_a_short_training_split_repeats_with_new_draws_and_negative_seeds_work(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    folder = ["data.dataset=folder", f"data.root={tmp_path}", "data.crop=center", "data.hflip=false",
              "data.test_fraction=0.5", "data.test_images=2", "eval.grid_size=2"]
    plain = build_dataset(load_recipe("small", folder), "train")
    assert len(plain) == 5  # one item per file: no random crop or flip
    augmented = build_dataset(load_recipe("small", [*folder, "data.augment=[hue]", "seed=-3"]), "train")
    assert len(augmented) > len(plain)
    assert not torch.equal(augmented[0], augmented[5])  # the same file, a different colour on the next pass
    assert torch.equal(augmented[5], augmented[5])


def test_loader_workers_give_the_same_items_as_direct_indexing():
    from torch.utils.data import DataLoader

    ds = build_dataset(small("data.augment=[hue, saturation, rot90]"), "train")
    indices = [4, 9, 1, 20, 7, 3]
    loaded = torch.cat(list(DataLoader(torch.utils.data.Subset(ds, indices), batch_size=3, num_workers=2)))
    assert torch.equal(loaded, torch.stack([ds[i] for i in indices]))
