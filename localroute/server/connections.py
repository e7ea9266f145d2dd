"""The connection layer under the app: uvicorn's h11 protocol with the bounds uvicorn lacks.

What bounds what, and what each relies on (uvicorn 0.5x):

- **Request head size.** h11 keeps an incomplete request head in a buffer and refuses it once
  the buffer passes `max_incomplete_event_size` (set here to `max_header_bytes`); uvicorn
  answers that with a plain 400, this class with 431. The buffer grows by one socket read (at
  most 256 KiB) before the check, so memory stays bounded whatever the client sends. A head
  that arrives whole in one read is measured again by the ASGI guard. uvicorn's default
  protocol, httptools, has no such bound, which is why this one is h11.
- **Request head deadline.** uvicorn's `timeout_keep_alive` restarts on every byte received,
  so a client sending one byte every few seconds keeps a connection forever. A timer armed
  when a connection opens (and after each response) closes it, with 408 if part of a request
  head came, unless a complete request head arrived in time. The body has its own deadline in
  the ASGI guard (`body_timeout_s`).
- **Connections.** A cap overall and per client address, checked when the connection is
  accepted: past it the client gets 503 at once and the connection is closed, so a flood from
  one address does not shut out the others (uvicorn's `limit_concurrency` counts requests and
  connections together and answers only after reading a request head). The overall cap is kept
  below the process's file-descriptor limit, since running out of descriptors stops `accept`
  for everyone. `backlog` (the kernel's queue of connections not yet accepted) is set to the
  same cap in `serve`.

Relies on uvicorn's `H11Protocol` methods `connection_made`, `connection_lost`,
`data_received`, `on_response_complete`, `send_400_response` and `shutdown`, and its `conn`,
`cycle` and `transport` attributes (tests/test_server_http.py exercises each path).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import Counter
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from localroute.server.errors import error_body

log = logging.getLogger("localroute.server")

FD_RESERVE = 64  # descriptors kept for model-server connections, SQLite, logs and psutil
LINGER_S = 2.0  # after an error reply, read and drop what the client still sends, then close


class ConnectionLimits:
    """Open connections overall and per client address, shared by every connection."""

    def __init__(self, *, max_total: int, max_per_client: int, max_header_bytes: int,
                 header_timeout_s: float) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.total = 0
        self.per_client: Counter[str] = Counter()

    def admit(self, client: str) -> str | None:
        """Count a new connection from `client`; the reason it is refused, or None."""
        if self.total >= self.max_total:
            return (f"the server has {self.total} connections open, its limit "
                    "(serve --max-connections); try again shortly")
        if self.per_client[client] >= self.max_per_client:
            return (f"{client} has {self.per_client[client]} connections open, the limit per "
                    "client address (serve --max-connections-per-client); close some")
        self.total += 1
        self.per_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


def descriptor_bound(wanted: int) -> int:
    """`wanted` connections, lowered to fit the process's open-file limit with FD_RESERVE
    to spare."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


def error_reply(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = json.dumps(error_body(status, message, code)).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n")
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


def bounded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with `limits` applied (pass it as `http=`)."""

    class BoundedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = h11.Connection(h11.SERVER,
                                       max_incomplete_event_size=limits.max_header_bytes)
            self._client: str | None = None  # set once the connection is admitted
            self._head_timer: asyncio.TimerHandle | None = None
            self._lingering = False

        # -- connections ---------------------------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
            refusal = limits.admit(client)
            if refusal is not None:
                # Never handed to uvicorn: no state to undo in connection_lost.
                log.info("refused a connection from %s: %s", client, refusal)
                transport.write(error_reply(503, refusal, "too_many_connections"))
                transport.close()
                return
            self._client = client
            super().connection_made(transport)
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._client is None:
                return
            self._cancel_head_timer()
            limits.release(self._client)
            self._client = None
            super().connection_lost(exc)

        def shutdown(self) -> None:
            if self._lingering:
                self.transport.close()
                return
            super().shutdown()

        # -- the request head ----------------------------------------------------------------

        def data_received(self, data: bytes) -> None:
            if self._lingering or self._client is None:
                return  # an error was answered (or the connection refused): dropped
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._cancel_head_timer()  # a whole request head arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self._lingering:
                self._arm_head_timer()  # the next request on this connection gets as long

        def send_400_response(self, msg: str) -> None:
            # h11 refuses a request head: too large (its buffer passed the bound) or malformed.
            if len(self.conn.trailing_data[0]) > limits.max_header_bytes:
                self._refuse(431, f"the request headers are larger than "
                             f"{limits.max_header_bytes} bytes; send fewer or shorter headers "
                             "(or raise serve --max-header-bytes)",
                             "request_header_fields_too_large")
            else:
                self._refuse(400, f"invalid HTTP request ({msg})", "invalid_http")

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(limits.header_timeout_s, self._head_timeout)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being answered; its body has the guard's deadline
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                self._refuse(408, f"the request head did not arrive within "
                             f"{limits.header_timeout_s:g} s (serve --header-timeout)",
                             "request_timeout")
            else:
                self.transport.close()  # idle, or a body nobody reads: nothing to answer

        def _refuse(self, status: int, message: str, code: str) -> None:
            """Answer and close politely: send the reply, stop writing, and drop what the client
            still sends for LINGER_S, so it reads the reply instead of a reset."""
            log.info("%s %s from %s: %s", status, code, self._client, message)
            self._cancel_head_timer()
            self._lingering = True
            self.transport.write(error_reply(status, message, code))
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.transport.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.close)

    return BoundedH11Protocol
