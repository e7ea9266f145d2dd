"""ASGI middleware in front of every route: what a request must be before any route sees it.

In order: the request head within `max_header_bytes` (431) with one `Authorization`, one
`x-api-key` and one `Host` (400); `Host` naming this server (421: a page that reached it
through another name, DNS rebinding); no cross-origin `Origin` unless allowed (403; allowed
origins get CORS, and their preflight is answered); the API key (401; as `Authorization:
Bearer` or, as Anthropic's clients send it, `x-api-key`); then for POST, PUT and PATCH a JSON
content type (415: a browser's form or text/plain POST needs no preflight) and a body within
`max_body_bytes` (413) that arrives within `body_timeout_s` (408).

Written as plain ASGI rather than Starlette's BaseHTTPMiddleware: that one wraps every response
in a task and a stream, which costs latency on each request and gets in the way of noticing a
client that disconnects mid-stream.

Refusals are OpenAI error objects, except under `/v1/messages` (the Anthropic Messages API),
where they take Anthropic's error shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import socket
from typing import Any

import psutil
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localroute.server.anthropic_format import error_body as anthropic_error_body
from localroute.server.errors import error_body
from localroute.server.settings import (
    ALLOW_HOSTS_ENV,
    ALLOW_ORIGINS_ENV,
    ServerSettings,
    split_host,
)

OPEN_PATHS = frozenset({"/health"})  # liveness probes carry no key
ANTHROPIC_PREFIX = "/v1/messages"  # the Anthropic Messages API: its clients read its errors
UI_PREFIX = "/ui"  # the dashboard: pages a browser opens
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
EXPOSED = ["X-Localroute-Trace-Id", "X-Localroute-Route", "X-Localroute-Role",
           "X-Localroute-Model", "X-Localroute-Decided-By", "X-Localroute-Validation"]


def _literal(address: str) -> str:
    address = address.split("%", 1)[0].lower()  # fe80::1%eth0: the zone is not in Host
    return f"[{address}]" if ":" in address else address


def bound_names(host: str) -> frozenset[str]:
    """The names a client may put in Host for a server bound to `host`: the loopback names,
    and the bound address (every address of this machine for a wildcard bind)."""
    names = set(LOOPBACK_NAMES)
    bare = host.strip("[]").lower()
    if bare in WILDCARDS:
        for addresses in psutil.net_if_addrs().values():
            names.update(_literal(a.address) for a in addresses
                         if a.family in (socket.AF_INET, socket.AF_INET6))
    else:
        names.add(_literal(bare))
    return frozenset(names)


async def send_error(send: Send, status: int, message: str, code: str,
                     headers: list[tuple[bytes, bytes]] | None = None, *,
                     anthropic: bool = False) -> None:
    """An OpenAI-style error (Anthropic-style for the Anthropic API's paths) that also closes
    the connection: a request refused here is one whose client should not carry on as it was."""
    shape = anthropic_error_body if anthropic else error_body
    body = json.dumps(shape(status, message, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guards:
    """The checks above, configured by the server's settings."""

    def __init__(self, app: ASGIApp, *, settings: ServerSettings) -> None:
        self.app = app
        self.key = f"Bearer {settings.api_key}".encode() if settings.api_key else None
        self.secret = settings.api_key.encode() if settings.api_key else b""
        self.max_body = settings.max_body_bytes
        self.max_header = settings.max_header_bytes
        self.body_timeout = settings.body_timeout_s
        self.port = settings.port
        self.names = bound_names(settings.host)
        self.extra_hosts = [h for h in (split_host(n) for n in settings.allow_hosts) if h]
        self.origins = frozenset(o.strip().rstrip("/").lower() for o in settings.allow_origins)
        # CORS for the allowed origins only (others were refused already): preflights are
        # answered and responses carry the Access-Control headers.
        self.checked: ASGIApp = self._checked
        if self.origins:
            self.checked = CORSMiddleware(self._checked, allow_origins=sorted(self.origins),
                                          allow_methods=["GET", "POST"], allow_headers=["*"],
                                          expose_headers=EXPOSED, max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_head(scope)
        if refusal is not None:
            await send_error(send, *refusal, anthropic=_anthropic(scope))
            return
        await self.checked(scope, receive, send)

    def _refuse_head(self, scope: Scope) -> tuple[int, str, str] | None:
        """What is wrong with the request head, as (status, message, code), or None."""
        size = 0
        seen: dict[bytes, bytes] = {}
        repeated: set[bytes] = set()
        for name, value in scope.get("headers", ()):
            size += len(name) + len(value) + 4
            if name in (b"authorization", b"x-api-key", b"host", b"origin"):
                if name in seen:
                    repeated.add(name)
                seen[name] = value
        if size > self.max_header:
            return (431, f"the request headers are {size} bytes, more than the server's limit "
                    f"of {self.max_header} (serve --max-header-bytes)",
                    "request_header_fields_too_large")
        if repeated:
            which = ", ".join(sorted(n.decode().title() for n in repeated))
            return (400, f"more than one {which} header; send each once", "duplicate_header")
        host = seen.get(b"host", b"").decode("latin-1")
        if host and not self._host_allowed(host):
            return (421, f"this server does not answer to the host name '{host}' (a page "
                    "reaching it through another name, as in DNS rebinding, is refused); use "
                    f"http://127.0.0.1:{self.port}, or start it with --allow-host NAME (or "
                    f"{ALLOW_HOSTS_ENV}) to accept that name", "misdirected_request")
        origin = seen.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), host):
            shown = origin.decode("latin-1")
            return (403, f"requests from the web origin '{shown}' are refused: a web page may "
                    f"call this server only when it is started with --allow-origin {shown} "
                    f"(or {ALLOW_ORIGINS_ENV})", "origin_not_allowed")
        return None

    def _host_allowed(self, value: str) -> bool:
        parsed = split_host(value)
        if parsed is None:
            return False
        name, port = parsed
        if name in self.names and (port is None or self.port in (0, port)):
            return True
        return any(name == n and (p is None or p == port) for n, p in self.extra_hosts)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        # Same origin: a page served under the very name and port the request names.
        return bool(host) and origin in (f"http://{host.lower()}", f"https://{host.lower()}")

    def _basic_ok(self, given: bytes) -> bool:
        """HTTP Basic with the API key as the password (any user name)."""
        scheme, _, encoded = given.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            _, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(password, self.secret)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = dict(scope.get("headers", ()))
        anthropic = _anthropic(scope)
        if self.key is not None and scope.get("path") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            page = str(scope.get("path", "")).startswith(UI_PREFIX)
            # `x-api-key: <key>` is how Anthropic's SDKs and Claude Code send the key.
            api_key = headers.get(b"x-api-key")
            if not (hmac.compare_digest(given, self.key)
                    or (api_key is not None and hmac.compare_digest(api_key, self.secret))
                    or (page and self._basic_ok(given))):
                # A browser cannot send a bearer token by itself: the dashboard's pages also
                # take the key as the password of HTTP Basic, which makes the browser ask.
                challenge = b'Basic realm="localroute", charset="UTF-8"' if page else b"Bearer"
                await send_error(send, 401, "missing or wrong API key; send the header "
                                 "'Authorization: Bearer <key>' (or 'x-api-key: <key>')",
                                 "invalid_api_key", [(b"www-authenticate", challenge)],
                                 anthropic=anthropic)
                return
        if scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if kind != b"application/json":
            received = f"'{kind.decode('latin-1')}'" if kind else "no content type"
            await send_error(send, 415, f"the request body must be JSON with 'Content-Type: "
                             f"application/json'; received {received}", "unsupported_media_type",
                             anthropic=anthropic)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(send, anthropic)
            return
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await self._read_body(receive)
        except TimeoutError:
            await send_error(send, 408, f"the request body did not arrive within "
                             f"{self.body_timeout:g} s (serve --body-timeout)", "request_timeout",
                             anthropic=anthropic)
            return
        except _TooLarge:
            await self._too_large(send, anthropic)
            return
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (the handlers read it whole anyway, so a chunked upload over the limit
        is refused before any of it is parsed); None when the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Send, anthropic: bool) -> None:
        await send_error(send, 413, f"the request body is larger than {self.max_body} bytes; "
                         "send fewer or shorter messages", "request_too_large",
                         anthropic=anthropic)


def _anthropic(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith(ANTHROPIC_PREFIX)


class _TooLarge(Exception):
    pass


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
