"""A registered component brings its own settings: a toy encoder in a test-local module declares a
pydantic settings class when it registers, and recipes then carry its section, validated by that class,
with no edit anywhere else."""

from __future__ import annotations

import importlib
import sys

import pytest
from conftest import TINY

from swapbench.errors import UserError
from swapbench.recipe import describe_fields, read_by, recipe_from_dict
from swapbench.registry import ENCODERS, SECTIONS
from swapbench.training.trainer import build_trainer

TOY_ENCODER = '''
"""A plugin module: one encoder with one setting of its own."""
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from swapbench.registry import ENCODERS


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gain: float = Field(1.0, gt=0, description="Factor on both codes of the toy encoder.")


@ENCODERS.register("toy_encoder", settings=ToySettings, description="Strided-conv structure, mean-colour texture.")
class ToyEncoder(nn.Module):
    def __init__(self, structure_channels: int, structure_downsample: int, texture_dim: int, gain: float):
        super().__init__()
        self.gain = gain
        self.structure = nn.Conv2d(3, structure_channels, structure_downsample, stride=structure_downsample)
        self.texture = nn.Linear(3, texture_dim)

    def forward(self, image):
        return self.gain * self.structure(image), self.gain * self.texture(image.mean(dim=(2, 3)))


class MisnamedSettings(BaseModel):
    gain: float = 1.0


@ENCODERS.register("toy_misnamed", settings=MisnamedSettings)
class MisnamedEncoder(ToyEncoder):
    """Its optional parameter is spelt unlike its setting: without a check it would keep its default."""

    def __init__(self, structure_channels: int, structure_downsample: int, texture_dim: int, gian: float = 1.0):
        super().__init__(structure_channels, structure_downsample, texture_dim, gian)
'''


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    (tmp_path / "toy_encoder_plugin.py").write_text(TOY_ENCODER)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("toy_encoder_plugin")
    ENCODERS.remove("toy_encoder")
    ENCODERS.remove("toy_misnamed")
    sys.modules.pop("toy_encoder_plugin", None)


def toy_recipe(**section):
    return recipe_from_dict({**TINY, "model": {**TINY["model"], "encoder": "toy_encoder"}, "toy_encoder": section})


def test_a_plugin_encoder_with_its_own_setting_trains_from_a_recipe(toy_plugin):
    recipe = toy_recipe(gain=0.5)
    assert recipe.toy_encoder.gain == 0.5 and recipe.to_dict()["toy_encoder"] == {"gain": 0.5}
    trainer = build_trainer(recipe)
    assert isinstance(trainer.autoencoder.encoder, toy_plugin.ToyEncoder) and trainer.autoencoder.encoder.gain == 0.5
    result = trainer.fit()
    assert result.steps == 2 and all(v == v for v in result.final_losses.values())  # 2 steps, finite losses
    # the section is listed with the other options, and says who reads it
    assert ("toy_encoder.gain", 1.0, "Factor on both codes of the toy encoder.") in describe_fields()
    assert read_by("toy_encoder.gain") == "encoder 'toy_encoder'"
    assert toy_recipe().toy_encoder.gain == 1.0  # the settings class's default


def test_a_misspelt_or_invalid_component_setting_is_a_one_line_error(toy_plugin):
    with pytest.raises(UserError) as misspelt:
        toy_recipe(gian=2.0)
    assert "unknown key 'toy_encoder.gian' (did you mean 'toy_encoder.gain'?)" in str(misspelt.value)
    with pytest.raises(UserError) as invalid:
        toy_recipe(gain=-1)
    assert "toy_encoder.gain: Input should be greater than 0 (got -1)" in str(invalid.value)
    assert "\n" not in str(misspelt.value) + str(invalid.value)


def test_a_constructor_parameter_that_no_setting_provides_is_reported(toy_plugin):
    recipe = recipe_from_dict({**TINY, "model": {**TINY["model"], "encoder": "toy_misnamed"}})
    with pytest.raises(UserError, match="encoder 'toy_misnamed' has parameter.s. gian that no setting provides"):
        build_trainer(recipe)


def test_sections_go_when_their_last_component_does(toy_plugin):
    assert SECTIONS["toy_encoder"].owners == ["encoder 'toy_encoder'"]
    ENCODERS.remove("toy_encoder")
    assert "toy_encoder" not in SECTIONS
    with pytest.raises(UserError, match="unknown key 'toy_encoder'"):
        recipe_from_dict({**TINY, "toy_encoder": {"gain": 2.0}})
    ENCODERS.add("toy_encoder", toy_plugin.ToyEncoder, settings=toy_plugin.ToySettings)  # for the fixture's cleanup


def test_baseline_settings_live_in_baselines_and_keep_their_recipe_keys():
    from baselines.inversion.settings import InversionConfig
    from baselines.stylegan2.settings import StyleGAN2Config

    recipe = recipe_from_dict(TINY)
    assert isinstance(recipe.stylegan2, StyleGAN2Config) and isinstance(recipe.inversion, InversionConfig)
    assert "trainer 'stylegan2'" in read_by("stylegan2.w_dim") and "trainer 'sg2_encoder'" in read_by("inversion.generator")
    assert read_by("model.texture_dim") == "swapbench"
    with pytest.raises(UserError, match=r"unknown key 'stylegan2.w_dimm' \(did you mean 'stylegan2.w_dim'\?\)"):
        recipe_from_dict({**TINY, "stylegan2": {"w_dimm": 8}})
