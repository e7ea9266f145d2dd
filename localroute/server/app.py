"""The app factory: one FastAPI app serving one resolved profile, governed by one governor."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from localroute.client.llm_client import LLMClient
from localroute.config.modes import ModesConfig, load_modes
from localroute.config.schema import ResolvedProfile
from localroute.dashboard.routes import register as register_dashboard
from localroute.governance.governor import Governor, build_governor
from localroute.governance.homeostasis import Override
from localroute.governance.sensors import RequestWindow
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.machine import Orchestrator
from localroute.residency.view import ResidencyCollector
from localroute.routing.classifier import RouteClassifier
from localroute.server.errors import install_handlers
from localroute.server.feedback import FeedbackLog
from localroute.server.guards import Guards
from localroute.server.overload import Admission
from localroute.server.routes import register
from localroute.server.settings import ServerSettings
from localroute.server.state import RECENT_REQUESTS, ServerState
from localroute.telemetry.metrics import ServerMetrics
from localroute.telemetry.wiring import shared_telemetry

MODE_OPTION_REASON = "localroute serve --mode"


def create_app(
    settings: ServerSettings,
    profile: ResolvedProfile,
    *,
    modes: ModesConfig | None = None,
    client: LLMClient | None = None,
    orchestrator: Orchestrator | None = None,
    classifier: RouteClassifier | None = None,
    governor: Governor | None = None,
) -> FastAPI:
    """An OpenAI-compatible app for `profile`. The governor (sensors, modes, effectors) starts
    with the app and stops with it; the client is closed when the app shuts down."""
    modes = modes or load_modes()
    client = client or LLMClient(profile)
    orchestrator = orchestrator or build_orchestrator(profile, modes=modes, client=client,
                                                      classifier=classifier, roots=settings.roots)
    admission = Admission(client.gates, settings.max_queue, settings.max_tool_requests)
    window = RequestWindow()
    recent: deque[dict[str, Any]] = deque(maxlen=RECENT_REQUESTS)
    if governor is None:
        pinned = None if settings.mode is None else Override(
            mode=settings.mode, reason=MODE_OPTION_REASON, set_at=time.time())
        governor = build_governor(
            client, modes, requests=window, telemetry=shared_telemetry(), override=pinned,
            extra_snapshot=lambda: {"recent_requests": list(recent),
                                    "admitted": admission.admitted(),
                                    "residency": client.residency.snapshot()})
    state = ServerState(
        settings=settings,
        profile=profile,
        modes=modes,
        client=client,
        orchestrator=orchestrator,
        admission=admission,
        metrics=ServerMetrics(client.gates.snapshot),
        feedback=FeedbackLog(settings.feedback_path, max_file_bytes=settings.feedback_max_bytes),
        governor=governor,
        window=window,
        recent=recent,
    )
    state.metrics.registry.register(ResidencyCollector(client.residency))
    active = governor

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await active.start()
        client.residency.preload()  # pinned instances load now, in the background
        dashboard.warm()  # the dashboard's window figures too
        try:
            yield
        finally:
            await active.stop()
            await client.aclose()
            dashboard.close()

    # No generated docs: the API is OpenAI's, documented in docs/server.md.
    app = FastAPI(title="localroute", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.localroute = state
    install_handlers(app)
    register(app)
    dashboard = register_dashboard(app, settings.runs_dir)
    app.add_middleware(Guards, settings=settings)
    return app
