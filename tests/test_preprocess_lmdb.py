"""data.preprocess (the authors' modes) on the folder and LMDB datasets, and the LMDB reader's errors."""

from __future__ import annotations

import io
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from swapbench.data import build_dataset
from swapbench.data.preprocess import preprocess, scaled_size
from swapbench.errors import UserError
from swapbench.recipe import load_recipe


def coordinate_photo(width: int, height: int) -> np.ndarray:
    """R encodes x (0..255 across the width), G encodes y, B is constant."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 128)], axis=-1).round().astype(np.uint8)


def test_scaling_modes_give_the_authors_sizes():
    assert scaled_size(400, 300, "scale_shortside_and_crop", 64, 64) == (85, 64)
    assert scaled_size(300, 400, "scale_shortside", 64, 64) == (64, 85)
    assert scaled_size(400, 300, "scale_width_and_crop", 64, 32) == (64, 48)
    assert scaled_size(64, 40, "scale_width_and_crop", 64, 32) == (64, 40)  # already load_size wide and tall enough
    assert scaled_size(400, 300, "resize_and_crop", 96, 64) == (96, 96)
    assert scaled_size(400, 300, "crop", 96, 64) == (400, 300)


def test_scale_shortside_and_crop_keeps_the_whole_short_side_and_a_random_window():
    photo = coordinate_photo(400, 200)  # short side 200 -> 64, long side 400 -> 128
    lefts, flips = set(), 0
    for i in range(40):
        u = torch.rand(3, generator=torch.Generator().manual_seed(i)).tolist()
        img = preprocess(photo, "scale_shortside_and_crop", 64, 64, train=True, hflip=True, uniforms=u)
        assert img.shape == (3, 64, 64) and img.min() >= -1 and img.max() <= 1
        g = (img[1] + 1) * 127.5
        assert g[0].mean() < 6 and g[-1].mean() > 249  # the full height: the short side is not cut
        r = (img[0] + 1) * 127.5
        flipped = r[:, 0].mean() > r[:, -1].mean()
        flips += flipped
        span = abs(float(r[:, -1].mean() - r[:, 0].mean()))
        assert 120 < span < 135  # a 64 px window of the 128 px wide scaled photo: half of the 0..255 ramp
        lefts.add(round(float(min(r[:, 0].mean(), r[:, -1].mean()))))
    assert len(lefts) > 10 and 8 < flips < 32  # random positions along the long side, flips about half


def test_test_split_crops_the_centre_unflipped_and_resize_squashes():
    photo = coordinate_photo(400, 200)
    img = preprocess(photo, "scale_shortside_and_crop", 64, 64, train=False, hflip=True, uniforms=[0.0, 0.0, 0.0])
    r = (img[0] + 1) * 127.5
    assert abs(float(r.mean()) - 127.5) < 3 and r[:, 0].mean() < r[:, -1].mean()
    squashed = preprocess(photo, "resize", 64, 64, train=False, hflip=False, uniforms=[0, 0, 0])
    r = (squashed[0] + 1) * 127.5
    assert r[:, 0].mean() < 4 and r[:, -1].mean() > 251  # the whole width in 64 px
    centred = preprocess(photo, "scale_shortside_and_centercrop", 64, 64, train=True, hflip=False,
                         uniforms=[0.9, 0.9, 0])
    r = (centred[0] + 1) * 127.5
    assert abs(float(r.mean()) - 127.5) < 3  # the centre of the long side whatever the uniforms say
    with pytest.raises(UserError, match="after data.preprocess=scale_shortside, not the 64x64"):
        preprocess(photo, "scale_shortside", 64, 64, train=True, hflip=False, uniforms=[0, 0, 0], name="x")
    with pytest.raises(UserError, match="smaller than the 64 px crop"):
        preprocess(coordinate_photo(50, 40), "crop", 64, 64, train=True, hflip=False, uniforms=[0, 0, 0])


def test_recipe_checks_load_size_against_the_mode(tiny_yaml):
    with pytest.raises(UserError, match="data.load_size=8 is smaller than data.resolution=16"):
        load_recipe(tiny_yaml, ["data.preprocess=scale_shortside_and_crop", "data.load_size=8"])
    with pytest.raises(UserError, match="gives images of data.load_size=32 px, so it must equal"):
        load_recipe(tiny_yaml, ["data.preprocess=resize", "data.load_size=32"])
    with pytest.raises(UserError, match="dataset 'photos' makes its own crops"):
        build_dataset(load_recipe(tiny_yaml, ["data.preprocess=resize_and_crop"]), "train")


def write_folder(root: Path, n: int = 6) -> Path:
    root.mkdir()
    for i in range(n):
        Image.fromarray(coordinate_photo(48 + 8 * i, 32)).save(root / f"{i}.png")
    return root


def test_folder_dataset_uses_the_preprocess_mode(tiny_yaml, tmp_path):
    root = write_folder(tmp_path / "imgs")
    r = load_recipe(tiny_yaml, ["data.dataset=folder", f"data.root={root}", "data.preprocess=scale_shortside_and_crop",
                                "data.load_size=24", "data.test_fraction=0.34"])
    train, test = build_dataset(r, "train"), build_dataset(r, "test")
    item = train[0]
    assert item.shape == (3, 16, 16) and torch.equal(item, build_dataset(r, "train")[0])  # deterministic per index
    g = (item[1] + 1) * 127.5
    span = float(g[-1].mean() - g[0].mean())
    assert 150 < span < 180  # the 32 px short side became 24 px, of which the crop keeps 16 rows: 15/23 of the ramp
    assert test[0].shape == (3, 16, 16) and torch.equal(test[0], test[0])


def write_lmdb(path: Path, images: dict[bytes, bytes]) -> Path:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, value in images.items():
            txn.put(key, value)
    env.close()
    return path


def encoded(array: np.ndarray, fmt: str = "WEBP") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def test_lmdb_dataset_reads_lsun_style_entries(tiny_yaml, tmp_path):
    photos = {f"{i:040x}".encode(): coordinate_photo(40 + 4 * i, 24) for i in range(8)}
    values = {k: encoded(v, "WEBP" if i % 2 else "PNG") for i, (k, v) in enumerate(photos.items())}
    db = write_lmdb(tmp_path / "church_lmdb", values)
    r = load_recipe(tiny_yaml, ["data.dataset=lmdb", f"data.root={db}", "data.preprocess=scale_shortside_and_crop",
                                "data.test_fraction=0.25"])
    train, test = build_dataset(r, "train"), build_dataset(r, "test")
    assert len(test.keys) == 2 and len(train.keys) == 6 and not set(test.keys) & set(train.keys)
    item = train[3]
    assert item.shape == (3, 16, 16) and torch.equal(item, train[3])
    # the test split: the centred square of the scaled entry, exactly what preprocess gives
    key = test.keys[0]
    expected = preprocess(photos[key], "scale_shortside_and_crop", 16, 16, train=False, hflip=False, uniforms=[0, 0, 0])
    assert torch.equal(test[0], expected)
    manifest = train.manifest()
    assert manifest["dataset"] == "lmdb" and manifest["entries"] == 8 and len(manifest["keys_sha256"]) == 64
    # the data.mdb file itself works as data.root too
    by_file = load_recipe(tiny_yaml, ["data.dataset=lmdb", f"data.root={db / 'data.mdb'}", "data.test_fraction=0.25"])
    assert build_dataset(by_file, "train").keys == train.keys


def test_lmdb_dataset_reads_in_dataloader_workers(tiny_yaml, tmp_path):
    """The parent opens the database (the first entry is decoded at build time); forked workers must open
    their own handle (py-lmdb refused the inherited one: 'already open in this process')."""
    photo = coordinate_photo(40, 30).astype(np.uint8)
    db = write_lmdb(tmp_path / "db", {f"{i:03d}".encode(): encoded(np.roll(photo, i, axis=1), "PNG") for i in range(8)})
    r = load_recipe(tiny_yaml, ["data.dataset=lmdb", f"data.root={db}", "data.test_fraction=0.25"])
    ds = build_dataset(r, "train")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batches = [b for _, b in zip(range(3), loader)]
    assert [b.shape[0] for b in batches] == [3, 3, 3]
    assert torch.equal(batches[0][0], ds[0])  # a worker's item equals the parent's


def test_lmdb_errors_are_one_line(tiny_yaml, tmp_path):
    def error(root, *extra):
        with pytest.raises(UserError) as exc:
            root_setting = [f"data.root={root}"] if root else []
            build_dataset(load_recipe(tiny_yaml, ["data.dataset=lmdb", *root_setting, *extra]), "train")
        assert "\n" not in str(exc.value)
        return str(exc.value)

    assert "needs data.root" in error(None)
    assert "does not exist" in error(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    assert "is not a readable LMDB database" in error(tmp_path / "empty_dir")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"\x00 not lmdb " * 1000)
    assert "is not a readable LMDB database" in error(tmp_path / "junk")
    assert "has no entries" in error(write_lmdb(tmp_path / "empty_db", {}))
    corrupt = write_lmdb(tmp_path / "corrupt_db", {b"a": b"not an image", b"b": b"nor this", b"c": b"x"})
    assert "is not an image PIL can read" in error(corrupt)
    good = encoded(coordinate_photo(32, 32), "PNG")
    mixed = write_lmdb(tmp_path / "mixed_db", {b"a": good, b"b": good, b"c": b"broken", b"d": good, b"e": good})
    recipe = load_recipe(tiny_yaml, ["data.dataset=lmdb", f"data.root={mixed}", "data.test_fraction=0.4"])
    split = next(s for s in ("train", "test") if b"c" in build_dataset(recipe, s).keys)
    ds = build_dataset(recipe, split)
    bad = ds.keys.index(b"c")
    with pytest.raises(UserError, match="entry b'c' of LMDB database .* does not decode"):
        ds[bad]
    skipping = build_dataset(load_recipe(tiny_yaml, ["data.dataset=lmdb", f"data.root={mixed}",
                                                     "data.test_fraction=0.4", "data.skip_corrupt=true"]), split)
    assert skipping[bad].shape == (3, 16, 16)
