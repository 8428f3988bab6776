from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from swapbench.errors import UserError
from swapbench.registry import (
    ALL_REGISTRIES,
    DATASETS,
    DISCRIMINATORS,
    ENCODERS,
    GENERATORS,
    LOSSES,
    METRICS,
    SECTIONS,
    MetricRegistry,
    Registry,
    UnknownNameError,
)


def test_register_get_build():
    reg = Registry("widget")

    @reg.register("square", description="squares a number")
    def square(x: int) -> int:
        return x * x

    assert reg.get("square") is square
    assert reg.build("square", x=3) == 9
    assert "square" in reg and reg.names() == ["square"]
    assert reg.describe("square") == "squares a number"


def test_description_defaults_to_first_docstring_line():
    reg = Registry("widget")

    @reg.register("thing")
    class Thing:
        """First line.

        More text."""

    assert reg.describe("thing") == "First line."


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(UnknownNameError) as exc:
        ENCODERS.get("swap_aee")
    msg = str(exc.value)
    assert "unknown encoder 'swap_aee'" in msg
    assert "did you mean 'swap_ae'?" in msg
    assert "known encoders: " in msg and "swap_ae" in msg.split("known encoders: ")[1]
    assert isinstance(exc.value, UserError)


def test_duplicate_name_from_another_object_is_refused():
    reg = Registry("widget")
    reg.add("a", int)
    reg.add("a", int)  # re-registering the same object (module re-import) is fine
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", float)


def test_builtin_registries_import_their_own_modules():
    # a fresh interpreter that imports only the registry module still sees every built-in
    code = ("from swapbench.registry import ENCODERS, DISCRIMINATORS, LOSSES, METRICS, DATASETS;"
            "print(ENCODERS.names(), DISCRIMINATORS.names(), LOSSES.names(), METRICS.names(), DATASETS.names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("swap_ae", "stylegan2", "cooccur", "nonsaturating", "r1", "recon_psnr", "photos"):
        assert name in out


def test_builtins_present():
    assert "swap_ae" in ENCODERS and "swap_ae" in GENERATORS
    assert {"stylegan2", "cooccur"} <= set(DISCRIMINATORS.names())
    assert {"l1", "nonsaturating", "r1"} <= set(LOSSES.names())
    assert {"recon_l1", "recon_psnr"} <= set(METRICS.names())
    assert "photos" in DATASETS
    assert set(ALL_REGISTRIES) == {"dataset", "encoder", "generator", "discriminator", "loss", "metric", "optimizer",
                                  "model", "trainer", "inversion", "swap_method"}


def _fake_distribution(root, module_source: str, entry: str) -> None:
    """A tiny installed distribution: a module plus a dist-info folder with an entry point."""
    (root / "tiny_plugin.py").write_text(textwrap.dedent(module_source))
    info = root / "tiny_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[swapbench.plugins]\ntiny = {entry}\n")


def test_plugin_entry_point_registers_an_encoder(tmp_path):
    _fake_distribution(tmp_path, """
        from swapbench.registry import ENCODERS

        @ENCODERS.register("tiny_encoder", description="an encoder from a plugin")
        class TinyEncoder:
            pass
    """, "tiny_plugin")
    code = "from swapbench.registry import ENCODERS; print(ENCODERS.names())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": ""}).stdout
    assert "tiny_encoder" in out and "swap_ae" in out


def test_plugin_callable_is_called(tmp_path):
    _fake_distribution(tmp_path, """
        def register():
            from swapbench.registry import LOSSES
            LOSSES.add("tiny_loss", lambda a, b: 0.0, description="plugin loss")
    """, "tiny_plugin:register")
    code = "from swapbench.registry import LOSSES; print(LOSSES.names())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": ""}).stdout
    assert "tiny_loss" in out


def test_broken_plugin_warns_and_the_suite_still_works(tmp_path):
    _fake_distribution(tmp_path, "raise ImportError('no such thing')\n", "tiny_plugin")
    code = "from swapbench.registry import ENCODERS; print(ENCODERS.names())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert "swap_ae" in proc.stdout
    assert "plugin 'tiny'" in proc.stderr and "no such thing" in proc.stderr


def test_every_metric_records_direction_needs_output_group_and_description():
    from swapbench.evaluation.metrics import applies_to, direction, group

    for name in METRICS.names():
        assert direction(name) in ("down", "up") and METRICS.needs(name) and METRICS.describe(name), name
        assert METRICS.group(name) in MetricRegistry.GROUPS, name
        # the output a score judges is one the model must be able to make
        assert MetricRegistry.OUTPUTS[METRICS.scores(name)] in METRICS.needs(name), name
    assert {n for n in METRICS.names() if direction(n) == "up"} == {
        "recon_psnr", "gt_swap_psnr", "swap_reencode_structure", "swap_reencode_texture", "gt_layout", "gt_pattern",
        "swap_precision", "swap_recall", "swap_density", "swap_coverage"}
    assert group("realism") == ["swap_fid", "swap_fid_vs_structure", "swap_kid"]
    assert set(group("texture")) == {"sifid", "swap_reencode_texture", "swap_texture_dist"}
    assert set(group("structure")) == {"swap_reencode_structure", "swap_structure_dist"}
    assert {n for n in METRICS.names() if METRICS.scores(n) == "reconstructions"} == set(group("reconstruction"))
    assert [n for n in METRICS.names() if "code_midpoint" in METRICS.controls(n)] == [
        "swap_reencode_structure", "swap_reencode_texture"]
    assert direction("control/copy_a/swap_fid") is None and direction("swap_fid_ci_low") is None

    class Encodes:
        def reconstruct(self): ...

    assert applies_to("recon_l1", Encodes()) and not applies_to("swap_fid", Encodes())


