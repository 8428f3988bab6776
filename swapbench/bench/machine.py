"""What the machine is and what it can do: the header of the bench table, the FLOP/s limits measured
in the same process (a 3x3 convolution through oneDNN and a large matmul), a FLOP counter that
works through R1's double backward, timing and memory probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from swapbench.runtime import cpu_info  # lives in runtime.py, the lowest layer that needs it (run tags)

# the conv peak probe: batch 8, 128 -> 128 channels, 3x3, 64x64, forward (issue 16)
CONV_PROBE = {"batch": 8, "channels": 128, "side": 64, "kernel": 3}
MATMUL_SIDE = 2048


def header(threads: int, quick: bool) -> dict[str, Any]:
    from swapbench import __version__
    from swapbench.runtime import git_commit, usable_cores

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {**cpu_info(), "cpu_count": usable_cores(), "torch": torch.__version__, "threads": threads,
            "mkldnn": torch.backends.mkldnn.is_available(), "cuda_device": cuda, "git_commit": git_commit(),
            "swapbench": __version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": quick}


class _NoModules:
    """Stands in for FlopCounterMode's module tracker: every count goes to 'Global' only."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class StepFlopCounter(FlopCounterMode):
    """torch's FlopCounterMode (same formulas: convolutions and matrix products, forward and backward;
    element-wise work is not counted) without per-module attribution, whose backward hooks make
    ``torch.autograd.grad`` fail; R1's gradient penalty calls it, so a training step needs this."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _NoModules()


def count_flops(fn: Callable[[], Any]) -> float:
    with StepFlopCounter() as counter:
        fn()
    return float(counter.get_total_flops())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Fastest of ``repeats`` timed calls after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def peak_flops(device: torch.device, repeats: int) -> dict[str, float]:
    """Achieved FLOP/s of a 3x3 convolution (oneDNN on the CPU) and a 2048x2048 matmul, fp32, on
    ``device`` at the current thread count: the limits the training step is set against."""
    p = CONV_PROBE
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p["batch"], p["channels"], p["side"], p["side"], generator=g).to(device)
    w = torch.randn(p["channels"], p["channels"], p["kernel"], p["kernel"], generator=g).to(device)
    a = torch.randn(MATMUL_SIDE, MATMUL_SIDE, generator=g).to(device)
    b = torch.randn(MATMUL_SIDE, MATMUL_SIDE, generator=g).to(device)
    conv = lambda: torch.nn.functional.conv2d(x, w, padding=p["kernel"] // 2)  # noqa: E731
    matmul = lambda: a @ b  # noqa: E731
    conv_flops, matmul_flops = count_flops(conv), count_flops(matmul)
    return {"conv_gflops": conv_flops / best_seconds(conv, repeats, device) / 1e9,
            "matmul_gflops": matmul_flops / best_seconds(matmul, repeats, device) / 1e9}


def rss_bytes() -> int | None:
    """Resident memory of this process now (Linux /proc), or None where that is not readable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    import resource

    return pages * resource.getpagesize()


class PeakMemory:
    """Peak memory while the block runs. On CUDA: ``torch.cuda.max_memory_allocated`` (tensors only).
    On the CPU: the process's resident set sampled every ``interval`` seconds by a thread (the whole
    process: Python, libraries, tensors, allocator caches), reported as the peak and as the peak minus
    the resident set at ``baseline`` (before the networks were built). Where /proc is not readable
    both are None."""

    def __init__(self, device: torch.device, baseline: int | None, interval: float = 0.02):
        self.device, self.baseline, self.interval = device, baseline, interval
        self.peak: int | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = rss_bytes()
            if now is not None:
                self.peak = max(self.peak or 0, now)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.baseline = 0
        else:
            self._stop.set()
            self._thread.join()

    def mib(self) -> tuple[float | None, float | None]:
        """(peak, peak minus baseline) in MiB."""
        if self.peak is None:
            return None, None
        above = None if self.baseline is None else (self.peak - self.baseline) / 2**20
        return self.peak / 2**20, above

    @property
    def what(self) -> str:
        return self.describe(self.device.type)

    @staticmethod
    def describe(device_type: str) -> str:
        if device_type == "cuda":
            return "torch.cuda.max_memory_allocated during the timed steps (tensors only)"
        return ("resident set of the whole process sampled every 20 ms during the timed steps; 'above start' "
                "subtracts the resident set before the trainer was built")
