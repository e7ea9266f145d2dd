"""The app factory: one FastAPI app serving one resolved profile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from localroute.client.llm_client import LLMClient
from localroute.config.modes import ModesConfig, load_modes
from localroute.config.schema import ResolvedProfile
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.machine import Orchestrator
from localroute.routing.classifier import RouteClassifier
from localroute.server.errors import install_handlers
from localroute.server.feedback import FeedbackLog
from localroute.server.guards import Guards
from localroute.server.overload import Admission
from localroute.server.routes import register
from localroute.server.settings import ServerSettings
from localroute.server.state import ServerState
from localroute.telemetry.metrics import ServerMetrics


def create_app(
    settings: ServerSettings,
    profile: ResolvedProfile,
    *,
    modes: ModesConfig | None = None,
    client: LLMClient | None = None,
    orchestrator: Orchestrator | None = None,
    classifier: RouteClassifier | None = None,
) -> FastAPI:
    """An OpenAI-compatible app for `profile`; the client is closed when the app shuts down."""
    modes = modes or load_modes()
    client = client or LLMClient(profile)
    orchestrator = orchestrator or build_orchestrator(profile, modes=modes, client=client,
                                                      classifier=classifier)
    state = ServerState(
        settings=settings,
        profile=profile,
        modes=modes,
        client=client,
        orchestrator=orchestrator,
        admission=Admission(client.gates, settings.max_queue),
        metrics=ServerMetrics(client.gates.snapshot),
        feedback=FeedbackLog(settings.feedback_path),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    # No generated docs: the API is OpenAI's, documented in docs/server.md.
    app = FastAPI(title="localroute", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.localroute = state
    install_handlers(app)
    register(app)
    app.add_middleware(Guards, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    return app
