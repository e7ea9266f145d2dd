"""`POST /v1/messages`: the Anthropic Messages API in front of the same pipelines.

The request is mapped to the OpenAI shape (server/anthropic_schemas.py) and answered by
server/chat.py exactly as `/v1/chat/completions` would answer it; the OpenAI answer -- a JSON
body or an SSE stream -- is then mapped back (server/anthropic_format.py). Errors, including
the ones raised before any pipeline runs, are answered in Anthropic's error shape with the
statuses the OpenAI endpoint uses, except that a body that fails validation is a 400 (as in
Anthropic's API) rather than the OpenAI endpoint's 422.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, cast

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from localroute.client.messages import estimate_tokens
from localroute.server.anthropic_format import error_body, message, translate
from localroute.server.anthropic_schemas import CountTokensRequest, MessagesRequest
from localroute.server.chat import answer_chat, observed
from localroute.server.direct import SSE_HEADERS, Outcome
from localroute.server.errors import APIError
from localroute.server.schemas import ChatCompletionRequest, flatten_messages, parse_body
from localroute.server.state import ServerState

log = logging.getLogger("localroute.server")


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.status, exc.message, exc.code), status_code=exc.status,
                        headers=exc.headers)


def _parse(body: bytes, kind: type[MessagesRequest] = MessagesRequest) -> MessagesRequest:
    try:
        parsed: MessagesRequest = parse_body(body, kind)
    except APIError as exc:
        if exc.status == 422:  # a wrong field: Anthropic's API answers 400 for it
            raise APIError(400, exc.message, code=exc.code, param=exc.param) from None
        raise
    return parsed


def _openai(req: MessagesRequest) -> ChatCompletionRequest:
    """The mapped request; checked again by the OpenAI schema, which should accept whatever the
    Anthropic one did -- should it not, the client still gets a 400 naming the field."""
    try:
        return req.to_openai()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{where}: {first['msg']}", code="invalid_value",
                       param=where or None) from None


def _localroute_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-localroute-")}


def to_anthropic(response: Response) -> Response:
    """The OpenAI-shaped answer of server/chat.py, in the Anthropic shape."""
    headers = _localroute_headers(response)
    if isinstance(response, StreamingResponse):
        chunks = cast(AsyncGenerator[bytes, None], response.body_iterator)
        return StreamingResponse(translate(chunks), status_code=response.status_code,
                                 media_type="text/event-stream",
                                 headers={**headers, **SSE_HEADERS})
    if response.status_code != 200:  # e.g. 499, nobody is there to read it
        return response
    completion: dict[str, Any] = json.loads(bytes(response.body))
    return JSONResponse(message(completion), headers=headers)


async def messages(request: Request) -> Response:
    async def work(outcome: Outcome) -> Response:
        req = _parse(await request.body())
        outcome.model = req.model
        return to_anthropic(await answer_chat(state, request, _openai(req), outcome))

    state: ServerState = request.app.state.localroute
    return await _anthropic_errors(request, observed(state, work))


async def count_tokens(request: Request) -> Response:
    """`POST /v1/messages/count_tokens`: the server's own estimate (what admission and the
    governor use), not a tokenizer's exact count."""
    async def work() -> Response:
        req = _parse(await request.body(), CountTokensRequest)
        openai_req = _openai(req)
        tokens = estimate_tokens(flatten_messages(openai_req), openai_req.tools)
        return JSONResponse({"input_tokens": tokens})

    return await _anthropic_errors(request, work())


async def _anthropic_errors(request: Request, work: Awaitable[Response]) -> Response:
    try:
        response = await work
    except APIError as exc:
        return error_response(exc)
    except Exception as exc:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"internal error ({type(exc).__name__}); the "
                                       "server log has the details", code="internal_error"))
    return response
