"""OpenAI-style error objects, and the handlers that turn every failure into one.

Clients written against the OpenAI API read `error.message` / `error.type` / `error.code`; a
500 with a traceback would leak internals and break them, so unexpected exceptions are logged
here and answered with a clean error.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from localroute.types import LLMContextOverflow, LLMError, LLMServerError

log = logging.getLogger("localroute.server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    421: "invalid_request_error",
    422: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answered to the client with an HTTP status and an OpenAI error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(status: int, message: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.status, exc.message, exc.code, exc.param),
                        status_code=exc.status, headers=exc.headers)


def from_llm_error(exc: LLMError) -> APIError:
    """A model call that failed: the client's fault (overflow) or the backend's (503)."""
    if isinstance(exc, LLMContextOverflow):
        return APIError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, LLMServerError) and exc.status == 429:
        headers = {"Retry-After": str(max(1, round(exc.retry_after or 1)))}
        return APIError(429, str(exc), code="backend_overloaded", headers=headers)
    return APIError(503, str(exc), code="backend_unavailable")


def _loc(err: dict[str, Any]) -> str:
    parts = [str(p) for p in err.get("loc", ()) if p != "body"]
    return ".".join(parts)


def install_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
        where = _loc(first)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        message = f"{where}: {first.get('msg')}{more}" if where else f"{first.get('msg')}{more}"
        return error_response(APIError(422, message, code="invalid_value", param=where or None))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "no such endpoint; see GET /v1/models, POST /v1/chat/completions"
        return error_response(APIError(exc.status_code, message,
                                       headers=dict(exc.headers or {})))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"internal error ({type(exc).__name__}); the server "
                                       "log has the details", code="internal_error"))

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
