"""`model: auto`: the whole routed pipeline, answered (or streamed) once it has decided."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from localroute.client.messages import estimate_tokens
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.server.direct import SSE_HEADERS, Outcome, admit
from localroute.server.disconnect import unless_disconnected
from localroute.server.errors import APIError, from_llm_error
from localroute.server.openai_format import Routing, completion, replay
from localroute.server.overload import Ticket
from localroute.server.pipeline import AutoRun, RequestOptions, auto_run
from localroute.server.schemas import ChatCompletionRequest
from localroute.server.state import AUTO, ServerState
from localroute.types import LLMError

S = TaskState


class Admitter:
    """Admits the request once the pipeline has chosen its role: the governor's mode first
    (503), then gate room (429). A tool-only answer needs no model and passes no governor, but
    is admitted too: a bounded number run at once (429 past it)."""

    def __init__(self, state: ServerState, tools: list[dict[str, Any]] | None) -> None:
        self.state = state
        self.tools = tools
        self.ticket: Ticket | None = None
        self.started = time.perf_counter()

    def __call__(self, ctx: ExecutionContext) -> None:
        if ctx.role is None:  # TOOL_ONLY_EXECUTION
            self.ticket = admit(self.state, None)
            return
        self.state.govern(prompt_tokens=estimate_tokens(ctx.messages, self.tools),
                          role=ctx.role, trace_id=ctx.trace_id)
        self.ticket = admit(self.state, ctx.role)

    def release(self) -> None:
        if self.ticket is not None:
            self.ticket.release(time.perf_counter() - self.started)


def _failure(ctx: ExecutionContext) -> APIError:
    """The HTTP status of a pipeline that ended FAILED: by the exception that failed it (a model
    call's), else by the state it failed in."""
    failed_in = ctx.steps[-1].state if ctx.steps else S.INIT
    reason = ctx.error or "the pipeline failed"
    if isinstance(ctx.failure, LLMError):
        return from_llm_error(ctx.failure)
    if failed_in == S.INIT:
        return APIError(400, reason, code="invalid_messages", param="messages")
    if failed_in == S.MODEL_SELECTION:
        return APIError(503, reason, code="mode_refused")
    if failed_in == S.LLM_CALL:
        return APIError(503, reason, code="backend_unavailable")
    return APIError(500, reason, code="pipeline_failed")


def routing_of(ctx: ExecutionContext) -> Routing:
    summary = ctx.summary()
    details = {k: summary[k] for k in ("confidence", "tool", "mode", "downgraded_from",
                                       "substituted_for",
                                       "validation_failures", "fallbacks", "tools_used",
                                       "llm_calls", "total_ms")}
    return Routing(trace_id=ctx.trace_id, route=summary["route"] or "none", role=ctx.role,
                   model=summary["model"], decided_by=summary["decided_by"] or "none",
                   validation=ctx.validation, details=details)


def request_options(req: ChatCompletionRequest) -> RequestOptions:
    return RequestOptions(tools=req.tools, response_format=req.response_format,
                          temperature=req.temperature, max_tokens=req.token_limit,
                          passthrough=req.passthrough())


def record(state: ServerState, ctx: ExecutionContext) -> None:
    """The pipeline counters of the metrics, once a run has ended."""
    routing_decision = ctx.routing
    failed_rounds = ctx.validation_attempts - (ctx.validation in ("passed", "passed_after_retry"))
    state.metrics.record_pipeline(
        bypass=bool(routing_decision and routing_decision.tool_call and ctx.llm_calls == 0
                    and ctx.role is None),
        escalated=bool(routing_decision and routing_decision.escalated),
        failed_rounds=max(0, failed_rounds))


def failure(run: AutoRun, ctx: ExecutionContext) -> APIError:
    """What a FAILED run answers: a refusal of admission as it was, else by its state."""
    return run.steps.refusal or _failure(ctx)


async def answer_auto(state: ServerState, request: Request, req: ChatCompletionRequest,
                      messages: list[dict[str, Any]], outcome: Outcome) -> Response:
    options = request_options(req)
    mode = state.mode  # one mode for the whole request, even if the governor moves on
    admitter = Admitter(state, req.tools)
    run = auto_run(state.orchestrator, options, mode, admitter)
    ctx = ExecutionContext(messages=messages, mode=mode)
    outcome.trace_id = ctx.trace_id
    try:
        ctx = await unless_disconnected(request, run.orchestrator.run(ctx))
    finally:
        admitter.release()
        outcome.route = ctx.routing.route if ctx.routing else "none"
        outcome.role = ctx.role or "none"
    return conclude(state, req, options, run, ctx)


def conclude(state: ServerState, req: ChatCompletionRequest, options: RequestOptions,
             run: AutoRun, ctx: ExecutionContext) -> Response:
    """The answer of a finished run, whole or as a replayed stream."""
    record(state, ctx)
    if ctx.state == S.FAILED:
        raise failure(run, ctx)
    state.feedback.served(ctx.trace_id)
    routing = routing_of(ctx)
    response = ctx.response if ctx.role is not None else None
    model = response.model if response else AUTO
    calls = response.tool_calls if response and options.tools else []
    content = ctx.reply if ctx.reply or not calls else None
    finish = "tool_calls" if calls else (response.finish_reason if response else "stop")
    reasoning = response.reasoning if response else None
    if req.stream:
        chunks = replay(routing, model, content, reasoning=reasoning, tool_calls=calls,
                        finish_reason=finish, usage=response.usage if response else None,
                        include_usage=req.include_usage)
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={**routing.headers(), **SSE_HEADERS})
    body = completion(routing, model, content, reasoning=reasoning, tool_calls=calls,
                      finish_reason=finish, usage=response.usage if response else None)
    return JSONResponse(body, headers=routing.headers())