def test_a_metric_must_say_which_way_is_better():
    metrics = MetricRegistry("metric")
    with pytest.raises(ValueError, match="direction must be 'down' .lower is better. or 'up'"):
        metrics.add("sideways", lambda ctx: {}, direction="sideways")
    with pytest.raises(TypeError):
        metrics.register("undirected")  # direction is a required keyword
    metrics.add("fine", lambda ctx: {}, direction="up", needs="swap", description="d")
    assert (metrics.direction("fine"), metrics.needs("fine"), metrics.details("fine")) == (
        "up", ("swap",), "higher is better; scores the swaps (and their controls); needs a model that can swap")
    assert metrics.scores("fine") == "swaps" and metrics.group("fine") is None  # the output follows what it needs


def test_a_metric_declares_the_output_it_scores_and_a_known_group():
    metrics = MetricRegistry("metric")
    metrics.add("own", lambda ctx: {}, direction="up", needs=("swap", "encode"), scores="swaps", group="texture",
                controls=("code_midpoint",))
    assert (metrics.scores("own"), metrics.group("own"), metrics.controls("own")) == ("swaps", "texture", ("code_midpoint",))
    assert metrics.in_group("texture") == ["own"] and metrics.details("own").startswith("higher is better; group texture")
    with pytest.raises(ValueError, match="scores must name the output it judges .swaps, reconstructions, samples."):
        metrics.add("odd", lambda ctx: {}, direction="up", scores="pixels")
    with pytest.raises(ValueError, match="unknown group 'realsim'; groups are reconstruction, realism"):
        metrics.add("typo", lambda ctx: {}, direction="up", needs="swap", group="realsim")


def test_components_that_share_a_settings_section_must_share_its_class():
    from pydantic import BaseModel

    class A(BaseModel):
        x: int = 1

    class B(BaseModel):
        x: int = 1

    reg = Registry("widget")
    try:
        reg.add("one", int, settings=A, section="widget_test_section")
        reg.add("two", float, settings=A, section="widget_test_section")  # a second reader of the same settings
        assert SECTIONS["widget_test_section"].owners == ["widget 'one'", "widget 'two'"]
        with pytest.raises(ValueError, match="already declared by widget 'one', widget 'two'"):
            reg.add("three", str, settings=B, section="widget_test_section")
        with pytest.raises(ValueError, match="must be a pydantic model class"):
            reg.add("four", str, settings=dict)
    finally:
        reg.remove("one")
        reg.remove("two")
    assert "widget_test_section" not in SECTIONS


def test_project_default_methods_are_those_registered_as_defaults():
    from swapbench.inversion import default_methods
    from swapbench.registry import INVERSIONS

    assert default_methods() == ["sae", "sg2_encoder", "sg2_w", "sg2_wplus"]  # sg2_wplus_i2s, sg2_encoder_opt: opt-in

    class ToyInversion:
        needs = "toy_family"

    INVERSIONS.register("toy_default", default=True, description="toy")(ToyInversion)
    try:
        assert "toy_default" in default_methods()
    finally:
        INVERSIONS.remove("toy_default")
    assert "toy_default" not in default_methods()


def test_every_trainer_family_has_a_model_entry_whose_checkpoint_key_is_one_of_its_networks(tiny):
    """Evaluation builds a family's scored network from the ``model`` registry, training from ``trainer``: the
    two must agree on the name of the scored network in a checkpoint."""
    from swapbench.registry import MODELS, TRAINERS
    from swapbench.training.trainer import build_trainer

    assert set(TRAINERS.names()) <= set(MODELS.names())
    trainer = build_trainer(tiny)
    key = MODELS.checkpoint_key(tiny.model.family)
    assert key in trainer.networks() and trainer.model is trainer.networks()[key]
    built = MODELS.get(tiny.model.family)(tiny)
    assert built.state_dict().keys() == trainer.model.state_dict().keys()


def test_the_loss_section_is_declared_by_the_trainers_that_read_it():
    from swapbench.recipe import read_by

    assert {"trainer 'swap_ae'", "trainer 'stylegan2'", "trainer 'sg2_encoder'"} <= set(read_by("loss.r1").split(", "))


def test_a_registry_imports_every_module_of_its_package(tmp_path, monkeypatch):
    """No hand list of built-in modules: a module dropped into the registry's package registers by being there,
    subpackages included."""
    package = tmp_path / "widgets_pkg"
    (package / "more").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "more" / "__init__.py").write_text("")
    body = "from swapbench.registry import ALL_REGISTRIES\nALL_REGISTRIES['widget_test'].add({!r}, object())\n"
    (package / "round.py").write_text(body.format("round"))
    (package / "more" / "square.py").write_text(body.format("square"))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget_test", ("widgets_pkg",))
    monkeypatch.setitem(ALL_REGISTRIES, "widget_test", reg)
    assert reg.names() == ["round", "square"]


def test_the_speed_reference_of_the_inversion_table_is_a_flag_on_its_registration():
    from swapbench.inversion import speed_reference
    from swapbench.registry import INVERSIONS

    flagged = [n for n in INVERSIONS.names() if INVERSIONS.entry(n).info.get("speed_reference")]
    assert flagged == ["sae"] and speed_reference() == "sae"
