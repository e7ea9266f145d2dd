"""The dashboard's HTTP side: the page, its static files, its JSON data and its one action.

Everything here sits behind the server's Guards like the API (Host, Origin, API key; a POST
needs a JSON body from the same origin). The page is read-only but for the feedback button,
which records through the function `localroute feedback` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from localroute.config.telemetry import load_telemetry_config
from localroute.dashboard.cache import WindowCache
from localroute.dashboard.panels import now_panel, request_view, residency_timeline
from localroute.dashboard.runs import list_runs, report_path
from localroute.dashboard.series import WINDOWS, window_seconds
from localroute.server.errors import APIError
from localroute.server.schemas import FEEDBACK_NOTE_CHARS
from localroute.telemetry.queries import record_feedback
from localroute.telemetry.store import EventStore
from localroute.telemetry.wiring import shared_telemetry

log = logging.getLogger("localroute.dashboard")

STATIC = resources.files("localroute.dashboard") / "static"
STATIC_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
FEEDBACK_BODY_BYTES = 16 * 1024
# The page runs only its own scripts (an answer holding <script> is text, and could not run
# even if it reached the DOM as markup); plotly sets inline styles. No framing (the feedback
# button cannot be clickjacked), no form posts, no external connections.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
# A run's report.html is self-contained (inline CSS and SVG): it needs no script at all.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}


@dataclass
class Dashboard:
    """What the dashboard's routes share: the telemetry store (None when telemetry is off or
    unreachable, with the reason), the window figures, and the runs directory. The store is the
    process's shared one, which `serve` records into: the dashboard never opens a second engine
    on the same database, and leaves closing it to its owner."""

    runs_dir: Path
    store: EventStore | None = None
    store_error: str | None = None
    cache: WindowCache | None = None
    opened: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    warming: asyncio.Task[None] | None = None

    def warm(self) -> None:
        """Compute every window's figures now, in the background, so that the page's first poll
        after start-up finds them ready (a week of events takes seconds to read)."""
        self.warming = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        if await self.telemetry() is None or self.cache is None:
            return  # the page says why (store_error) at its first poll
        for window in WINDOWS:
            # A failure here is the page's to report at its first poll, which computes again.
            with contextlib.suppress(Exception):
                await self.cache.get(window)

    async def telemetry(self) -> EventStore | None:
        async with self.lock:
            if not self.opened:
                self.opened = True
                try:
                    self.store = await asyncio.to_thread(_shared_store)
                except (ConnectionError, ValueError, OSError) as exc:
                    # OSError: the state directory cannot be created or made private.
                    self.store_error = str(exc)
                if self.store is None and self.store_error is None:
                    self.store_error = ("telemetry is off (telemetry.enabled: false or "
                                        "LOCALROUTE_TELEMETRY=0): the charts need it")
                if self.store is not None:
                    self.cache = WindowCache(self.store)
        return self.store

    def close(self) -> None:
        if self.warming is not None:
            self.warming.cancel()


def _shared_store() -> EventStore | None:
    """The store of the process-wide recorder; None when telemetry is off."""
    config = load_telemetry_config()
    if not config.telemetry.enabled:
        return None
    shared = shared_telemetry(config)
    if shared is None:
        raise ConnectionError(f"the telemetry store {config.telemetry.resolved_url()} cannot "
                              "be reached (serve said why when it started); the charts need it")
    return shared.store


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(min_length=6, max_length=32, pattern=r"^[0-9a-fA-F]+$")
    verdict: str = Field(pattern=r"^(good|bad)$")
    note: str | None = Field(default=None, max_length=FEEDBACK_NOTE_CHARS)


def _dash(request: Request) -> Dashboard:
    dash: Dashboard = request.app.state.dashboard
    return dash


def _json(body: Any) -> JSONResponse:
    return JSONResponse(body, headers=HEADERS)


async def _store(request: Request) -> EventStore:
    dash = _dash(request)
    store = await dash.telemetry()
    if store is None:
        raise APIError(503, f"the dashboard cannot read telemetry: {dash.store_error}",
                       code="telemetry_unavailable")
    return store


def _window(request: Request) -> str:
    name = request.query_params.get("window", "day")
    try:
        window_seconds(name)
    except ValueError as exc:
        raise APIError(400, str(exc), param="window", code="invalid_window") from None
    return name


async def page(_: Request) -> Response:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={**HEADERS, "Content-Security-Policy": PAGE_CSP,
                             "X-Frame-Options": "DENY"})


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    kind = STATIC_FILES.get(name)
    if kind is None:
        raise APIError(404, f"/ui/static/{name} does not exist", code="not_found")
    return Response((STATIC / name).read_bytes(), media_type=kind, headers=HEADERS)


async def plotly_js(_: Request) -> Response:
    # Served from the installed plotly wheel, so the page works offline with no CDN.
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    return FileResponse(path, media_type="text/javascript",
                        headers={"X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "max-age=86400"})


async def now(request: Request) -> JSONResponse:
    state = request.app.state.localroute
    store = await _dash(request).telemetry()
    snapshot = state.governor.snapshot()
    body = await asyncio.to_thread(now_panel, snapshot, store)
    body["telemetry_error"] = _dash(request).store_error
    return _json(body)


async def overview_data(request: Request) -> JSONResponse:
    window = _window(request)
    await _store(request)
    cache = _dash(request).cache
    assert cache is not None
    return _json(await cache.get(window))


async def residency_data(request: Request) -> JSONResponse:
    seconds, _step = window_seconds(_window(request))
    store = await _store(request)
    return _json(await asyncio.to_thread(residency_timeline, store, seconds))


async def trace_data(request: Request) -> JSONResponse:
    store = await _store(request)
    try:
        body = await asyncio.to_thread(request_view, store, request.path_params["trace_id"])
    except ValueError as exc:
        raise APIError(404, str(exc), param="trace_id", code="trace_not_found") from None
    return _json(body)


async def evaluations(request: Request) -> JSONResponse:
    return _json(await asyncio.to_thread(list_runs, _dash(request).runs_dir))


async def report(request: Request) -> Response:
    run = request.path_params["run"]
    path = report_path(_dash(request).runs_dir, run)
    if path is None:
        raise APIError(404, f"no report.html for run '{run}' under the runs directory "
                       f"{_dash(request).runs_dir}", code="not_found")
    return FileResponse(path, media_type="text/html; charset=utf-8",
                        headers={**HEADERS, "Content-Security-Policy": REPORT_CSP})


async def feedback(request: Request) -> JSONResponse:
    body = await request.body()
    if len(body) > FEEDBACK_BODY_BYTES:
        raise APIError(413, f"feedback bodies are limited to {FEEDBACK_BODY_BYTES} bytes (a note "
                       f"of at most {FEEDBACK_NOTE_CHARS} characters); shorten the note",
                       code="request_too_large")
    try:
        entry = FeedbackBody.model_validate_json(body)
    except ValueError as exc:
        raise APIError(422, f"feedback: {exc}; send {{\"trace_id\": \"<hex>\", \"verdict\": "
                       "\"good\" or \"bad\", \"note\": \"...\"}", code="invalid_feedback") from None
    store = await _store(request)
    try:
        full = await asyncio.to_thread(record_feedback, store, entry.trace_id, entry.verdict,
                                       entry.note or None)
    except ValueError as exc:
        raise APIError(404, str(exc), param="trace_id", code="trace_not_found") from None
    return _json({"ok": True, "trace_id": full, "verdict": entry.verdict})


def register(app: FastAPI, runs_dir: Path) -> Dashboard:
    dash = Dashboard(runs_dir=runs_dir)
    app.state.dashboard = dash
    app.add_api_route("/ui", page, methods=["GET"])
    app.add_api_route("/ui/", page, methods=["GET"])
    app.add_api_route("/ui/static/plotly.min.js", plotly_js, methods=["GET"])
    app.add_api_route("/ui/static/{name}", static, methods=["GET"])
    app.add_api_route("/ui/api/now", now, methods=["GET"])
    app.add_api_route("/ui/api/overview", overview_data, methods=["GET"])
    app.add_api_route("/ui/api/residency", residency_data, methods=["GET"])
    app.add_api_route("/ui/api/trace/{trace_id}", trace_data, methods=["GET"])
    app.add_api_route("/ui/api/evaluations", evaluations, methods=["GET"])
    app.add_api_route("/ui/api/feedback", feedback, methods=["POST"])
    app.add_api_route("/ui/runs/{run:path}/report.html", report, methods=["GET"])
    return dash
