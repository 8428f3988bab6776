from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swapbench.recipe import Recipe, deep_merge, load_recipe

ROOT = Path(__file__).resolve().parent.parent

CPU_VARIANTS = {"model.widths": "uniform", "model.resample": "average", "encoder.padding": "zeros",
                "encoder.texture_convs": 1, "generator.noise": False, "generator.rgb_every_scale": True,
                "discriminator.mbstd": 4}
PAPER_ARCHITECTURE = {"model.widths": "paper", "model.resample": "fir", "encoder.padding": "reflect",
                      "encoder.texture_convs": 2, "generator.noise": True, "generator.rgb_every_scale": False,
                      "discriminator.mbstd": 0}


def nested(flat: dict) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    out: dict = {}
    for key, value in flat.items():
        section, leaf = key.split(".")
        out.setdefault(section, {})[leaf] = value
    return out


TINY = deep_merge({
    "name": "tiny",
    "data": {"resolution": 16, "test_images": 8},
    # the CPU variants of the networks, as the CPU recipes choose them (test_models.py also builds
    # the authors' architecture, the default, at these sizes)
    "model": {"channels": 4, "max_channels": 16, "structure_channels": 2, "structure_downsample": 4, "texture_dim": 8},
    "generator": {"blocks": 1},
    "cooccur": {"patch_size": 8, "n_crops": 2, "n_ref": 2, "channels": 4, "head": [16, 8]},
    "loss": {"r1_interval": 2},
    "train": {"images": 8, "batch_size": 4, "log_every": 1, "image_every": 1, "checkpoint_every": 1},
    "eval": {"batch_size": 8, "grid_size": 2, "swap_pairs": 16, "reference_images": 16, "bootstrap_samples": 100},
    "device": "cpu",
}, nested(CPU_VARIANTS))


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def tiny(tiny_yaml: Path) -> Recipe:
    return load_recipe(tiny_yaml)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed `swapbench` console script (as a user would) in ``cwd``."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": "", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI") if not full_env["MLFLOW_TRACKING_URI"] else None
    exe = Path(sys.executable).with_name("swapbench")
    return subprocess.run([str(exe), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def invoke_cli(argv: list[str]) -> tuple[int, str, str]:
    """swapbench's console entry point in this process: (exit status, stdout, stderr). The SIGTERM handler
    and the root logger's handlers the CLI installs are put back afterwards."""
    import logging
    import signal

    from typer.testing import CliRunner

    from swapbench.cli import main

    previous = signal.getsignal(signal.SIGTERM)
    handlers = logging.root.handlers[:]
    logging.root.handlers = []  # the CLI configures logging onto this call's stderr
    try:
        with CliRunner().isolation() as (out, err, _):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()  # plain print() output waits in the text wrapper's buffer
            sys.stderr.flush()
            return code, out.getvalue().decode(), err.getvalue().decode()
    finally:
        logging.root.handlers = handlers
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with its own sqlite store and artifact folder, which a
    test can stop (an outage) and start again on the same port and store."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        import time
        import urllib.request

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            cwd=self.folder, stdout=subprocess.DEVNULL, stderr=open(self.folder / "server.log", "ab"),
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"mlflow server did not start in {timeout} s")

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and its workers
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()
