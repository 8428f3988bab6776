from __future__ import annotations

import math

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
    draws = torch.rand(3).numpy()
    hue_only = augment_image(image, ["hue"], draws)
    hue_and_turn = augment_image(image, ["hue", "rot90"], draws)
    k = min(int(draws[2] * 4), 3)
    assert torch.allclose(torch.rot90(hue_only, k, dims=(1, 2)), hue_and_turn)


def test_saturation_leaves_grey_images_alone_and_stays_in_range():
    grey = torch.linspace(-1, 1, 64).reshape(1, 8, 8).repeat(3, 1, 1)
    assert torch.allclose(augment_image(grey, ["saturation"], torch.tensor([0.9, 0.9, 0.9]).numpy()), grey)
    vivid = torch.tensor([1.0, -1.0, 0.0]).reshape(3, 1, 1).expand(3, 4, 4)
    out = augment_image(vivid, ["saturation"], torch.tensor([0.0, 1.0, 0.0]).numpy())
    assert out.min() >= -1 and out.max() <= 1
