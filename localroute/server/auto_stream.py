"""`model: auto` with `stream: true`: the orchestrator runs as a task while its answer streams.

The request waits only for routing and admission. A run that ends before that (a tool-only
answer, a refusal, a failure) is answered as a non-streaming one would be, with its HTTP status;
so is a run whose validation policy is `buffer` (it streams nothing until validated). Otherwise
the response opens with the routing summary and carries what the steps put in the channel;
its last chunk holds the verdict (docs/server.md, "Streaming and validation").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from localroute.config.modes import StreamPolicy
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.server.auto import (
    Admitter,
    conclude,
    failure,
    record,
    request_options,
    routing_of,
)
from localroute.server.direct import SSE_HEADERS, Outcome
from localroute.server.disconnect import unless_disconnected
from localroute.server.errors import APIError
from localroute.server.openai_format import DONE, ChunkWriter, Routing
from localroute.server.pipeline import AutoRun, RequestOptions
from localroute.server.schemas import ChatCompletionRequest
from localroute.server.state import ServerState
from localroute.server.stream_steps import Channel, Piece, StreamingSteps, streaming_run
from localroute.validation.window import WindowFailed

VALIDATION_FAILED = "validation_failed"


@dataclass
class LiveRun:
    """One streamed `auto` run: its context, steps and task, and the channel it writes to."""

    state: ServerState
    ctx: ExecutionContext
    run: AutoRun
    steps: StreamingSteps
    task: asyncio.Task[ExecutionContext]
    channel: Channel
    streaming: bool = False  # False: the run has ended (or buffers), answer it whole

    async def pieces(self) -> AsyncIterator[Piece]:
        while (piece := await self.channel.get()) is not None:
            yield piece

    async def end(self) -> ExecutionContext:
        ctx = await self.task
        record(self.state, ctx)
        return ctx

    def error(self, ctx: ExecutionContext) -> APIError:
        """Why a run that had started streaming ended FAILED."""
        if isinstance(ctx.failure, WindowFailed):
            return APIError(422, ctx.error or str(ctx.failure), code=VALIDATION_FAILED)
        return failure(self.run, ctx)

    def stop(self) -> None:
        """The client is gone: cancel the run (its model call and gate slot go with it)."""
        if not self.task.done():
            self.task.cancel()

    def routing(self) -> Routing:
        return routing_of(self.ctx)

    def model(self) -> str:
        response = self.ctx.response
        if response is not None:
            return response.model
        return self.state.profile.role(self.ctx.role).id if self.ctx.role else "auto"


async def start_run(state: ServerState, request: Request, options: RequestOptions,
                    messages: list[dict[str, Any]], requested: StreamPolicy | None,
                    outcome: Outcome) -> LiveRun:
    """Starts the run; returns once it streams, or has ended (tool-only, failed, buffered)."""
    channel = Channel()
    mode = state.mode  # one mode for the whole request, even if the governor moves on
    admitter = Admitter(state, options.tools)
    run = streaming_run(state.orchestrator, mode, channel, requested=requested,
                        options=options, admit=admitter)
    steps = run.steps
    assert isinstance(steps, StreamingSteps)
    ctx = ExecutionContext(messages=messages, mode=mode)
    outcome.trace_id = ctx.trace_id
    task = asyncio.ensure_future(run.orchestrator.run(ctx))

    def ended(_: object) -> None:  # however the run ends, its slot is freed and readers wake
        admitter.release()
        channel.close()

    task.add_done_callback(ended)
    live = LiveRun(state, ctx, run, steps, task, channel)

    async def _finished() -> ExecutionContext:
        return await task

    try:
        first = await unless_disconnected(request, channel.get())
        live.streaming = first is not None and live.steps.streams(ctx)
        if not live.streaming:
            await unless_disconnected(request, _finished())
    except BaseException:
        live.stop()
        raise
    finally:
        outcome.route = ctx.routing.route if ctx.routing else "none"
        outcome.role = ctx.role or "none"
    return live


async def stream_auto(state: ServerState, request: Request, req: ChatCompletionRequest,
                      messages: list[dict[str, Any]], outcome: Outcome) -> Response:
    options = request_options(req)
    requested = req.localroute.validation if req.localroute else None
    live = await start_run(state, request, options, messages, requested, outcome)
    if not live.streaming:
        return conclude(state, req, options, live.run, live.task.result())
    outcome.deferred = True
    routing = live.routing()
    return StreamingResponse(_chunks(live, req, outcome, time.perf_counter()),
                             media_type="text/event-stream",
                             headers={**routing.headers(), **SSE_HEADERS})


async def _chunks(live: LiveRun, req: ChatCompletionRequest, outcome: Outcome,
                  started: float) -> AsyncIterator[bytes]:
    state = live.state
    writer = ChunkWriter(live.routing(), live.model())
    status, code = 200, None
    try:
        # The first chunk carries the routing summary: role and model are decided.
        yield writer.chunk({"role": "assistant", "content": ""},
                           localroute=writer.routing.field())
        async for piece in live.pieces():
            if piece.kind == "content":
                yield writer.content(piece.text)
            elif piece.kind == "reasoning":
                yield writer.reasoning(piece.text)
        ctx = await live.end()
        if ctx.state == TaskState.FAILED:
            # Headers are gone: the error travels in the stream, then it ends.
            error = live.error(ctx)
            status, code = error.status, error.code
            kind = "invalid_response_error" if code == VALIDATION_FAILED else "server_error"
            yield writer.error(error.message, code or "pipeline_failed", kind)
            yield DONE
            return
        state.feedback.served(ctx.trace_id)
        writer.routing = live.routing()  # now with the verdict
        response = ctx.response
        calls = response.tool_calls if response and req.tools else []
        if response is not None and not live.channel.content_sent and not calls \
                and response.content:  # e.g. a tool-only route, or nothing was streamed
            yield writer.content(response.content)
        if calls:
            yield writer.tool_calls(calls)
        finish = "tool_calls" if calls else (response.finish_reason if response else "stop")
        yield writer.finish(finish)
        if req.include_usage:
            yield writer.usage(response.usage if response else None)
        yield DONE
    except BaseException:
        status = 499  # the client went away (cancelled) or the stream broke
        raise
    finally:
        live.stop()
        state.observe(model=outcome.model, route=outcome.route, role=live.ctx.role or "none",
                      status=status, seconds=time.perf_counter() - started, code=code,
                      trace_id=live.ctx.trace_id)
