"""The 'folder' dataset: formats, conversions, bad input, the split, manifests and determinism.

Every image is written by the test itself into tmp_path, tiny, so the file runs in seconds.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY
from PIL import Image

from swapbench.data.folder import ImageFolder, split_files
from swapbench.data.image_io import load_rgb
from swapbench.errors import UserError

R = 16


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def noise(h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, im: Image.Image | np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    im.save(path, **kw)
    return path


def good_folder(root: Path, n: int = 6) -> list[str]:
    names = [f"img{i:02d}.png" for i in range(n)]
    for i, name in enumerate(names):
        save(root / name, noise(seed=i))
    return names


def splits(root: Path, **kw) -> dict[str, ImageFolder]:
    kw = {"resolution": R, "root": None if root is None else str(root), "test_fraction": 0.5, **kw}
    return {s: ImageFolder(split=s, **kw) for s in ("train", "test")}


def center_item(root: Path, name: str, **kw) -> torch.Tensor:
    """The image ``name`` as its split serves it with centred crops."""
    for ds in splits(root, crop="center", **kw).values():
        if name in ds.files:
            return ds[ds.files.index(name)]
    raise AssertionError(f"{name} is in neither split")


def png16_rgb(path: Path, rgb: tuple[int, int, int], size: int = 10) -> Path:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one), filled with one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + struct.pack(">3H", *rgb) * size
    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b""))
    path.write_bytes(raw)
    return path


def user_error(**kw) -> str:
    with pytest.raises(UserError) as info:
        splits(**kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


# ---------------------------------------------------------------------------------------------
# formats and conversions
# ---------------------------------------------------------------------------------------------

def test_every_format_loads_and_hidden_files_are_ignored(tmp_path: Path):
    files = {
        "a.png": {}, "b.jpg": {}, "c.jpeg": {"format": "JPEG"}, "d.webp": {}, "e.bmp": {},
        "F.PNG": {"format": "PNG"}, "sub/deep/g.png": {}, "h.JPG": {"format": "JPEG"},
    }
    for i, (name, kw) in enumerate(files.items()):
        save(tmp_path / name, noise(seed=i), **kw)
    save(tmp_path / ".hidden.png", noise())
    save(tmp_path / ".cache" / "x.png", noise())
    (tmp_path / "notes.txt").write_text("not an image")
    ds = splits(tmp_path, test_fraction=0.3)
    assert sorted(ds["train"].files + ds["test"].files) == sorted(files)
    assert ds["train"].files == sorted(ds["train"].files)  # POSIX order within a split
    for d in ds.values():
        for i in range(len(d.files)):
            x = d[i]
            assert x.shape == (3, R, R) and x.dtype == torch.float32
            assert x.min() >= -1 and x.max() <= 1


def test_alpha_is_composited_over_white(tmp_path: Path):
    good_folder(tmp_path, 4)
    save(tmp_path / "clear.png", Image.new("RGBA", (12, 12), (255, 0, 0, 0)))
    save(tmp_path / "half.png", Image.new("LA", (12, 12), (0, 128)))
    assert torch.allclose(center_item(tmp_path, "clear.png"), torch.ones(3, R, R))
    half = center_item(tmp_path, "half.png")
    assert torch.allclose(half, torch.full_like(half, half[0, 0, 0].item()))
    assert abs((half[0, 0, 0].item() + 1) * 127.5 - 127) <= 1  # 0 * a + 255 * (1 - a), a = 128/255


def test_palette_and_palette_transparency(tmp_path: Path):
    good_folder(tmp_path, 4)
    pal = Image.new("P", (12, 12), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    save(tmp_path / "blue.png", pal)
    save(tmp_path / "clearpal.png", pal, transparency=1)
    blue = center_item(tmp_path, "blue.png")
    assert torch.allclose(blue[2], torch.ones(R, R)) and torch.allclose(blue[:2], -torch.ones(2, R, R))
    assert torch.allclose(center_item(tmp_path, "clearpal.png"), torch.ones(3, R, R))


def test_grayscale_is_replicated_to_rgb(tmp_path: Path):
    good_folder(tmp_path, 4)
    save(tmp_path / "gray.png", np.random.default_rng(1).integers(0, 256, (20, 20), dtype=np.uint8))
    x = center_item(tmp_path, "gray.png")
    assert x.std() > 0.1
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path):
    good_folder(tmp_path, 4)
    for name, value in (("white16.png", 65535), ("black16.png", 0), ("mid16.png", 32768)):
        im = Image.fromarray(np.full((12, 12), value, dtype=np.uint16))
        assert im.mode == "I;16"
        save(tmp_path / name, im)
    assert Image.open(tmp_path / "white16.png").mode.startswith("I")
    assert torch.allclose(center_item(tmp_path, "white16.png"), torch.ones(3, R, R))
    assert torch.allclose(center_item(tmp_path, "black16.png"), -torch.ones(3, R, R))
    assert np.all(load_rgb(tmp_path / "mid16.png") == 128)
    # a 16-bit gray value of 1000 is dark (about 4/255), not clipped to white as a plain cast would do
    save(tmp_path / "dark16.png", Image.fromarray(np.full((12, 12), 1000, dtype=np.uint16)))
    assert np.all(load_rgb(tmp_path / "dark16.png") == 4)
    # 16-bit RGB: PIL reads it as 8-bit
    png16_rgb(tmp_path / "rgb16.png", (65535, 32768, 0))
    assert tuple(load_rgb(tmp_path / "rgb16.png")[0, 0]) == (255, 128, 0)


def test_cmyk_and_exif_orientation(tmp_path: Path):
    save(tmp_path / "cmyk.jpg", Image.new("CMYK", (12, 12), (0, 0, 0, 0)))
    arr = load_rgb(tmp_path / "cmyk.jpg")
    assert arr.shape == (12, 12, 3) and arr.min() >= 250
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    save(tmp_path / "rotated.jpg", noise(10, 30), exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg").shape == (30, 10, 3)


def test_small_images_upscale_and_tiny_ones_are_unusable(tmp_path: Path):
    good_folder(tmp_path, 4)
    save(tmp_path / "small.png", noise(9, 12))  # smaller than R: upscaled
    assert center_item(tmp_path, "small.png").shape == (3, R, R)
    save(tmp_path / "tiny.png", noise(4, 4))
    msg = user_error(root=tmp_path)
    assert str(tmp_path / "tiny.png") in msg and "too small" in msg and "data.skip_corrupt" in msg
    ds = splits(tmp_path, skip_corrupt=True)
    skipped = ds["train"].manifest()["skipped"] + ds["test"].manifest()["skipped"]
    assert [s["file"] for s in skipped] == ["tiny.png"] and skipped[0]["reason"].startswith("too small")


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_root_missing_or_not_a_folder(tmp_path: Path):
    assert "dataset 'folder' needs data.root" in user_error(root=None)
    missing = tmp_path / "nope"
    msg = user_error(root=missing)
    assert str(missing) in msg and "does not exist" in msg
    afile = save(tmp_path / "one.png", noise())
    msg = user_error(root=afile)
    assert str(afile) in msg and "not a folder" in msg


def test_folders_without_images(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = user_error(root=empty)
    assert str(empty) in msg and ".png" in msg and ".webp" in msg
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("hello")
    (texts / ".hidden.png").write_bytes(b"")
    msg = user_error(root=texts)
    assert str(texts) in msg and "no image files" in msg


def test_too_few_images_for_two_splits(tmp_path: Path):
    good_folder(tmp_path, 3)
    msg = user_error(root=tmp_path, test_fraction=0.1)
    assert str(tmp_path) in msg and "3 usable" in msg and "at least 2" in msg


def make_corrupt(root: Path) -> dict[str, str]:
    """Three unreadable files; returns name -> a word the reason should contain."""
    buf = save(root / "full.png", noise(32, 32, seed=9)).read_bytes()
    (root / "full.png").unlink()
    (root / "truncated.png").write_bytes(buf[: len(buf) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is not a png\n")
    return {"truncated.png": "truncated", "empty.jpg": "empty", "text.png": "not an image"}


@pytest.mark.parametrize("name", ["truncated.png", "empty.jpg", "text.png"])
def test_each_corrupt_file_is_a_user_error(tmp_path: Path, name: str):
    good_folder(tmp_path, 4)
    reasons = make_corrupt(tmp_path)
    for other in set(reasons) - {name}:
        (tmp_path / other).unlink()
    msg = user_error(root=tmp_path)
    assert msg.startswith("1 unreadable image file(s) under ")
    assert str(tmp_path / name) in msg and reasons[name] in msg.lower() and "data.skip_corrupt: true" in msg


def test_all_corrupt_files_are_counted_and_skippable(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    good = good_folder(tmp_path, 6)
    reasons = make_corrupt(tmp_path)
    msg = user_error(root=tmp_path)
    assert msg.startswith("3 unreadable image file(s)")
    with caplog.at_level(logging.WARNING, logger="swapbench.data.folder"):
        ds = splits(tmp_path, skip_corrupt=True)
    skipped = ds["train"].manifest()["skipped"] + ds["test"].manifest()["skipped"]
    assert sorted(s["file"] for s in skipped) == sorted(reasons)
    for s in skipped:
        assert reasons[s["file"]] in s["reason"].lower()
        assert "\n" not in s["reason"]
        assert sum(str(tmp_path / s["file"]) in r.getMessage() for r in caplog.records) == 1  # warned once
    assert sorted(ds["train"].files + ds["test"].files) == sorted(good)
    for d in ds.values():
        assert all(d[i].shape == (3, R, R) for i in range(len(d.files)))


def test_a_file_that_breaks_after_the_check_is_a_user_error(tmp_path: Path):
    good_folder(tmp_path, 4)
    ds = splits(tmp_path)["train"]
    (tmp_path / ds.files[0]).write_bytes(b"garbage")
    with pytest.raises(UserError, match="img0") as info:
        ds[0]
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# the split and manifests
# ---------------------------------------------------------------------------------------------

def test_split_is_fixed_disjoint_and_independent_of_seed(tmp_path: Path):
    names = good_folder(tmp_path, 10)
    a, b = splits(tmp_path, test_fraction=0.3, seed=0), splits(tmp_path, test_fraction=0.3, seed=7)
    assert a["train"].files == b["train"].files and a["test"].files == b["test"].files
    assert not set(a["train"].files) & set(a["test"].files)
    assert sorted(a["train"].files + a["test"].files) == names
    assert len(a["test"].files) == 3 and len(a["train"].files) == 7
    assert split_files(names, 0.3) == split_files(list(names), 0.3)
    assert len(split_files(names, 0.01)["test"]) == 1


def test_limit_keeps_the_first_files(tmp_path: Path):
    names = good_folder(tmp_path, 10)
    ds = splits(tmp_path, limit=6)
    assert sorted(ds["train"].files + ds["test"].files) == names[:6]
    assert ds["train"].manifest()["limit"] == 6


def test_manifest_round_trip(tmp_path: Path):
    root = tmp_path / "images"
    good_folder(root, 8)
    ds = splits(root)
    m = {s: d.manifest() for s, d in ds.items()}
    assert m["test"]["dataset"] == "folder" and m["test"]["root"] == str(root) and m["test"]["split"] == "test"
    assert m["test"]["test_fraction"] == 0.5 and m["test"]["limit"] is None and m["test"]["skipped"] == []
    json.dumps(m)
    # one split per file
    for s in ("train", "test"):
        path = tmp_path / f"{s}.json"
        path.write_text(json.dumps(m[s]))
        again = ImageFolder(split=s, resolution=R, root=str(root), manifest=str(path), test_fraction=0.2)
        assert again.files == m[s]["files"] and again.manifest()["test_fraction"] == 0.5
    # the two-split file a run writes
    both = tmp_path / "data_manifest.json"
    both.write_text(json.dumps(m))
    save(root / "aaa_new.png", noise())  # a file added later does not change a manifest's split
    for s in ("train", "test"):
        again = ImageFolder(split=s, resolution=R, root=str(root), manifest=str(both))
        assert again.files == m[s]["files"]
        assert torch.equal(again[0], ds[s][0])
    # a single-split file cannot rebuild the other split
    with pytest.raises(UserError, match="only the 'test' split"):
        ImageFolder(split="train", resolution=R, root=str(root), manifest=str(tmp_path / "test.json"))
    # a listed file that is gone
    gone = m["test"]["files"][0]
    (root / gone).unlink()
    with pytest.raises(UserError) as info:
        ImageFolder(split="test", resolution=R, root=str(root), manifest=str(both))
    assert str(root / gone) in str(info.value) and "\n" not in str(info.value)
    # a manifest path that does not exist
    with pytest.raises(UserError, match="nothere.json"):
        ImageFolder(split="test", resolution=R, root=str(root), manifest=str(tmp_path / "nothere.json"))


# ---------------------------------------------------------------------------------------------
# determinism and the registry
# ---------------------------------------------------------------------------------------------

def test_training_items_are_deterministic(tmp_path: Path):
    good_folder(tmp_path, 6)
    ds = splits(tmp_path, seed=3)["train"]
    fresh = splits(tmp_path, seed=3)["train"]
    other = splits(tmp_path, seed=4)["train"]
    n = len(ds.files)
    for i in range(n):
        assert torch.equal(ds[i], ds[i]) and torch.equal(ds[i], fresh[i])
    assert any(not torch.equal(ds[i], other[i]) for i in range(n))
    # a random training split repeats each file under new indices, with a new crop each time
    assert len(ds) == n * ds.repeats and ds.repeats > 1
    assert any(not torch.equal(ds[i], ds[i + n]) for i in range(n))
    test = splits(tmp_path, seed=3)["test"]
    assert torch.equal(test[0], splits(tmp_path, seed=4)["test"][0])  # test items ignore the seed


def test_center_crop_is_the_largest_centred_square(tmp_path: Path):
    good_folder(tmp_path, 4)
    arr = np.zeros((12, 24, 3), dtype=np.uint8)
    arr[:, 6:18] = 255  # only the centred 12x12 square is white
    save(tmp_path / "wide.png", arr)
    assert torch.allclose(center_item(tmp_path, "wide.png"), torch.ones(3, R, R))


def test_built_through_the_registry_from_a_recipe(tmp_path: Path):
    from swapbench.data import build_dataset, test_images
    from swapbench.recipe import load_recipe
    from swapbench.registry import DATASETS

    assert "folder" in DATASETS
    root = tmp_path / "imgs"
    good_folder(root, 8)
    recipe = {**TINY, "data": {**TINY["data"], "dataset": "folder", "root": str(root), "resolution": 16,
                               "test_fraction": 0.25, "crop": "random"}}
    path = tmp_path / "folder.yaml"
    path.write_text(yaml.safe_dump(recipe))
    r = load_recipe(path)
    train, test = build_dataset(r, "train"), build_dataset(r, "test")
    assert len(train.files) == 6 and len(test) == len(test.files) == 2
    assert train[0].shape == (3, 16, 16)
    assert test_images(r, test).shape == (2, 3, 16, 16)
