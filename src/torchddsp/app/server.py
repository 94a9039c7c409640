"""The app's HTTP server: Starlette and uvicorn around the routes of :mod:`.routes`.

Every request gets its browser session (a cookie); every POST must carry the
page's own header, which a cross-site form cannot send; and every response
forbids loading anything but the app's own files (Content-Security-Policy), so
the page works without the internet and leaks nothing to it. Errors reach the
page as ``{"error": one sentence}``; a bug's traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import UserError
from .jobs import JobRunner, one_line
from .routes import ROUTES, Studio, is_loopback
from .sessions import COOKIE, SessionStore
from .training import Trainings
from .uploads import TooLarge, UploadLimits

log = logging.getLogger("torchddsp.app")
PAGE_HEADER = "x-torchddsp"  # the page sends it with every POST; cross-site forms cannot
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; media-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


def create_app(
    data: Path,
    work: Path,
    limits: UploadLimits | None = None,
    workers: int = 2,
    idle_seconds: float = 3600.0,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The app: trainings under ``data`` (kept), sessions under ``work`` (removed at exit).

    ``allowed_hosts``: Host headers served (None: any), against DNS rebinding.
    """
    studio = Studio(
        store=SessionStore(work, idle_seconds),
        jobs=JobRunner(workers),
        trainings=Trainings(data / "trainings"),
        limits=limits or UploadLimits(),
    )
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"])]
    middleware.append(Middleware(BrowserSessions, store=studio.store))
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        lifespan=_lifespan,
        exception_handlers={UserError: _user_error, HTTPException: _http_error, 500: _bug},
    )
    app.state.studio = studio
    return app


# ---- sessions and headers --------------------------------------------------------------------
class BrowserSessions:
    """Attaches the browser's session to the page and API requests; adds the security headers."""

    def __init__(self, app, store: SessionStore):
        self.app, self.store = app, store

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        session, new = None, False
        if request.url.path == "/" or request.url.path.startswith("/api/"):
            if request.method == "POST" and request.headers.get(PAGE_HEADER) != "1":
                response = _error(403, "requests must come from the app's own page")
                return await response(scope, receive, send)
            session, new = self.store.open(request.cookies.get(COOKIE))
            scope.setdefault("state", {})["session"] = session

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if new:
                    cookie = f"{COOKIE}={session.id}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---- errors -----------------------------------------------------------------------------------
def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status)


async def _user_error(request: Request, err: UserError) -> JSONResponse:
    return _error(413 if isinstance(err, TooLarge) else 400, str(err))


async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
    return _error(err.status_code, "nothing here" if err.status_code == 404 else str(err.detail))


async def _bug(request: Request, err: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=err)
    return _error(500, "The server hit an unexpected error; its log has the details.")


# ---- lifetime ---------------------------------------------------------------------------------
@asynccontextmanager
async def _lifespan(app: Starlette):
    studio: Studio = app.state.studio
    sweeper = asyncio.create_task(_sweep_sessions(studio))
    try:
        yield
    finally:
        sweeper.cancel()
        await run_in_threadpool(studio.trainings.shutdown)  # each run checkpoints first
        studio.jobs.shutdown()
        studio.store.close()


async def _sweep_sessions(studio: Studio) -> None:
    interval = min(60.0, max(0.05, studio.store.idle_seconds / 4))
    while True:
        await asyncio.sleep(interval)
        removed = await run_in_threadpool(studio.store.sweep, studio.jobs.busy)
        studio.jobs.forget(removed)


def serve(host: str, port: int, data: str | os.PathLike) -> None:
    """Run the app until Ctrl-C; prints its URL. Raises UserError for a busy port."""
    import torch
    import uvicorn

    sock = _bind(host, port)
    logging.basicConfig(format="torchddsp app: %(levelname)s: %(message)s")  # warnings and errors
    workers = max(2, min(4, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))  # jobs run side by side
    local = is_loopback(host)
    data = Path(data).expanduser()
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = err.strerror or err
        raise UserError(f"cannot keep the app's data in {data} ({reason}): try --data") from None
    work = Path(tempfile.mkdtemp(prefix="torchddsp-app-"))
    allowed = LOOPBACK_NAMES if local else None
    app = create_app(data, work, workers=workers, allowed_hosts=allowed)
    shown = f"[{host}]" if ":" in host else host
    print(f"torchddsp app: open http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops)", flush=True)
    if not local:
        log.warning("listening on %s: anyone who reaches this address can use the app", host)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as err:
        reason = err.strerror or err
        raise UserError(f"cannot serve on {host}:{port} ({reason}): try another --port") from None
    sock.listen(128)
    return sock
