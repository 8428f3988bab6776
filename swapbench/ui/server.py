"""The web server of `swapbench ui`: a small Starlette app, one page (static/index.html + app.js).

Handlers are thin: each parses a request, calls :class:`swapbench.editing.session.EditSession`, and
returns JSON with PNG images as data URLs. A :class:`~swapbench.errors.UserError` becomes
``{"error": "..."}`` with status 400, which the page shows as a message; any other exception is
logged with its traceback on the server's terminal and reported to the page in one line.

Uploads are written only into the server's temporary folder, which :func:`serve` removes at exit.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from swapbench.editing.session import MAX_UPLOAD_BYTES, Edit, EditSession, png_bytes
from swapbench.errors import UserError

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("swapbench.ui")


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _decode_data_url(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("data:image/png;base64,"):
        raise UserError("the painted region must be sent as a PNG data URL; clear it and paint again")
    try:
        return base64.b64decode(text.split(",", 1)[1], validate=True)
    except ValueError:
        raise UserError("the painted region is not valid base64; clear it and paint again") from None


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}; reload the page") from None


def _numbers(values: Any, name: str) -> list[float]:
    if not isinstance(values, list):
        raise UserError(f"{name} must be a list of numbers; reload the page")
    return [_number(v, name) for v in values]


def available_models() -> dict[str, list[dict[str, str]]]:
    """What the page's model menu offers: the zoo, and the finished swap_ae runs of the local MLflow
    store (only when one exists here: listing never creates a store)."""
    import os

    from swapbench import zoo

    found: dict[str, list[dict[str, str]]] = {"zoo": [], "runs": []}
    for name, model in sorted(zoo.models().items()):
        try:
            description = str(model.manifest().get("description", ""))
        except UserError as exc:
            description = f"(damaged: {exc})"
        found["zoo"].append({"source": f"zoo:{name}", "label": f"zoo:{name}", "description": description[:200]})
    if os.environ.get("MLFLOW_TRACKING_URI") or Path("mlflow.db").is_file():
        try:
            found["runs"] = _local_runs()
        except Exception as exc:  # a locked or foreign store must not break the page
            log.warning("could not list the local runs: %s", exc)
    return found


def _local_runs(limit: int = 50) -> list[dict[str, str]]:
    from mlflow.tracking import MlflowClient

    from swapbench.store import quiet_mlflow
    from swapbench.tracking import tracking_uri

    quiet_mlflow()
    client = MlflowClient(tracking_uri())
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], "params.`model.family` = 'swap_ae'",
                              max_results=limit, order_by=["attributes.start_time DESC"]) if experiments else []
    return [{"source": r.info.run_id, "label": f"{r.info.run_id[:8]} {r.info.run_name or ''} ({r.info.status.lower()})",
             "description": r.data.params.get("name", "")} for r in runs]


class UiState:
    """The server's state: its upload folder and the session of the model loaded last."""

    def __init__(self, folder: Path, device: str = "auto"):
        self.folder = folder
        self.device = device
        self.session: EditSession | None = None
        self.load_lock = threading.Lock()

    def load(self, source: str) -> EditSession:
        with self.load_lock:
            session = EditSession.open(source, self.folder, self.device)
            self.session = session
            return session

    def need_session(self) -> EditSession:
        if self.session is None:
            raise UserError("no model loaded yet; choose one at the top of the page and press Load")
        return self.session


def _image_info(image) -> dict[str, Any]:
    return {"id": image.id, "label": image.label, "src": data_url(png_bytes(image.tensor))}


def _edit_reply(edit: Edit, **more: Any) -> dict[str, Any]:
    return {"image": data_url(png_bytes(edit.image)), "record": edit.record, **more}


