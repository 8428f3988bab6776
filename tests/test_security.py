"""What swapbench trusts: nothing unpickled blindly, YAML only safe-loaded, manifests and logged
names kept inside their folders, loopback-only servers, secrets never logged to MLflow."""

from __future__ import annotations

import ast
import json
import re

import mlflow
import pytest
from conftest import ROOT

PACKAGES = [ROOT / "swapbench", ROOT / "baselines"]
SOURCES = sorted(p for d in PACKAGES for p in d.rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_the_package_never_unpickles_blindly_nor_loads_yaml_unsafely():
    assert len(SOURCES) > 30
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT)
        for node, name in _calls(tree):
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name == "torch.load" and keywords.get("weights_only") != "True":
                problems.append(f"{where}:{node.lineno} torch.load without weights_only=True")
            if re.fullmatch(r"(pickle|cPickle|dill|joblib|cloudpickle)\.(loads?|Unpickler)", name):
                problems.append(f"{where}:{node.lineno} {name}")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
                problems.append(f"{where}:{node.lineno} {name} (use yaml.safe_load)")
            if name.endswith(("np.load", "numpy.load")) and keywords.get("allow_pickle") == "True":
                problems.append(f"{where}:{node.lineno} {name}(allow_pickle=True)")
            if name in ("eval", "exec"):
                problems.append(f"{where}:{node.lineno} {name}")
        # the one unpickler: numpy arrays only, through find_class
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
                methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                if "find_class" not in methods:
                    problems.append(f"{where}:{node.lineno} an Unpickler without a find_class allow-list")
    assert not problems, problems


def test_the_only_unpickler_refuses_anything_but_numpy_arrays(tmp_path):
    import pickle

    from swapbench.errors import UserError
    from swapbench.weights import load_numpy_pickle

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"a": Exploit()}))
    with pytest.raises(UserError, match="refusing to unpickle builtins.print"):
        load_numpy_pickle(path)


def test_a_recipe_cannot_run_code_through_yaml_tags(tmp_path):
    from swapbench.errors import UserError
    from swapbench.recipe import load_recipe

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(UserError, match="is not valid YAML"):
        load_recipe(path)
    assert not marker.exists()


@pytest.mark.parametrize("entry", ["../outside.png", "/etc/passwd", "sub/../../outside.png"])
def test_a_manifest_cannot_name_files_outside_its_data_root(tmp_path, entry):
    from swapbench.data.folder import read_manifest
    from swapbench.errors import UserError

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"dataset": "folder", "split": "train", "files": ["a.png", entry]}))
    with pytest.raises(UserError, match="outside data.root"):
        read_manifest(manifest, "train")


def test_logged_artifact_names_cannot_leave_the_run_folder(tmp_path):
    from swapbench.trackers import JournalTracker

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    tracker = JournalTracker(tmp_path / "run", store, run_id, retry_seconds=0.1, flush_timeout=10)
    try:
        with pytest.raises(ValueError, match="leaves the run's folder"):
            tracker.log_text("x", "../../escaped.txt")
        assert not (tmp_path / "escaped.txt").exists()
    finally:
        tracker.end("FINISHED")


def test_secrets_are_redacted_in_params_tags_and_the_journal(tmp_path):
    from swapbench.trackers import JournalTracker, redact

    shown = redact({"hf_token": "abc", "db.password": "pw", "aws_secret_access_key": "s", "api_key": "k",
                    "tracking.uri": "https://alice:hunter2@mlflow.example/", "model.texture_dim": 8,
                    "data.root": "/data/keys_and_locks", "train.batch_size": 16})
    assert shown["hf_token"] == shown["db.password"] == shown["aws_secret_access_key"] == shown["api_key"] == "***"
    assert shown["tracking.uri"] == "https://alice:***@mlflow.example/"
    assert shown["model.texture_dim"] == "8" and shown["data.root"] == "/data/keys_and_locks"
    assert redact({"key": "k", "swapbench.sweep_key": "3f2a"}) == {"key": "***", "swapbench.sweep_key": "3f2a"}

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(store)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    tracker = JournalTracker(tmp_path / "run", store, run_id, retry_seconds=0.1, flush_timeout=30)
    tracker.log_params({"service_token": "abc123", "seed": 0})
    tracker.set_tags({"deploy.password": "hunter2"})
    tracker.log_text("uri: https://alice:hunter2@host/\n", "recipe.yaml")
    tracker.end("FINISHED")
    run = client.get_run(run_id)
    assert run.data.params == {"service_token": "***", "seed": "0"}
    assert run.data.tags["deploy.password"] == "***"
    journal = (tmp_path / "run" / "journal.jsonl").read_text() + (tmp_path / "run" / "artifacts" / "recipe.yaml").read_text()
    assert "abc123" not in journal and "hunter2" not in journal


def test_servers_bind_to_loopback_by_default():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    texts = {p: p.read_text() for p in [*SOURCES, *docs, *sorted((ROOT / "tests").glob("*.py"))]}
    # docs/distributed.md starts servers other machines reach, so it names a cluster address, never a wildcard
    lan = {ROOT / "docs" / "distributed.md"}
    wildcard = [str(p.relative_to(ROOT)) for p, t in texts.items()
                if re.search(r"0\.0\.0\.0|host\s*=\s*['\"]{2}" + ("" if p in lan else r"|--host\s+(?!127\.0\.0\.1)\S"), t)
                and p.name != "test_security.py"]
    assert not wildcard, wildcard
    server_commands = re.findall(r"mlflow (?:server|ui)[^\n`]*", "\n".join(texts[p] for p in docs if p not in lan))
    assert server_commands and all("--host" not in c or "--host 127.0.0.1" in c for c in server_commands)
