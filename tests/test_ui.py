"""`swapbench ui` (issue 34): the editor page driven in a real browser (Debian's chromium through
selenium; nothing is downloaded), and the editing session behind it.

The browser test starts `swapbench ui` itself on a free port of 127.0.0.1, loads a zoo model, uploads
two images, compares the swap it shows with `swapbench edit swap` on the same files to the pixel,
paints a region and checks that only that region changed, uploads a text file and sees the error,
tries a damaged zoo model and an unknown run id, then stops the server and checks its upload
folder is gone.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swapbench.errors import UserError

ZOO_MODEL = "zoo:reference_photos_warmup"
ROOT = Path(__file__).resolve().parent.parent


def _skimage_photo(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    files = {"a": tmp_path / "cat.png", "b": tmp_path / "coffee.png", "text": tmp_path / "notes.txt"}
    shutil.copy(_skimage_photo("chelsea.png"), files["a"])
    shutil.copy(_skimage_photo("coffee.png"), files["b"])
    files["text"].write_text("not an image\n")
    return files


@pytest.fixture
def broken_zoo(tmp_path: Path) -> Path:
    """A zoo folder whose model 'broken' is reference_photos_warmup with one byte of its weights changed."""
    src = ROOT / "zoo" / ZOO_MODEL.removeprefix("zoo:")
    dst = tmp_path / "zoo" / "broken"
    shutil.copytree(src, dst)
    data = bytearray((dst / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (dst / "model.safetensors").write_bytes(bytes(data))
    return dst.parent


def _start_server(cwd: Path, env: dict) -> tuple[subprocess.Popen, str, Path]:
    exe = Path(sys.executable).with_name("swapbench")
    proc = subprocess.Popen([str(exe), "ui", "--run", ZOO_MODEL, "--port", "0"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"swapbench ui exited: {''.join(lines)} {proc.stderr.read()}")
        lines.append(line)
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+/) \(uploads in (\S+),", line)
        if match:
            return proc, match.group(1), Path(match.group(2))
    proc.kill()
    raise AssertionError(f"swapbench ui did not start in 120 s: {''.join(lines)}")


def _swap_tile_of_sheet(png: Path, column: int, cell: int) -> np.ndarray:
    """The tile of row 0, ``column`` of a labelled sheet written with --cell ``cell`` (visualize.labelled_columns)."""
    from PIL import Image

    pad, header = 4, max(18, cell // 5)
    x0, y0 = pad + column * (cell + pad), header + pad
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))[y0 : y0 + cell, x0 : x0 + cell]


def test_page_in_a_real_browser(tmp_path: Path, inputs: dict[str, Path], broken_zoo: Path) -> None:
    from swapbench.ui import browser

    browser.find_browser()  # a missing chromium fails here with the command that installs it
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SWAPBENCH_ZOO": str(broken_zoo)}
    env.pop("MLFLOW_TRACKING_URI", None)
    work = tmp_path / "work"
    work.mkdir()
    proc, url, folder = _start_server(work, env)
    # the CLI's swap of the same files, at the model's own resolution (cell 64 = 64 px, no resize), meanwhile
    sheet = tmp_path / "cli_swap.png"
    cli = subprocess.Popen([str(Path(sys.executable).with_name("swapbench")), "edit", "swap", "--run", ZOO_MODEL,
                            "--structure", str(inputs["a"]), "--texture", str(inputs["b"]), "--alpha", "1",
                            "--cell", "64", "--out", str(sheet)], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        assert folder.is_dir()
        driver = browser.chromium()
        driver.get(url)
        browser.wait_idle(driver)
        assert "reference_photos_warmup" in driver.find_element("id", "model-info").text

        # a text file: a visible error, and no image added
        driver.find_element("id", "upload").send_keys(str(inputs["text"]))
        browser.wait_for(driver, "document.getElementById('error').textContent.length > 0", what="the upload error")
        error = driver.find_element("id", "error")
        assert error.is_displayed() and "notes.txt" in error.text and "not an image" in error.text, error.text
        assert driver.execute_script("return window.swapbench.images.length") == 0
        # a file over the size limit: refused with its size, nothing sent
        from swapbench.editing.session import MAX_UPLOAD_BYTES

        big = tmp_path / "big.png"
        with open(big, "wb") as f:
            f.truncate(MAX_UPLOAD_BYTES + 1)
        driver.execute_script("document.getElementById('error').textContent = ''")
        driver.find_element("id", "upload").send_keys(str(big))
        browser.wait_for(driver, "document.getElementById('error').textContent.length > 0", what="the size error")
        assert "'big.png'" in error.text and "over the limit of 20 MiB" in error.text, error.text
        assert driver.execute_script("return window.swapbench.images.length") == 0

        # two images: A = the cat, B = the coffee; the swap appears
        driver.find_element("id", "upload").send_keys(f"{inputs['a']}\n{inputs['b']}")
        browser.wait_for(driver, "document.getElementById('swap-result').src.startsWith('data:image/png')", what="the swap")
        browser.wait_idle(driver)
        assert not driver.find_element("id", "error").is_displayed()
        shown = browser.image_array(driver, "swap-result")
        assert shown.shape == (64, 64, 3)

        record = json.loads(driver.find_element("id", "swap-downloads").get_attribute("data-record"))
        assert record["run"] == ZOO_MODEL and record["alpha"] == 1.0 and record["operation"] == "swap"
        assert record["structure"]["file"] == "cat.png" and record["texture"]["file"] == "coffee.png"
        assert len(record["commit"]) == 40
        scores = {tr.get_attribute("data-score") for tr in driver.find_elements("css selector", "#scores tr")}
        assert {"structure_code", "texture_code"} <= scores

        assert cli.wait(timeout=120) == 0, cli.stderr.read()
        expected = _swap_tile_of_sheet(sheet, column=2, cell=64)
        assert np.array_equal(shown, expected), f"{int((shown != expected).any(-1).sum())} pixels differ from the CLI's swap"
        assert not np.array_equal(shown, _swap_tile_of_sheet(sheet, column=0, cell=64))  # not just A again

        # paint B's texture into the top-left of A: outside the painted region the image is A's reconstruction
        driver.execute_script("document.getElementById('part').value = 'texture'")
        browser.paint_stroke(driver, [(0.1, 0.1), (0.35, 0.15), (0.35, 0.35), (0.1, 0.35)])
        browser.wait_for(driver, "document.getElementById('region-result').src.startsWith('data:image/png')", what="region")
        browser.wait_idle(driver)
        edited = browser.image_array(driver, "region-result").astype(int)
        mask = browser.image_array(driver, "region-mask")[..., 0]
        src = driver.find_element("id", "region-result").get_attribute("data-reconstruction")
        recon = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")).astype(int)
        painted = mask > 0
        assert 0.02 < painted.mean() < 0.3, painted.mean()
        assert not painted[40:, :].any() and not painted[:, 40:].any()  # only where the stroke went (top-left)
        changed = (edited != recon).any(-1)
        assert changed.sum() > 20, "the painted region did not change"
        assert not (changed & ~painted).any(), f"{int((changed & ~painted).sum())} pixels outside the region changed"

        # B's structure in the same region: the change is concentrated inside it (the generator's convolutions
        # spread it a little beyond)
        driver.execute_script("const p = document.getElementById('part'); p.value = 'structure'; p.onchange();")
        browser.wait_idle(driver)
        region_record = json.loads(driver.find_element("id", "region-downloads").get_attribute("data-record"))
        assert region_record["part"] == "structure"
        assert region_record["mean_change_inside"] > 2 * region_record["mean_change_outside"], region_record

        # a model file that fails its hash, and an unknown run id: visible errors, the loaded model stays
        for source, words in (("zoo:broken", "sha256"), ("0123456789abcdef0123456789abcdef", "no run")):
            driver.execute_script("document.getElementById('error').textContent = ''")
            box = driver.find_element("id", "model-text")
            box.clear()
            box.send_keys(source)
            driver.find_element("id", "model-load").click()
            browser.wait_for(driver, "document.getElementById('error').textContent.length > 0", what=source)
            assert words in driver.find_element("id", "error").text, driver.find_element("id", "error").text
        assert "reference_photos_warmup" in driver.find_element("id", "model-info").text
        # another zoo model from the menu: loaded, and the page starts over with it
        driver.find_element("id", "model-text").clear()
        driver.execute_script("document.getElementById('model-select').value = 'zoo:reference_photos'")
        driver.find_element("id", "model-load").click()
        browser.wait_for(driver, "document.getElementById('model-info').textContent.startsWith('zoo:reference_photos ')",
                         what="loading zoo:reference_photos")
        assert driver.execute_script("return window.swapbench.images.length") == 0
    finally:
        if driver is not None:
            driver.quit()
        if cli.poll() is None:
            cli.kill()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert not folder.exists(), "the upload folder was left behind"
    assert sorted(p.name for p in work.iterdir()) == [], "the server wrote into its working folder"


# -- the session behind the page, without a browser --------------------------------------------

@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from swapbench.editing.session import EditSession

    torch.set_num_threads(1)
    return EditSession.open(ZOO_MODEL, tmp_path_factory.mktemp("uploads"), "cpu")


def test_session_refuses_bad_uploads(session, monkeypatch) -> None:
    from swapbench.editing import session as S

    png = _skimage_photo("chelsea.png").read_bytes()
    with pytest.raises(UserError, match="'notes.txt' is not an image"):
        session.add_upload(b"hello\n", "notes.txt")
    with pytest.raises(UserError, match="is empty"):
        session.add_upload(b"", "empty.png")
    monkeypatch.setattr(S, "MAX_UPLOAD_BYTES", len(png) - 1)
    with pytest.raises(UserError, match="over the limit of"):
        session.add_upload(png, "big.png")
    monkeypatch.setattr(S, "MAX_UPLOAD_BYTES", len(png))
    monkeypatch.setattr(S, "MAX_UPLOAD_PIXELS", 1000)
    with pytest.raises(UserError, match="megapixels"):
        session.add_upload(png, "huge.png")
    assert session.images == {} and list(session.folder.iterdir()) == []


def test_session_region_texture_stays_inside_and_pca_moves(session, monkeypatch) -> None:
    from swapbench.editing import manipulate as M
    from swapbench.editing import session as S

    monkeypatch.setattr(S, "PCA_FIT_CROPS", 64)  # the page fits 512; fewer keep the test short

    a = session.add_upload(_skimage_photo("chelsea.png").read_bytes(), "cat.png")
    b = session.add_upload(_skimage_photo("coffee.png").read_bytes(), "coffee.png")
    r = session.resolution
    mask = M.box_mask("0.5,0,1,0.5", r)
    edit = session.region(a.id, b.id, mask, "texture")
    recon = edit.extra["reconstruction"]
    assert torch.equal(edit.image[..., :, : r // 2], recon[..., :, : r // 2])  # left half untouched
    assert (edit.image - recon).abs()[..., : r // 2, r // 2 :].mean() > 0.01
    swap = session.swap(a.id, b.id, 1.0).image
    assert torch.equal(edit.image[..., : r // 2, r // 2 :], swap[..., : r // 2, r // 2 :])  # inside: the full swap
    # the distances of a swap: nearer A's structure code than B's, and of the reconstruction: A's exactly-ish
    d = session.distances(a.id, b.id, swap)
    assert 0 <= d["structure_code"] < 1, d
    assert session.distances(a.id, b.id, recon)["texture_code"] > d["texture_code"]
    moved = session.global_edit(a.id, pca=[2.0, 0, 0])
    assert moved.record["pca_strengths"] == [2.0, 0.0, 0.0] and "training crops" in moved.record["pca_fitted_on"]
    assert (moved.image - recon).abs().mean() > 1e-3
    grid = session.grid([a.id, b.id], [b.id])
    assert grid.image.ndim == 3 and grid.image.shape[2] == 3


def test_ui_refuses_a_taken_port_a_bad_model_and_warns_off_loopback(tmp_path: Path, monkeypatch) -> None:
    import socket
    import tempfile

    from conftest import invoke_cli

    monkeypatch.chdir(tmp_path)
    before = tempfile.gettempdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        code, _, err = invoke_cli(["ui", "--port", str(s.getsockname()[1])])
    assert code == 2 and err.startswith("error: cannot listen on 127.0.0.1:"), err
    code, _, err = invoke_cli(["ui", "--run", "zoo:no_such_model", "--port", "0"])
    assert code == 2 and err.startswith("error: no zoo model 'no_such_model'"), err
    code, _, err = invoke_cli(["ui", "--host", "192.0.2.1", "--screenshot", "shot.jpg"])  # refused before binding
    assert err.startswith("warning: listening on 192.0.2.1 (--host) serves the page beyond this machine"), err
    assert code == 2 and "must end in .png" in err, err
    assert list(tmp_path.iterdir()) == [] and tempfile.gettempdir() == before


def test_server_answers_bad_requests_with_one_line(session) -> None:
    """The HTTP layer in this process (Server.start, on 127.0.0.1): malformed requests are 400s with an
    error line, never a traceback, and the temporary folder goes with the server."""
    import urllib.error
    import urllib.request

    from swapbench.ui.server import Server

    def post(server, path, body: bytes, headers: dict) -> tuple[int, dict]:
        request = urllib.request.Request(server.url + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    as_json = {"Content-Type": "application/json"}
    with Server("127.0.0.1", 0, "cpu") as server:
        assert server.url.startswith("http://127.0.0.1:")
        server.start()
        code, reply = post(server, "api/swap", b'{"a": "img0", "b": "img1"}', as_json)
        assert code == 400 and reply["error"].startswith("no model loaded yet"), reply
        server.state.session = session
        a = session.add_upload(_skimage_photo("chelsea.png").read_bytes(), "cat.png").id
        cases = [
            ("api/swap", b'{"a": "' + a.encode() + b'", "b": "nope"}', "no image 'nope'"),
            ("api/swap", b'{"a": "' + a.encode() + b'", "b": "' + a.encode() + b'", "alpha": "x"}', "alpha must be a number"),
            ("api/swap", b'{"a": 1, "b": 2, "gamma": 3}', "bad request to /api/swap"),
            ("api/swap", b"{not json", "bad request to /api/swap"),
            ("api/region", b'{"a": "' + a.encode() + b'", "b": "' + a.encode() + b'", "mask": "data:image/png;base64,AAAA"}',
             "the painted region could not be read"),
            ("api/grid", b'{"a": [], "b": []}', "the grid needs at least one"),
            ("api/model", b'{"source": "zoo:no_such_model"}', "no zoo model 'no_such_model'"),
        ]
        for path, body, words in cases:
            code, reply = post(server, path, body, as_json)
            assert code == 400 and words in reply["error"] and "Traceback" not in reply["error"], (path, reply)
        code, reply = post(server, "api/upload", b"x" * 64, {"X-Filename": "a.txt"})
        assert code == 400 and "'a.txt' is not an image" in reply["error"], reply
        folder = server.folder
        assert folder.is_dir()
    assert not folder.exists()


def test_model_menu_lists_swap_ae_runs_of_the_local_store_only_where_one_exists(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    from swapbench.ui.server import available_models

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    menu = available_models()
    assert "zoo:reference_photos_warmup" in [m["source"] for m in menu["zoo"]] and menu["runs"] == []
    assert list(tmp_path.iterdir()) == []  # listing created no store
    client = mlflow.MlflowClient("sqlite:///mlflow.db")
    experiment = client.create_experiment("menu")
    runs = {}
    for family in ("swap_ae", "stylegan2"):
        runs[family] = client.create_run(experiment, run_name=f"a {family} run").info.run_id
        client.log_param(runs[family], "model.family", family)
    assert [m["source"] for m in available_models()["runs"]] == [runs["swap_ae"]]
