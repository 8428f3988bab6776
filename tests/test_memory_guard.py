"""A recipe that cannot fit this machine's memory is refused, from its shapes, before any work starts
and before any MLflow run exists (issue 36): swapbench/training/memory.py."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import TINY
from conftest import invoke_cli as invoke

from swapbench.recipe import recipe_from_dict
from swapbench.training import memory


def _refused(tmp_path, monkeypatch, *overrides: str) -> str:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = invoke(["run", "tiny.yaml", "--no-progress", *[a for o in overrides for a in ("--set", o)]])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlflow.db, no checkpoints: no run created
    return lines[0]


@pytest.mark.parametrize("override, part", [
    ("train.batch_size=100000000", "a training step"),
    ("data.test_images=100000000", "scoring"),
])
def test_a_recipe_that_cannot_fit_is_refused_before_any_run(override, part, tmp_path, monkeypatch):
    line = _refused(tmp_path, monkeypatch, override)
    assert f"{part} needs about" in line and "GiB free" in line, line


def test_networks_too_large_to_build_are_refused_in_one_line(tmp_path, monkeypatch):
    line = _refused(tmp_path, monkeypatch, "model.channels=65536", "model.max_channels=65536")
    assert "too large" in line or "needs about" in line, line


def test_the_refusal_compares_with_the_free_memory(tiny, monkeypatch):
    """The same recipe passes with its estimate free and is refused with less: the check reads the number."""
    need = max(e.bytes for e in memory.check_fits(tiny, torch.device("cpu"), baseline=0))
    monkeypatch.setattr(memory, "available_memory", lambda device: need - 1)
    with pytest.raises(memory.UserError, match="needs about"):
        memory.check_fits(tiny, torch.device("cpu"), baseline=0)
    monkeypatch.setattr(memory, "available_memory", lambda device: need)
    assert memory.check_fits(tiny, torch.device("cpu"), baseline=0)


def test_the_estimate_grows_with_the_batch_and_the_widths():
    base = recipe_from_dict(TINY)
    step = memory.training_estimate(base).bytes
    bigger_batch = recipe_from_dict({**TINY, "train": {**TINY["train"], "batch_size": 64}})
    wider = recipe_from_dict({**TINY, "model": {**TINY["model"], "channels": 16, "max_channels": 64}})
    assert memory.training_estimate(bigger_batch).bytes > step
    assert memory.training_estimate(wider).bytes > step
    assert memory.available_memory(torch.device("cpu")) > 0
