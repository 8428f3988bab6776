"""swapbench reads no image outside data.root (not through a symlink placed inside it, neither from a
manifest nor a folder scan), and `swapbench sync` uploads no file outside the run's folder (issue 36)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import invoke_cli as invoke
from PIL import Image

from swapbench.data.folder import ImageFolder
from swapbench.errors import UserError
from swapbench.journal import JOURNAL, Journal


def _images(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / f"img{i:02d}.png")
    return [f"img{i:02d}.png" for i in range(n)]


def _folder(root: Path, **kw) -> ImageFolder:
    return ImageFolder(split="train", resolution=16, root=str(root), test_fraction=0.5, **kw)


def test_a_manifest_cannot_read_through_a_symlink_outside_data_root(tmp_path):
    root, elsewhere = tmp_path / "images", tmp_path / "private"
    names = _images(root, 4)
    _images(elsewhere, 1)
    os.symlink(elsewhere / "img00.png", root / "link.png")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "folder", "split": "train", "files": [names[0], "link.png"]}))
    with pytest.raises(UserError, match="outside data.root") as raised:
        _folder(root, manifest=str(manifest))
    assert "link.png" in str(raised.value) and "\n" not in str(raised.value)
    manifest.write_text(json.dumps({"dataset": "folder", "split": "train", "files": names[:2]}))
    assert _folder(root, manifest=str(manifest)).files == names[:2]  # the same manifest without the link reads


def test_a_folder_scan_does_not_follow_a_link_out_of_data_root_but_does_inside(tmp_path):
    root, elsewhere = tmp_path / "images", tmp_path / "private"
    _images(root, 4)
    _images(elsewhere, 2)
    os.symlink(root / "img00.png", root / "again.png")  # inside: fine
    assert "again.png" in _folder(root).files + ImageFolder(split="test", resolution=16, root=str(root),
                                                             test_fraction=0.5).files
    os.symlink(elsewhere, root / "linked_folder")
    with pytest.raises(UserError, match="outside data.root"):
        _folder(root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module's tests (creating its tables takes seconds); a run per test."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def _journal_with_artifact(folder: Path, store: str, path: str) -> Journal:
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment(f"e{len(client.search_experiments())}")).info.run_id
    journal = Journal(folder, uri=store, run_id=run_id)
    journal.append({"kind": "artifact", "path": path, "artifact_path": None})
    return journal


@pytest.mark.parametrize("where", ["absolute", "relative", "symlink"])
def test_sync_uploads_no_file_outside_the_run_folder(where, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    folder = tmp_path / "checkpoints" / "run"
    folder.mkdir(parents=True)
    path = {"absolute": str(secret), "relative": "../../secret.txt", "symlink": str(folder / "inside.txt")}[where]
    if where == "symlink":
        os.symlink(secret, folder / "inside.txt")
    journal = _journal_with_artifact(folder, store, path)
    code, out, err = invoke(["sync", str(folder)])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "outside the run's folder" in lines[0], err
    client = mlflow.MlflowClient(store)
    assert client.list_artifacts(journal.run_id) == []  # nothing went up
    assert json.loads((folder / JOURNAL).read_text().splitlines()[-1])["path"] == path  # the journal is unchanged


def test_sync_uploads_a_file_in_the_run_folder(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "checkpoints" / "run"
    folder.mkdir(parents=True)
    (folder / "note.txt").write_text("the run's")
    journal = _journal_with_artifact(folder, store, str(folder / "note.txt"))
    code, out, err = invoke(["sync", str(folder)])
    assert code == 0, (out, err)
    assert [a.path for a in mlflow.MlflowClient(store).list_artifacts(journal.run_id)] == ["note.txt"]
