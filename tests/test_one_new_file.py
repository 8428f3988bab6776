"""A new score of the swaps and a new inversion method each come in one new file: a module that registers
the component, with no edit anywhere else in swapbench. The score is then scored on every swap control on the
control's own swaps (nothing of the model's swaps is reused), and the method is a row of `swapbench project`'s
table. (The encoder with its own setting: tests/test_component_settings.py.)"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from functools import cached_property

import pytest
import torch
from conftest import TINY, invoke_cli
from test_swap_scores import CPU, Spy, recipe

from swapbench.evaluation.evaluate import DerivedValue, EvalContext, build_context, controls_for, evaluate
from swapbench.registry import INVERSIONS, METRICS

TOY_SCORE = '''
"""A plugin module: one score of the swaps. It reads a value the context derives from the swaps (the swaps'
codes) and keeps a value of its own on the context, as a score computed from a costly intermediate does."""
from swapbench.registry import METRICS


@METRICS.register("toy_texture_gap", direction="down", needs=("swap", "encode"), scores="swaps", group="texture",
                  description="Mean |t(E(swap_i)) - t(E(B_i))| per pair: 0 = B's texture code.")
def toy_texture_gap(ctx):
    if "toy_gaps" not in ctx.__dict__:  # once per context, for any further score that reads it
        b = ctx.texture_indices
        ctx.__dict__["toy_gaps"] = (ctx.swap_codes[1] - ctx.image_codes[1][b]).abs().mean(1)
    return ctx.mean_score("toy_texture_gap", ctx.__dict__["toy_gaps"])
'''

TOY_INVERSION = '''
"""A plugin module: one inversion method, the Swapping Autoencoder's encoder run on a blurred image."""
import torch.nn.functional as F

from swapbench.inversion import Inversion, SwapAutoencoderEncoding, timed
from swapbench.registry import INVERSIONS


@INVERSIONS.register("toy_blurred", description="The SAE's encoder on the image blurred by a 3x3 box filter.")
class BlurredEncoding(SwapAutoencoderEncoding):
    needs = "swap_ae"

    def invert(self, images):
        x = images.to(self.device)
        codes, seconds = timed(lambda: self.model.encode(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)), self.device)
        return Inversion(codes, self.model.decode(*codes).float().cpu(), seconds)
'''


def _plugin(tmp_path, monkeypatch, name: str, source: str):
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


@pytest.fixture
def toy_score(tmp_path, monkeypatch):
    yield _plugin(tmp_path, monkeypatch, "toy_score_plugin", TOY_SCORE)
    METRICS.remove("toy_texture_gap")
    sys.modules.pop("toy_score_plugin", None)


@pytest.fixture
def toy_inversion(tmp_path, monkeypatch):
    yield _plugin(tmp_path, monkeypatch, "toy_inversion_plugin", TOY_INVERSION)
    INVERSIONS.remove("toy_blurred")
    sys.modules.pop("toy_inversion_plugin", None)


def test_a_new_score_of_the_swaps_gets_each_controls_own_values(toy_score):
    model = Spy()
    ctx = build_context(model, recipe(), CPU)
    scores = evaluate(ctx, ["toy_texture_gap"])
    controls = controls_for(ctx)
    assert {"copy_a", "copy_b", "recon_a", "blend"} <= set(controls)
    b = ctx.texture_indices
    texture_of_b = model.encode(ctx.images[b])[1]
    expected = {}
    for control in controls:
        outputs = ctx.control(control).swaps
        expected[control] = float((model.encode(outputs)[1] - texture_of_b).abs().mean(1).mean())
        assert scores[f"control/{control}/toy_texture_gap"] == pytest.approx(expected[control], rel=1e-5, abs=1e-6)
        assert f"control/{control}/toy_texture_gap_ci_low" in scores
    # computed on the controls' own swaps: copying B gives B's code exactly, copying A does not, and none of the
    # controls repeats the model's value
    assert expected["copy_b"] == 0 and expected["copy_a"] > 0.05
    assert len({round(v, 6) for v in expected.values()}) == len(expected)
    assert all(abs(scores["toy_texture_gap"] - v) > 1e-4 for v in expected.values())
    assert "toy_texture_gap" in METRICS.in_group("texture") and METRICS.scores("toy_texture_gap") == "swaps"


def test_a_control_shares_no_value_derived_from_the_swaps():
    ctx = build_context(Spy(), recipe(), CPU)
    evaluate(ctx, ["swap_reencode_texture"])
    ctx.__dict__["a_score_cache"] = "the model's"  # what a score may keep on the context
    kept = set(ctx.__dict__)
    child = ctx.control("copy_a")
    assert "swap_codes" in kept and "image_codes" in kept
    assert "swap_codes" not in child.__dict__ and "a_score_cache" not in child.__dict__  # computed afresh
    assert child.__dict__["image_codes"] is ctx.__dict__["image_codes"]  # shared: no swap in it
    assert torch.equal(child.swap_codes[1], ctx.image_codes[1][ctx.structure_indices])


def test_every_context_value_that_reads_the_swaps_is_marked_as_derived_from_them():
    """The one list of what derives from the swaps is the ``@derived("swaps")`` marks on EvalContext: a cached
    value that reads the swaps, or a value derived from them, without the mark would leak the model's swaps into
    the controls."""
    members = vars(EvalContext)
    from_swaps = {k for k, v in members.items() if isinstance(v, DerivedValue) and v.output == "swaps"}
    assert {"swaps", "swap_features", "swap_codes", "swap_grams", "swap_selfsim"} <= from_swaps
    pattern = re.compile(r"self\.(" + "|".join(sorted(from_swaps)) + r")\b")
    for name, value in members.items():
        if isinstance(value, cached_property) and name not in from_swaps:
            assert not pattern.search(inspect.getsource(value.func)), f"EvalContext.{name} reads the swaps"


def test_a_new_inversion_method_is_a_row_of_the_project_table(toy_inversion, tmp_path, monkeypatch):
    from test_weights import cached_or_skip

    from swapbench.recipe import recipe_from_dict
    from swapbench.registry import TRAINERS

    for network in ("inception", "lpips_alex", "lpips_vgg"):
        cached_or_skip(network)
    tiny = recipe_from_dict({**TINY, "data": {**TINY["data"], "resolution": 32}})
    TRAINERS.get("swap_ae")(tiny).save(tmp_path / "sae.safetensors")  # an untrained swap_ae checkpoint
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, stdout, stderr = invoke_cli(["project", "--methods", "sae,toy_blurred", "--n", "4", "--no-progress",
                                       "--run", str(tmp_path / "sae.safetensors"), "--device", "cpu"])
    assert code == 0, stderr
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    header = next(line for line in stdout.splitlines() if line.startswith("| method"))
    row = [cell.strip() for cell in rows["toy_blurred"].split("|")]
    columns = [cell.strip() for cell in header.split("|")]
    cell = dict(zip(columns, row))
    assert float(cell["s/image (median)"].split()[0]) > 0 and cell["sae is faster by"].endswith("x")
    sae = dict(zip(columns, [c.strip() for c in rows["sae"].split("|")]))
    assert float(cell["recon_psnr"].split()[0]) > 0 and cell["recon_psnr"] != sae["recon_psnr"]  # its own images
    assert "control: recon_a (toy_blurred)" in rows
