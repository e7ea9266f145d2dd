"""One parsed chat request, answered and recorded: shared by the OpenAI endpoint
(`/v1/chat/completions`) and the Anthropic one (`/v1/messages`, which maps its request to the
OpenAI shape first and its answer back afterwards)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from localroute.server.auto import answer_auto
from localroute.server.auto_stream import stream_auto
from localroute.server.direct import Outcome, answer_direct
from localroute.server.disconnect import ClientGone
from localroute.server.errors import APIError
from localroute.server.schemas import ChatCompletionRequest, flatten_messages
from localroute.server.state import AUTO, ServerState

CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection": nobody reads it


async def answer_chat(state: ServerState, request: Request, req: ChatCompletionRequest,
                      outcome: Outcome) -> Response:
    """`auto` (whole or streamed) or the role the model names; an OpenAI-shaped response."""
    outcome.model = req.model
    if req.n != 1:
        raise APIError(400, f"n: only n=1 is supported (got {req.n})", param="n",
                       code="unsupported_value")
    if len(req.messages) > state.settings.max_messages:
        raise APIError(413, f"messages: {len(req.messages)} messages is more than the "
                       f"server's limit of {state.settings.max_messages}; send fewer",
                       param="messages", code="too_many_messages")
    messages = flatten_messages(req)
    target = state.resolve(req.model)
    if target == AUTO:
        answer = stream_auto if req.stream else answer_auto
        return await answer(state, request, req, messages, outcome)
    outcome.route = "direct"
    return await answer_direct(state, request, req, target, messages, outcome)


async def observed(state: ServerState,
                   work: Callable[[Outcome], Awaitable[Response]]) -> Response:
    """Runs `work` and records how the request ended (a stream records its own end)."""
    started = time.perf_counter()
    outcome = Outcome()
    try:
        response = await work(outcome)
        outcome.status = response.status_code
        return response
    except APIError as exc:
        outcome.status, outcome.code = exc.status, exc.code
        raise
    except ClientGone:
        outcome.status = CLIENT_CLOSED
        return Response(status_code=CLIENT_CLOSED)
    except Exception:
        outcome.status = 500
        raise
    finally:
        if not outcome.deferred:
            state.observe(model=outcome.model, route=outcome.route, role=outcome.role,
                          status=outcome.status, seconds=time.perf_counter() - started,
                          code=outcome.code, trace_id=outcome.trace_id)
