"""The HTTP endpoints: chat completions, Anthropic messages, models, health, readiness,
metrics, feedback."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localroute.backends.health import role_statuses
from localroute.server.anthropic_api import count_tokens, messages
from localroute.server.chat import answer_chat, observed
from localroute.server.direct import Outcome
from localroute.server.errors import APIError
from localroute.server.feedback import FEEDBACK_MAX_BODY, UnknownTrace
from localroute.server.schemas import (
    FEEDBACK_NOTE_CHARS,
    ChatCompletionRequest,
    FeedbackRequest,
    parse_body,
)
from localroute.server.state import AUTO, ServerState
from localroute.telemetry.metrics import CONTENT_TYPE


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.localroute
    return state


async def chat_completions(request: Request) -> Response:
    async def work(outcome: Outcome) -> Response:
        req: ChatCompletionRequest = parse_body(await request.body(), ChatCompletionRequest)
        outcome.model = req.model
        return await answer_chat(state, request, req, outcome)

    state = _state(request)
    return await observed(state, work)


async def list_models(request: Request) -> JSONResponse:
    state = _state(request)
    data: list[dict[str, Any]] = [_model(AUTO, {"kind": "auto", "mode": state.mode.value})]
    for role in state.profile.roles.values():
        data.append(_model(role.name, {"kind": "role", "model": role.id,
                                       "backend": role.backend.value,
                                       "context_length": role.context_length}))
    for model_id, role_name in state.targets.items():
        if model_id not in state.profile.roles:
            data.append(_model(model_id, {"kind": "model", "role": role_name}))
    return JSONResponse({"object": "list", "data": data})


def _model(model_id: str, info: dict[str, Any]) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "localroute",
            "localroute": info}


async def health(request: Request) -> JSONResponse:
    state = _state(request)
    return JSONResponse({"status": "ok", "profile": state.profile.name,
                         "mode": state.mode.value})


async def ready(request: Request) -> JSONResponse:
    state = _state(request)
    # The server's own pool: its traffic spares a busy backend the question (backends/health.py).
    statuses = await role_statuses(state.profile, state.client.pool,
                                   fresh_s=state.modes.homeostasis.health_interval_s)
    is_ready = all(s.reachable for s in statuses)
    body = {"ready": is_ready, "profile": state.profile.name, "mode": state.mode.value,
            "roles": [s.model_dump() for s in statuses]}
    return JSONResponse(body, status_code=200 if is_ready else 503)


async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE)


async def feedback(request: Request) -> JSONResponse:
    state = _state(request)
    body = await request.body()
    if len(body) > FEEDBACK_MAX_BODY:
        raise APIError(413, f"feedback bodies are limited to {FEEDBACK_MAX_BODY} bytes (a note "
                       f"of at most {FEEDBACK_NOTE_CHARS} characters); shorten the note",
                       code="request_too_large")
    entry: FeedbackRequest = parse_body(body, FeedbackRequest)
    try:
        state.feedback.add(entry)
    except UnknownTrace as exc:
        raise APIError(404, str(exc), code="trace_not_found", param="trace_id") from None
    where = f"memory and {state.feedback.path}" if state.feedback.path else "memory"
    return JSONResponse({"ok": True, "trace_id": entry.trace_id, "stored_in": where})


def register(app: FastAPI) -> None:
    app.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.add_api_route("/v1/messages", messages, methods=["POST"])
    app.add_api_route("/v1/messages/count_tokens", count_tokens, methods=["POST"])
    app.add_api_route("/v1/models", list_models, methods=["GET"])
    app.add_api_route("/v1/feedback", feedback, methods=["POST"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/ready", ready, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
