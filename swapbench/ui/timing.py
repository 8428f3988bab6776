"""``swapbench ui --time-swaps N``: the latency a person feels, measured as the page's swap request over
HTTP on loopback (encode A and B, decode, PNG, JSON), with the CPU and thread count it ran on."""

from __future__ import annotations

import json
import statistics
import time
import urllib.request

WARMUP = 3


def _post(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"} if body is not None else {})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


def time_swaps(base: str, n: int) -> str:
    """One line: median, 90th percentile and max of ``n`` swap requests (pairs of gallery images, alpha 1)."""
    import torch

    from swapbench.runtime import cpu_info, usable_cores

    state = _post(base + "api/state")
    images = _post(base + "api/gallery")["images"]
    ids = [im["id"] for im in images]
    pairs = [(ids[i % len(ids)], ids[(i + 1) % len(ids)]) for i in range(n + WARMUP)]
    seconds = []
    for i, (a, b) in enumerate(pairs):
        start = time.perf_counter()
        _post(base + "api/swap", {"a": a, "b": b, "alpha": 1.0})
        if i >= WARMUP:
            seconds.append(time.perf_counter() - start)
    seconds.sort()
    ms = lambda s: f"{1000 * s:.1f} ms"  # noqa: E731
    model = state["model"]
    return (f"swap request latency over {n} requests ({model['source']}, {model['resolution']} px, HTTP on loopback): "
            f"median {ms(statistics.median(seconds))}, p90 {ms(seconds[int(0.9 * (len(seconds) - 1))])}, "
            f"max {ms(seconds[-1])}; CPU {cpu_info()['cpu_model']}, {usable_cores()} cores usable, "
            f"torch threads {torch.get_num_threads()}")
