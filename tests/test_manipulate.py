"""Editing with a trained Swapping Autoencoder: each operation changes exactly the codes it says, and
the `swapbench edit` commands draw exactly those images from real image files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY, run_cli
from PIL import Image

from swapbench.editing import manipulate as M
from swapbench.errors import UserError
from swapbench.models.build import build_autoencoder
from swapbench.recipe import recipe_from_dict
from swapbench.visualize import to_uint8


@pytest.fixture(scope="module")
def model() -> M.SwappingAutoencoder:
    torch.manual_seed(0)
    return build_autoencoder(recipe_from_dict(TINY)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(6, 3, 16, 16) * 2 - 1


class DecodeSpy:
    """Records the codes every ``decode`` call receives (and still decodes them)."""

    def __init__(self, model, monkeypatch):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        real = model.decode

        def spy(structure, texture):
            self.calls.append((structure.clone(), texture.clone()))
            return real(structure, texture)

        monkeypatch.setattr(model, "decode", spy)


def test_swap_alpha_runs_from_the_reconstruction_to_the_swap(model, images):
    a, b = images[:3], images[3:]
    with torch.no_grad():
        assert torch.equal(M.swap_texture(model, a, b, 1.0), model.swap(a, b))
        assert torch.equal(M.swap_texture(model, a, b, 0.0), model.reconstruct(a))
        assert torch.equal(M.reconstruct(model, a), model.reconstruct(a))
        # one image on either side is used with every image of the other (encoded alone, so equal
        # up to batch-size rounding)
        assert torch.allclose(M.swap_texture(model, a, b[:1], 1.0), model.swap(a, b[:1].expand_as(a)), atol=1e-5)
        assert torch.allclose(M.swap_texture(model, a[:1], b, 1.0), model.swap(a[:1].expand_as(b), b), atol=1e-5)
    with pytest.raises(UserError, match="3 structure images against 2 texture images"):
        M.swap_texture(model, a, b[:2])
    with pytest.raises(UserError, match="no alpha given|non-finite"):
        M.swap_texture(model, a, b, float("nan"))
    with pytest.raises(UserError, match="no alphas given"):
        M.interpolate(model, a, b, [])


def test_editing_needs_a_model_in_eval_mode(images):
    training = build_autoencoder(recipe_from_dict(TINY)).train()
    with pytest.raises(UserError, match="training mode; call model.eval"):
        M.reconstruct(training, images[:2])


def test_swap_alpha_blends_the_texture_codes_linearly(model, images, monkeypatch):
    a, b = images[:2], images[2:4]
    spy = DecodeSpy(model, monkeypatch)
    M.swap_texture(model, a, b, 0.25)
    ca, cb = model.encode(a), model.encode(b)
    structure, texture = spy.calls[-1]
    assert torch.equal(structure, ca.structure)
    assert torch.allclose(texture, 0.75 * ca.texture + 0.25 * cb.texture, atol=1e-6)


@pytest.mark.parametrize("part", ["both", "structure", "texture"])
def test_interpolation_ends_where_each_part_says(model, images, part):
    a, b = images[:2], images[2:4]
    frames = M.interpolate(model, a, b, [0.0, 0.5, 1.0], part)
    assert frames.shape == (3, 2, 3, 16, 16)
    with torch.no_grad():
        end = {"both": model.reconstruct(b), "structure": model.swap(b, a), "texture": model.swap(a, b)}[part]
        assert torch.equal(frames[0], model.reconstruct(a))
        assert torch.equal(frames[2], end)
    assert not torch.equal(frames[1], frames[0]) and not torch.equal(frames[1], frames[2])
    with pytest.raises(UserError, match="part 'colour'"):
        M.interpolate(model, a, b, [0.5], "colour")


def test_region_edit_replaces_the_structure_code_inside_the_mask_only(model, images, monkeypatch):
    target, source = images[:2], images[2:4]
    with torch.no_grad():
        assert torch.equal(M.paste_structure(model, target, source, torch.zeros(1, 1, 16, 16)), model.reconstruct(target))
        assert torch.equal(M.paste_structure(model, target, source, torch.ones(1, 1, 16, 16)), model.swap(source, target))
    spy = DecodeSpy(model, monkeypatch)
    M.paste_structure(model, target, source, M.box_mask("0,0,0.5,1", 16))  # the left half
    structure, texture = spy.calls[-1]
    ct, cs = model.encode(target), model.encode(source)
    half = structure.shape[-1] // 2  # the 4x4 code grid: columns 0-1 from the source, 2-3 from the target
    assert torch.equal(structure[..., :half], cs.structure[..., :half])
    assert torch.equal(structure[..., half:], ct.structure[..., half:])
    assert torch.equal(texture, ct.texture)
    for bad in (torch.ones(1, 16, 16), torch.ones(3, 1, 16, 16), torch.ones(1, 1, 8, 8)):
        with pytest.raises(UserError, match=r"the mask must be \(1 or 2, 1, 16, 16\)"):
            M.paste_structure(model, target, source, bad)


def test_texture_pca_finds_orthonormal_directions_of_falling_spread(model):
    torch.manual_seed(2)
    many = torch.rand(40, 3, 16, 16) * 2 - 1
    pca = M.texture_pca(model, many, 4)
    assert pca.directions.shape == (4, 8) and pca.mean.shape == (8,)
    assert torch.allclose(pca.directions @ pca.directions.T, torch.eye(4), atol=1e-5)
    assert torch.all(pca.std[:-1] >= pca.std[1:])
    # the codes' spread along each direction is what ``std`` says, and no direction spreads more than the first
    codes = model.encode(many).texture.detach()
    along = (codes - pca.mean) @ pca.directions.T
    assert torch.allclose(along.std(0), pca.std, rtol=1e-4)
    random_dir = torch.nn.functional.normalize(torch.randn(8), dim=0)
    assert ((codes - pca.mean) @ random_dir).std() <= pca.std[0] + 1e-5
    assert torch.allclose(pca.direction(1), pca.directions[1] * pca.std[1])
    with pytest.raises(UserError, match="k must be between 1 and 8"):
        M.texture_pca(model, many, 9)
    with pytest.raises(UserError, match="k must be between 1 and 2"):
        M.texture_pca(model, many[:3], 3)


def test_texture_edits_add_the_direction_and_keep_the_structure(model, images, monkeypatch):
    x, with_attr, without_attr = images[:2], images[2:4], images[4:]
    direction = M.attribute_direction(model, with_attr, without_attr)
    expected = model.encode(with_attr).texture.mean(0) - model.encode(without_attr).texture.mean(0)
    assert torch.allclose(direction, expected.detach())
    spy = DecodeSpy(model, monkeypatch)
    edits = M.edit_texture(model, x, direction, [0.0, 2.0])
    assert edits.shape == (2, 2, 3, 16, 16)
    codes = model.encode(x)
    assert torch.equal(spy.calls[0][1], codes.texture)
    assert torch.allclose(spy.calls[1][1], codes.texture + 2 * direction, atol=1e-6)
    assert all(torch.equal(s, codes.structure) for s, _ in spy.calls)
    with pytest.raises(UserError, match="texture codes are"):
        M.edit_texture(model, x, torch.zeros(5), [1.0])


def test_domain_translation_gives_every_image_the_domains_mean_texture(model, images, monkeypatch):
    x, domain = images[:2], images[2:]
    spy = DecodeSpy(model, monkeypatch)
    M.translate_domain(model, x, domain)
    structure, texture = spy.calls[-1]
    mean = model.encode(domain).texture.mean(0)
    assert torch.allclose(texture, mean.expand(2, -1), atol=1e-6)
    assert torch.equal(structure, model.encode(x).structure)


def test_masks_and_image_files(tmp_path):
    mask = M.box_mask("0.25,0,1,0.5", 16)
    assert mask.shape == (1, 1, 16, 16) and mask.sum() == 12 * 8
    assert mask[0, 0, 0, 4] == 1 and mask[0, 0, 0, 3] == 0 and mask[0, 0, 8, 8] == 0
    for bad, why in [("0,0,1", "four numbers"), ("0.5,0,0.2,1", "left < right"), ("0,0,0.01,0.01", "covers no pixel")]:
        with pytest.raises(UserError, match=why):
            M.box_mask(bad, 16)
    # a wide file is centre-cropped to a square, then resized
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255  # the centred 20 x 20 square is all white
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert torch.allclose(M.load_image(tmp_path / "wide.png", 16), torch.ones(1, 3, 16, 16), atol=1e-5)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(UserError, match="no white area"):
        M.load_mask(tmp_path / "black.png", 16)
    # white marks the region; on a transparent layer only the opaque white strokes count
    painted = np.zeros((32, 32, 3), np.uint8)
    painted[:, :16] = 255
    Image.fromarray(painted).save(tmp_path / "left.png")
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[..., :3] = 255  # white everywhere, but transparent ...
    layer[:, :16, 3] = 255  # ... except the left half
    Image.fromarray(layer, "RGBA").save(tmp_path / "strokes.png")
    for name in ("left.png", "strokes.png"):  # read at the file's own size, so no resampling blurs the edge
        assert torch.allclose(M.load_mask(tmp_path / name, 32), M.box_mask("0,0,0.5,1", 32), atol=1e-5), name
    Image.fromarray(np.zeros((4, 40, 3), np.uint8)).save(tmp_path / "sliver.png")
    with pytest.raises(UserError, match="sliver.png is 40x4 px"):
        M.load_image(tmp_path / "sliver.png", 16)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="broken.png"):
        M.load_images([tmp_path / "wide.png", tmp_path / "broken.png"], 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no image files"):
        M.load_images([tmp_path / "empty"], 16)
    (tmp_path / "some").mkdir()
    for name in ("b.png", "a.png"):
        Image.fromarray(painted).save(tmp_path / "some" / name)
    assert M.image_files([tmp_path / "wide.png", tmp_path / "some"]) == [
        tmp_path / "wide.png", tmp_path / "some" / "a.png", tmp_path / "some" / "b.png"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step swap_ae run logged to a local MLflow store, and three real image files."""
    tmp = tmp_path_factory.mktemp("edit")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "eval": {**TINY["eval"], "metrics": ["recon_psnr"]}}))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    done = run_cli("train", "tiny.yaml", "--no-progress", cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split("run ")[1].split(":")[0]
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp / f"{name}.png")
    return tmp, env, run_id


