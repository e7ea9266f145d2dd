"""A request for one role (`model: reasoning`, or a configured model id): no routing, no
validation, the client's tools and format passed straight to that role's model."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from localroute.client.messages import estimate_tokens
from localroute.server.disconnect import unless_disconnected
from localroute.server.errors import APIError, from_llm_error
from localroute.server.openai_format import DONE, ChunkWriter, Routing, completion, replay
from localroute.server.overload import Overloaded, Ticket
from localroute.server.pipeline import RequestOptions
from localroute.server.schemas import ChatCompletionRequest
from localroute.server.state import ServerState
from localroute.telemetry.recorder import bind_trace
from localroute.types import LLMError, LLMResponse, ToolCall

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Outcome:
    """What the metrics need once a request is over."""

    route: str = "none"
    role: str = "none"
    status: int = 200
    code: str | None = None  # the error code of a refused or failed request
    model: str | None = None  # what the request asked for
    trace_id: str | None = None
    deferred: bool = False  # a stream records its own outcome when it ends


def _routing(trace_id: str, role: str, model: str) -> Routing:
    return Routing(trace_id=trace_id, route="direct", role=role, model=model,
                   decided_by="request", validation="skipped")


def admit(state: ServerState, role: str | None) -> Ticket:
    """A place for a call to `role`, or (None) for a tool-only answer; 429 when full."""
    try:
        if role is None:
            return state.admission.admit_tools()
        return state.admission.admit(state.profile.role(role))
    except Overloaded as exc:
        state.metrics.reject("overloaded")
        raise APIError(429, str(exc), code="server_overloaded",
                       headers={"Retry-After": str(exc.retry_after)}) from None


async def answer_direct(state: ServerState, request: Request, req: ChatCompletionRequest,
                        role_name: str, messages: list[dict[str, Any]],
                        outcome: Outcome) -> Response:
    mode = state.mode  # one mode for the whole request, even if the governor moves on
    role = state.allowed_role(role_name, mode)
    outcome.role = role.name
    trace_id = outcome.trace_id = uuid.uuid4().hex
    state.govern(prompt_tokens=estimate_tokens(messages, req.tools), role=role.name,
                 trace_id=trace_id)
    options = RequestOptions(tools=req.tools, response_format=req.response_format,
                             temperature=req.temperature,
                             max_tokens=state.token_cap(role.name, req.token_limit, mode),
                             passthrough=req.passthrough())
    ticket = admit(state, role.name)
    if req.stream and options.response_format is None:
        # The ticket is released by the stream when it ends, however it ends.
        return _stream(state, ticket, role.name, messages, options, trace_id,
                       req.include_usage, outcome)
    bind_trace(trace_id)  # the model.call event carries the trace id the client gets
    started = time.perf_counter()
    try:
        response = await unless_disconnected(request, state.client.respond(
            role.name, messages, tools=options.tools, response_format=options.response_format,
            max_tokens=options.max_tokens, temperature=options.temperature,
            extra_body=options.extra_body))
    except LLMError as exc:
        raise from_llm_error(exc) from None
    finally:
        ticket.release(time.perf_counter() - started)
    state.feedback.served(trace_id)
    routing = _routing(trace_id, response.role, response.model)
    if req.stream:  # structured output is produced whole, then sent as one stream
        chunks = replay(routing, response.model, response.content, reasoning=response.reasoning,
                        tool_calls=response.tool_calls, finish_reason=response.finish_reason,
                        usage=response.usage, include_usage=req.include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream",
                                 headers={**routing.headers(), **SSE_HEADERS})
    body = completion(routing, response.model, response.content or None,
                      reasoning=response.reasoning, tool_calls=response.tool_calls,
                      finish_reason=response.finish_reason, usage=response.usage)
    return JSONResponse(body, headers=routing.headers())


def _stream(state: ServerState, ticket: Ticket, role: str, messages: list[dict[str, Any]],
            options: RequestOptions, trace_id: str, include_usage: bool,
            outcome: Outcome) -> StreamingResponse:
    model = state.profile.role(role).id
    routing = _routing(trace_id, role, model)
    writer = ChunkWriter(routing, model)
    state.feedback.served(trace_id)

    async def events() -> AsyncIterator[bytes]:
        started = time.perf_counter()
        status = 200
        code: str | None = None
        bind_trace(trace_id)
        try:
            yield writer.role()
            calls: list[ToolCall] = []
            final: LLMResponse | None = None
            async with aclosing(state.client.stream(
                    role, messages, tools=options.tools, max_tokens=options.max_tokens,
                    temperature=options.temperature,
                    extra_body=options.extra_body)) as stream:
                async for event in stream:
                    if event.type == "content":
                        yield writer.content(event.text)
                    elif event.type in ("reasoning", "note"):
                        # A note ("loading X, ~9 s") travels as reasoning: clients show it as
                        # the model's thinking, never as its answer.
                        yield writer.reasoning(event.text)
                    elif event.type == "tool_call":
                        calls.append(event.call)
                    elif event.type == "done":
                        final = event.response
                    elif event.type == "error":
                        # Headers are gone: the error travels in the stream, then it ends.
                        status, code = 503, "backend_unavailable"
                        yield writer.error(event.error, code)
                        yield DONE
                        return
            if calls:
                yield writer.tool_calls(calls)
            yield writer.finish(final.finish_reason if final else None)
            if include_usage:
                yield writer.usage(final.usage if final else None)
            yield DONE
        except BaseException:
            status = 499  # the client went away (cancelled) or the stream broke
            raise
        finally:
            elapsed = time.perf_counter() - started
            ticket.release(elapsed)
            state.observe(model=outcome.model, route="direct", role=role, status=status,
                          seconds=elapsed, code=code, trace_id=trace_id)

    outcome.deferred = True
    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**routing.headers(), **SSE_HEADERS})