def build_app(state: UiState):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route

    def api(fn):
        """A JSON endpoint: the body's JSON (if any) as keyword arguments; user errors as a 400 reply."""
        async def endpoint(request: Request):
            try:
                if request.headers.get("content-type", "").startswith("application/json"):
                    body = await request.json()
                    if not isinstance(body, dict):
                        raise UserError("the request body must be a JSON object")
                else:
                    body = {}
                try:
                    inspect.signature(fn).bind(**body)
                except TypeError as exc:
                    raise UserError(f"bad request to {request.url.path} ({exc}); reload the page") from None
                from starlette.concurrency import run_in_threadpool

                return JSONResponse(await run_in_threadpool(fn, **body))
            except UserError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except json.JSONDecodeError as exc:
                return JSONResponse({"error": f"bad request to {request.url.path} ({exc}); reload the page"}, status_code=400)
            except Exception as exc:  # a bug: the page says so in one line, the terminal has the traceback
                log.exception("request %s failed", request.url.path)
                return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); see the server's terminal"},
                                    status_code=500)
        return endpoint

    def state_info() -> dict[str, Any]:
        s = state.session
        return {"model": s.describe() if s else None, "models": available_models(),
                "images": [_image_info(i) for i in s.images.values()] if s else [],
                "limits": {"upload_bytes": MAX_UPLOAD_BYTES}}

    def load_model(source: str) -> dict[str, Any]:
        state.load(source)
        return state_info()

    def gallery() -> dict[str, Any]:
        return {"images": [_image_info(i) for i in state.need_session().add_gallery()]}

    def swap(a: str, b: str, alpha: float = 1.0) -> dict[str, Any]:
        return _edit_reply(state.need_session().swap(a, b, _number(alpha, "alpha")))

    def scores(a: str, b: str, alpha: float = 1.0) -> dict[str, Any]:
        s = state.need_session()
        return {"scores": s.distances(a, b, s.swap(a, b, _number(alpha, "alpha")).image)}

    def region(a: str, b: str, mask: str, part: str = "structure") -> dict[str, Any]:
        s = state.need_session()
        edit = s.region(a, b, s.mask_from_png(_decode_data_url(mask)), part)
        return _edit_reply(edit, mask=data_url(png_bytes(edit.extra["mask"])),
                           reconstruction=data_url(png_bytes(edit.extra["reconstruction"])))

    def global_edit(a: str, pca: list | None = None, attribute: float = 0.0, with_ids: list | None = None,
                    without_ids: list | None = None) -> dict[str, Any]:
        return _edit_reply(state.need_session().global_edit(a, _numbers(pca or [], "pca"), _number(attribute, "attribute"),
                                                            with_ids or [], without_ids or []))

    def grid(a: list, b: list) -> dict[str, Any]:
        return _edit_reply(state.need_session().grid(a, b))

    async def upload(request: Request):
        """The raw file as the body (the page sends it with fetch), its name in the X-Filename header."""
        from urllib.parse import unquote

        name = unquote(request.headers.get("x-filename", "upload"))
        try:
            declared = int(request.headers.get("content-length", "0") or 0)
            if declared > MAX_UPLOAD_BYTES:
                raise UserError(f"'{name}' is {declared / 2**20:.1f} MiB, over the limit of {MAX_UPLOAD_BYTES // 2**20} MiB; "
                                "upload a smaller image")
            data = bytearray()
            async for chunk in request.stream():
                data += chunk
                if len(data) > MAX_UPLOAD_BYTES:
                    raise UserError(f"'{name}' is over the limit of {MAX_UPLOAD_BYTES // 2**20} MiB; upload a smaller image")
            session = state.need_session()
            from starlette.concurrency import run_in_threadpool

            image = await run_in_threadpool(session.add_upload, bytes(data), name)
            return JSONResponse({"image": _image_info(image)})
        except UserError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    def static(name: str, media: str):
        async def endpoint(request: Request):
            return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "no-store"})
        return endpoint

    routes = [
        Route("/", static("index.html", "text/html")),
        Route("/app.js", static("app.js", "text/javascript")),
        Route("/api/state", api(state_info), methods=["GET", "POST"]),
        Route("/api/model", api(load_model), methods=["POST"]),
        Route("/api/gallery", api(gallery), methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/swap", api(swap), methods=["POST"]),
        Route("/api/scores", api(scores), methods=["POST"]),
        Route("/api/region", api(region), methods=["POST"]),
        Route("/api/global", api(global_edit), methods=["POST"]),
        Route("/api/grid", api(grid), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0 picks a free port); a taken port is a user error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port (0 picks a free one)") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class Server:
    """The page's server on a bound socket, with its temporary upload folder; a context manager that
    removes the folder however it ends. ``run()`` blocks (Ctrl-C or SIGTERM stops it);
    ``start()`` runs it in a thread (for --screenshot and --time-swaps)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7860, device: str = "auto"):
        self.folder = Path(tempfile.mkdtemp(prefix="swapbench-ui-"))
        # whatever this process writes to temp (a run's checkpoint fetched from MLflow) goes into the folder too
        self._tempdir, tempfile.tempdir = tempfile.tempdir, str(self.folder)
        try:
            self.sock = bind(host, port)
        except BaseException:
            self._remove_folder()
            raise
        self.state = UiState(self.folder, device)
        self.url = address(self.sock)
        self._server = None
        self._thread: threading.Thread | None = None

    def _uvicorn(self):
        import uvicorn

        config = uvicorn.Config(build_app(self.state), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        return self._server

    def run(self) -> None:
        self._uvicorn().run(sockets=[self.sock])

    def start(self) -> None:
        server = self._uvicorn()
        server.install_signal_handlers = lambda: None  # signals belong to the main thread
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        import time

        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the page's server stopped while starting")
            time.sleep(0.05)

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
        self._remove_folder()

    def _remove_folder(self) -> None:
        tempfile.tempdir = self._tempdir
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