def _tile(sheet: np.ndarray, row: int, col: int, cell: int = 16, pad: int = 4) -> np.ndarray:
    y, x = max(18, cell // 5) + pad + row * (cell + pad), pad + col * (cell + pad)
    return sheet[y : y + cell, x : x + cell]


def test_edit_cli_draws_exactly_the_operations_images(trained):
    from swapbench.models.build import load_autoencoder
    from swapbench.tracking import checkpoint_of

    tmp, env, run_id = trained
    done = run_cli("edit", "swap", "--run", run_id, "--structure", "a.png", "--structure", "b.png",
                   "--texture", "c.png", "--alpha", "0,1", "--cell", "16", "--out", "swap.png", cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp / "swap.json").read_text())
    assert record["operation"] == "swap" and record["run"] == run_id and record["alphas"] == [0.0, 1.0]
    assert record["commit"] and record["made_by_commit"] and record["resolution"] == 16

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    model = load_autoencoder(checkpoint_of(run_id))[0]
    a = M.load_images([tmp / "a.png", tmp / "b.png"], 16)
    c = M.load_image(tmp / "c.png", 16)
    sheet = np.asarray(Image.open(tmp / "swap.png").convert("RGB"))
    assert sheet.shape[1] == 4 + 4 * 20  # structure, texture, alpha 0, alpha 1
    with torch.no_grad():
        swapped, recon = model.swap(a, c.expand_as(a)), model.reconstruct(a)
    for row in range(2):
        assert np.array_equal(_tile(sheet, row, 0), to_uint8(a[row]).permute(1, 2, 0).numpy())
        assert np.array_equal(_tile(sheet, row, 2), to_uint8(recon[row]).permute(1, 2, 0).numpy())
        assert np.array_equal(_tile(sheet, row, 3), to_uint8(swapped[row]).permute(1, 2, 0).numpy())

    def column(name: str, col: int, rows: int) -> list[np.ndarray]:
        sheet = np.asarray(Image.open(tmp / name).convert("RGB"))
        return [_tile(sheet, row, col) for row in range(rows)]

    def pixels(batch: torch.Tensor) -> list[np.ndarray]:
        return [to_uint8(x).permute(1, 2, 0).numpy() for x in batch]

    # region: the edited column is the target with the source's structure code in its left half
    ckpt = str(checkpoint_of(run_id))
    done = run_cli("edit", "region", "--run", ckpt, "--target", "a.png", "--target", "b.png", "--source", "c.png",
                   "--box", "0,0,0.5,1", "--cell", "16", "--out", "region.png", cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr
    edited = M.paste_structure(model, a, c, M.box_mask("0,0,0.5,1", 16))
    assert all(np.array_equal(x, y) for x, y in zip(column("region.png", 3, 2), pixels(edited)))

    # texture-pca fitted to given files: rows are component-major (component 0 for each image, then 1)
    (tmp / "fit").mkdir(exist_ok=True)
    for name in ("a", "b", "c"):
        (tmp / "fit" / f"{name}.png").write_bytes((tmp / f"{name}.png").read_bytes())
    done = run_cli("edit", "texture-pca", "--run", ckpt, "--image", "a.png", "--image", "b.png", "--fit", "fit",
                   "--components", "2", "--strengths", "-1,2", "--cell", "16", "--out", "pca.png", cwd=tmp, env=env)
    assert done.returncode == 0, done.stderr
    pca = M.texture_pca(model, M.load_images([tmp / "fit"], 16), 2)
    expected = torch.cat([M.edit_texture(model, a, pca.direction(k), [2.0])[0] for k in range(2)])
    assert all(np.array_equal(x, y) for x, y in zip(column("pca.png", 2, 4), pixels(expected)))
    record = json.loads((tmp / "pca.json").read_text())
    assert record["fitted_on"] == ["fit/a.png", "fit/b.png", "fit/c.png"]
    assert record["rows"][:2] == ["component 0, a.png", "component 0, b.png"]

    # the other operations write their sheets as well
    for args in (["interpolate", "--a", "a.png", "--b", "b.png", "--steps", "3", "--part", "texture"],
                 ["texture-pca", "--image", "a.png", "--components", "2", "--n", "16"],
                 ["attribute", "--image", "a.png", "--with", "b.png", "--without", "c.png"],
                 ["translate", "--image", "a.png", "--domain", "b.png", "--domain", "c.png"]):
        out = f"{args[0]}.png"
        done = run_cli("edit", *args, "--run", ckpt, "--cell", "16", "--out", out, cwd=tmp, env=env)
        assert done.returncode == 0, (args, done.stderr)
        assert Image.open(tmp / out).size[0] > 16
        assert json.loads((tmp / out).with_suffix(".json").read_text())["operation"] == args[0]


@pytest.mark.parametrize("args, out, message", [
    (["swap", "--structure", "broken.png", "--texture", "a.png"], "bad.png", "cannot read image file broken.png"),
    (["swap", "--structure", "a.png", "--texture", "b.png", "--alpha", "half"], "bad.jpg", "give --out a .png path"),
])
def test_edit_cli_bad_input_is_one_line(trained, args, out, message):
    tmp, env, run_id = trained
    (tmp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    done = run_cli("edit", *args, "--run", run_id, "--out", out, cwd=tmp, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp / out).exists()


def test_edit_sheets_refuse_bad_input_before_writing(trained, monkeypatch):
    from swapbench.cli.common import parse_floats
    from swapbench.editing import sheets as editing
    from swapbench.tracking import checkpoint_of

    tmp, env, run_id = trained
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    em = editing.load_edit_model(str(checkpoint_of(run_id)), "cpu")
    cases = [
        (lambda: editing.swap_sheet(em, ["a.png"], ["missing.png"], [1.0], "bad.png"), "missing.png does not exist"),
        (lambda: editing.swap_sheet(em, ["a.png", "b.png"], ["a.png", "b.png", "c.png"], [1.0], "bad.png"),
         "2 structure images against 3 texture images"),
        (lambda: editing.region_sheet(em, ["a.png"], ["b.png"], "bad.png"), "exactly one of --box"),
        (lambda: editing.interpolate_sheet(em, ["a.png"], ["b.png"], 1, "both", "bad.png"), "at least 2 steps"),
        (lambda: parse_floats("0,inf", "--alpha"), "finite numbers"),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message):
            call()
    assert not (tmp / "bad.png").exists()


def test_editing_refuses_a_model_without_structure_and_texture_codes(model):
    assert M.require_autoencoder(model) is model
    with pytest.raises(UserError, match="holds a Linear, not a Swapping Autoencoder; editing needs a swap_ae run"):
        M.require_autoencoder(torch.nn.Linear(2, 2))


def test_exported_test_images_read_back_as_the_dataset_gives_them(tmp_path):
    from swapbench.data import build_dataset

    done = run_cli("datasets", "export", "photos", "--out-dir", "crops", "--n", "3", "--resolution", "32", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "crops").glob("*.png"))
    assert [f.name for f in files] == ["test_0000.png", "test_0001.png", "test_0002.png"]
    ds = build_dataset(recipe_from_dict({"data": {"dataset": "photos", "resolution": 32, "test_images": 3},
                                         "encoder": {"texture_convs": 0}, "cooccur": {"patch_size": 32},
                                         "eval": {"grid_size": 2}}), "test")
    for i, f in enumerate(files):  # lossless up to the uint8 rounding of the PNG
        assert (M.load_image(f, 32)[0] - ds[i]).abs().max() <= 1 / 127.5 + 1e-6


def test_change_inside_and_outside_a_region():
    before = torch.zeros(2, 3, 4, 4)
    after = before.clone()
    after[0, :, :, :2] = 0.5  # image 0 changed only in the left half, image 1 everywhere by 0.25
    after[1] = 0.25
    inside, outside = M.change_inside_and_outside(before, after, M.box_mask("0,0,0.5,1", 4))
    assert torch.allclose(inside, torch.tensor([0.5, 0.25])) and torch.allclose(outside, torch.tensor([0.0, 0.25]))
