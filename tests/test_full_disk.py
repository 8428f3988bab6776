"""A full disk or a failing write is one line, and the file that was there stays whole (issue 36):
an OSError(ENOSPC) injected at each writer, and `leaderboard --out /dev/full`."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import invoke_cli as invoke
from PIL import Image

from swapbench.errors import UserError


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _partial_then_full(path, *args, **kwargs):  # what a filling disk does: some bytes, then the error
    Path(path).write_bytes(b"\0" * 10)
    _full()


def _write_checkpoint(folder: Path, monkeypatch, value: float):
    from swapbench import checkpoint

    return checkpoint.save_checkpoint(folder / "last.safetensors", {"w": torch.full((3,), value)}, {"step": int(value)})


def _fail_checkpoint(folder: Path, monkeypatch):
    from safetensors import SafetensorError

    from swapbench import checkpoint

    def full(tensors, path, metadata=None):
        Path(path).write_bytes(b"\0" * 10)
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" })")

    monkeypatch.setattr(checkpoint, "save_file", full)
    _write_checkpoint(folder, monkeypatch, 2.0)


def _check_checkpoint(folder: Path) -> None:
    from swapbench.checkpoint import load_checkpoint

    state, meta = load_checkpoint(folder / "last.safetensors")
    assert meta["step"] == 1 and torch.equal(state["w"], torch.full((3,), 1.0))


def _write_cache(folder, monkeypatch, value):
    from swapbench.cache import save_cached

    save_cached(folder / "stats.safetensors", {"mu": torch.full((2,), value)})


def _fail_cache(folder, monkeypatch):
    from swapbench import cache

    monkeypatch.setattr(cache, "save_file", lambda tensors, path, metadata=None: _partial_then_full(path))
    _write_cache(folder, monkeypatch, 2.0)


def _check_cache(folder):
    from swapbench.cache import load_cached

    assert torch.equal(load_cached(folder / "stats.safetensors")["mu"], torch.full((2,), 1.0))


def _fail_text(write):
    def fail(folder, monkeypatch):
        monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: _partial_then_full(self))
        write(folder, monkeypatch, 2.0)
    return fail


def _write_pairs(folder, monkeypatch, value):
    from swapbench.data.pairs import save_pairs

    save_pairs(folder / "pairs.json", {"v": value})


def _write_provenance(folder, monkeypatch, value):
    from swapbench.experiments.figures import write_provenance

    write_provenance(folder / "figure.png", {"v": value})


def _json_is(name):
    def check(folder):
        assert json.loads((folder / name).read_text()) == {"v": 1.0}
    return check


def _write_sheet(folder, monkeypatch, value):
    from swapbench.editing.sheets import write_sheet

    columns = [torch.full((2, 3, 8, 8), value / 2)]
    write_sheet(folder / "sheet.png", columns, ["a"], {"v": value}, cell=8)


def _fail_sheet(folder, monkeypatch):
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: _partial_then_full(fp))
    _write_sheet(folder, monkeypatch, 2.0)


def _check_sheet(folder):
    assert Image.open(folder / "sheet.png").size[0] > 0
    assert json.loads((folder / "sheet.json").read_text()) == {"v": 1.0}


WRITERS = {
    "stats cache": (_write_cache, _fail_cache, _check_cache),
    "pairs": (_write_pairs, _fail_text(_write_pairs), _json_is("pairs.json")),
    "figure provenance": (_write_provenance, _fail_text(_write_provenance), _json_is("figure.json")),
    "edit sheet": (_write_sheet, _fail_sheet, _check_sheet),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_is_one_line_and_the_previous_file_stays_whole(writer, tmp_path, monkeypatch):
    write, fail, check = WRITERS[writer]
    write(tmp_path, monkeypatch, 1.0)
    before = sorted(p.name for p in tmp_path.iterdir())
    with monkeypatch.context() as m:
        with pytest.raises(UserError) as raised:
            fail(tmp_path, m)
    message = str(raised.value)
    assert "\n" not in message and "No space left on device" in message and "free some space" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left behind
    check(tmp_path)


def test_safetensors_full_disk_error_is_an_oserror_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    """safetensors' own SafetensorError becomes OSError(ENOSPC), which the trainer reports in one line
    naming the checkpoint still whole (swapbench/training/state.py)."""
    _write_checkpoint(tmp_path, monkeypatch, 1.0)
    before = sorted(p.name for p in tmp_path.iterdir())
    with monkeypatch.context() as m:
        with pytest.raises(OSError) as raised:
            _fail_checkpoint(tmp_path, m)
    assert raised.value.errno == errno.ENOSPC and "No space left on device" in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # temporary files removed
    _check_checkpoint(tmp_path)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_leaderboard_out_dev_full_is_one_line(tmp_path, monkeypatch):
    from swapbench.experiments import leaderboard

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(leaderboard, "load_runs", lambda *args, **kwargs: None)
    monkeypatch.setattr(leaderboard, "build_tables", lambda *args, **kwargs: None)
    monkeypatch.setattr(leaderboard, "render", lambda *args, **kwargs: "| a |\n" * 1000)
    code, out, err = invoke(["leaderboard", "--out", "/dev/full"])
    assert code == 2, (out, err)
    assert err.strip().splitlines() == [err.strip()] and err.startswith("error: cannot write /dev/full: No space"), err
    assert Path("/dev/full").is_char_device()  # written to, never replaced


def test_a_full_disk_during_training_is_one_line_and_the_last_checkpoint_resumes(tiny_yaml, tmp_path, monkeypatch):
    """The probe's 58-line SafetensorError: now one line; the checkpoint before stays whole."""
    from safetensors import SafetensorError

    from swapbench import checkpoint

    real, calls = checkpoint.save_file, []

    def fills_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) > 1:
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
        real(tensors, path, metadata=metadata)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint, "save_file", fills_up)
    code, out, err = invoke(["train", str(tiny_yaml), "--no-progress"])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the checkpoint ") and "No space left" in lines[0], err
    assert "(step 1) is intact" in lines[0], err
    (last,) = Path("checkpoints").glob("*/last.safetensors")
    state, meta = checkpoint.load_checkpoint(last)  # hash checked: whole
    assert meta["step"] == 1
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]


def test_a_replaced_file_keeps_the_permissions_a_plain_write_gives(tmp_path):
    from swapbench.outputs import replace_text

    plain = tmp_path / "plain.txt"
    plain.write_text("a")
    new = replace_text(tmp_path / "new.txt", "a")
    assert new.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    os.chmod(new, 0o640)
    replace_text(new, "b")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_text() == "b"
