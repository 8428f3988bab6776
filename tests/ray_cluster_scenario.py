"""The cluster half of test_ray_sweep.py, run inside a network and PID namespace of the test's own
(``unshare --net --pid --fork --mount-proc``): only a loopback interface exists, and every process it
starts ends with it.

In FOLDER (holding tiny.yaml and sweep.yaml): a real ``mlflow server`` on 127.0.0.1, a Ray head and a
worker node on 127.0.0.1 (1 CPU each), ``swapbench sweep sweep.yaml --ray HEAD`` as a user runs it,
and a killer that SIGKILLs the Ray worker process training a run as soon as that run has a checkpoint in
the middle of its training. Writes FOLDER/scenario.json: what was killed, the sweep's exit status and
output, and the listening sockets seen while the cluster ran.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import MlflowServer  # noqa: E402


def _ray_processes(key: str) -> list[int]:
    """Ray worker processes whose title names the sweep key (the task's name: 'swapbench VARIANT seed S KEY')."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if cmdline.startswith("ray::swapbench") and key in cmdline:
            pids.append(int(proc.name))
    return pids


def kill_mid_run(folder: Path, uri: str, first: int, last: int, found: dict, stop: threading.Event) -> None:
    """SIGKILL the process of the first run seen with a checkpoint at a step in [first, last]."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    while not stop.is_set():
        for side in folder.glob("checkpoints/*/last.json"):
            try:
                step = json.loads(side.read_text())["step"]
            except (OSError, ValueError, KeyError):
                continue  # being written
            if not first <= step <= last:
                continue
            run_id = side.parent.name
            key = client.get_run(run_id).data.tags["swapbench.sweep_key"]
            pids = _ray_processes(key)
            if len(pids) == 1:
                found.update(run_id=run_id, step_seen=step, pid=pids[0], key=key,
                             listening=subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout)
                os.kill(pids[0], signal.SIGKILL)
                return
        time.sleep(0.02)


def main(folder: Path, first: int, last: int) -> None:
    from ray.cluster_utils import Cluster

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    server = MlflowServer(folder)
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    os.environ["RAY_TMPDIR"] = ray_tmp  # Ray's files, its current-cluster address included, stay out of /tmp/ray
    Path(ray_tmp, "ray").mkdir()
    cluster = None
    report: dict = {"killed": {}}
    try:
        started: list[bool] = []
        starting = threading.Thread(target=lambda: started.append(server.start(timeout=300) is None))  # while the cluster starts
        starting.start()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False, "temp_dir": f"{ray_tmp}/ray"})
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        starting.join()
        assert started, f"the MLflow server did not start: {(folder / 'server.log').read_text()[-2000:]}"
        stop = threading.Event()
        killer = threading.Thread(target=kill_mid_run, args=(folder, server.uri, first, last, report["killed"], stop))
        killer.start()
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri, "OMP_NUM_THREADS": "1"}
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "swapbench", "sweep", "sweep.yaml", "--ray", cluster.address],
                              cwd=folder, env=env, capture_output=True, text=True, timeout=400)
        report.update(sweep_seconds=time.monotonic() - start, returncode=done.returncode, stdout=done.stdout,
                      stderr=done.stderr[-4000:])
        stop.set()
        killer.join()
    finally:
        if cluster is not None:
            cluster.shutdown()
        server.stop()
        shutil.rmtree(ray_tmp, ignore_errors=True)  # the cluster's logs and sockets
        (folder / "scenario.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
