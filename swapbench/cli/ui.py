"""``swapbench ui``: the local editor page (swapbench/ui/), on 127.0.0.1 unless told otherwise (--host)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from swapbench.cli.common import DeviceOption, app, err, out


@app.command("ui")
def ui(
    run: Annotated[Optional[str], typer.Option("--run", help="Model to load at start: MLflow run id, checkpoint .safetensors, or zoo:NAME. Without it, choose one on the page.")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")] = 7860,
    host: Annotated[str, typer.Option(help="Interface to listen on. Anything but 127.0.0.1 exposes the page (and the files it reads) to the network.")] = "127.0.0.1",
    device: DeviceOption = "auto",
    screenshot: Annotated[Optional[Path], typer.Option(help="Instead of serving: open the page in headless chromium, swap two gallery images, paint a region, make a grid, save a PNG screenshot here and exit.")] = None,
    time_swaps: Annotated[int, typer.Option(min=0, help="Instead of serving: time this many swap requests over HTTP (gallery images, after 3 warm-up requests), print the median and exit.")] = 0,
) -> None:
    """Serve the editor page: swap, blend, paint a region, move along texture directions, make grids."""
    from swapbench.ui.server import LOOPBACK, Server

    if host not in LOOPBACK:
        err.print(f"warning: listening on {host} (--host) serves the page beyond this machine: anyone who can reach it can "
                  "use the model and upload files; keep the default 127.0.0.1 unless you mean it", markup=False, highlight=False,
                  soft_wrap=True)
    if screenshot is not None and screenshot.suffix.lower() != ".png":
        from swapbench.errors import UserError

        raise UserError(f"--screenshot {screenshot} must end in .png")
    if screenshot is not None and run is None or time_swaps and run is None:
        from swapbench.errors import UserError

        raise UserError("--screenshot and --time-swaps need a model; add --run zoo:NAME (or a run id or checkpoint)")
    with Server(host, port, device) as server:
        if run is not None:
            session = server.state.load(run)
            out.print(f"loaded {run} ({session.resolution} px, commit {session.em.commit[:10]})", markup=False, highlight=False)
        if screenshot is not None:
            from swapbench.ui.browser import screenshot as shoot

            server.start()
            out.print(f"wrote {shoot(server.url, screenshot)}", markup=False, highlight=False)
            return
        if time_swaps:
            from swapbench.ui.timing import time_swaps as measure

            server.start()
            out.print(measure(server.url, time_swaps), markup=False, highlight=False, soft_wrap=True)
            return
        out.print(f"swapbench ui: serving on {server.url} (uploads in {server.folder}, removed at exit; Ctrl-C stops)",
                  markup=False, highlight=False, soft_wrap=True)
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C or SIGTERM it stopped on, once it has shut down
            pass
    out.print("swapbench ui: stopped; upload folder removed", markup=False, highlight=False)
