"""ASGI middleware in front of every route: the API key and the request body size limit.

Written as plain ASGI rather than Starlette's BaseHTTPMiddleware: that one wraps every response
in a task and a stream, which costs latency on each request and gets in the way of noticing a
client that disconnects mid-stream.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localroute.server.errors import error_body

OPEN_PATHS = frozenset({"/health"})  # liveness probes carry no key


async def _send_error(send: Send, status: int, message: str, code: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error_body(status, message, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guards:
    """Checks `Authorization: Bearer KEY` (constant-time) and caps the body size."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.key = f"Bearer {api_key}".encode() if api_key else None
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope.get("headers", ()))
        if self.key is not None and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.key):
                await _send_error(send, 401, "missing or wrong API key; send the header "
                                  "'Authorization: Bearer <key>'", "invalid_api_key",
                                  [(b"www-authenticate", b"Bearer")])
                return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(send)
            return
        # Read the body here (the handlers read it whole anyway) so a chunked upload that
        # exceeds the limit is refused before any of it is parsed.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send) -> None:
        await _send_error(send, 413, f"the request body is larger than {self.max_body} bytes; "
                          "send fewer or shorter messages", "request_too_large")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            out: dict[str, Any] = {"type": "http.request", "body": body, "more_body": False}
            return out
        # After the body, the original channel reports the client's disconnect.
        return await receive()

    return replay
