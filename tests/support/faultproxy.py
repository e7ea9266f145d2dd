"""A real fault-injecting HTTP/1.1 proxy that sits between the client under test and a model server.

``FaultProxy`` listens on a free loopback port and forwards every request to one upstream
(e.g. llama-cpp-python's server), streaming the response back as it arrives. A ``Fault`` set at
runtime makes it misbehave the way real servers and networks do: answer late, drop or reset the
connection, cut a response (or an SSE stream) mid-way, answer an error status, or answer
HTTP 200 with an error body as LM Studio does on context overflow.

Why this shape:

- The listening side is asyncio streams driven by **h11**: h11 owns all HTTP/1.1 framing
  (request parsing, Content-Length and chunked bodies, keep-alive and ``Connection: close``,
  HEAD, re-chunking a response whose length is unknown), while the proxy keeps control of the raw
  socket, which the faults need (stop after N body bytes, close with no response, RST).
  A framework server (uvicorn, aiohttp) would hide exactly that socket.
- The upstream side is **httpx**: it pools keep-alive connections to the upstream and yields the
  body as raw, undecoded bytes the moment they arrive (``aiter_raw``), so SSE is forwarded event
  by event and byte counts for ``truncate`` are wire bytes of the body. Writing an h11 client as
  well would duplicate what httpx already does.
- The loop runs in its own thread so synchronous pytest code and async tests running their own
  event loops can use the same proxy; counters and the fault are guarded by a ``threading.Lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from typing import Literal, Self

import h11
import httpx

from tests.support.faultproxy_faults import Fault, FaultKind
from tests.support.faultproxy_sse import SseRewriter

__all__ = ["Fault", "FaultKind", "FaultProxy"]

# What to do with the client connection once a request has been handled.
_After = Literal["keep", "close", "reset"]

# Hop-by-hop headers (RFC 9110 7.6.1) describe one connection, not the message: each side of the
# proxy sets its own. Host and Content-Length are recomputed by httpx for the upstream request.
_HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection proxy-authenticate proxy-authorization te trailer "
    b"transfer-encoding upgrade".split()
)
_REQUEST_DROP = _HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_READ_SIZE = 65536


def _check_upstream(upstream: str) -> str:
    try:
        url = httpx.URL(upstream)
    except httpx.InvalidURL as exc:
        raise ValueError(f"FaultProxy upstream {upstream!r} is not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"FaultProxy upstream {upstream!r} must be an absolute http(s) URL such as "
            "'http://127.0.0.1:8080'"
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise ValueError(
            f"FaultProxy upstream {upstream!r} must have no path or query: request paths are "
            "forwarded as they are, so pass 'http://HOST:PORT' and use proxy.base_url for /v1"
        )
    return str(url.copy_with(path="/")).rstrip("/")


class FaultProxy:
    """A loopback HTTP/1.1 proxy to ``upstream`` whose faults are set at runtime.

    Use as a context manager or with ``start()`` / ``stop()``; point clients at ``base_url``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = _check_upstream(upstream)
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._remaining: int | None = None
        self._requests_total = 0
        self._faults_injected = 0
        self._connections_total = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._startup_error: BaseException | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy is not running: call start() or use it in a with block")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- faults and counters -------------------------------------------------------------------

    def set_fault(self, fault: Fault) -> None:
        """Apply ``fault`` to the following requests (replacing any fault set before)."""
        if not isinstance(fault, Fault):
            raise TypeError(f"set_fault expects a Fault, got {type(fault).__name__}")
        with self._lock:
            self._fault, self._remaining = fault, fault.times

    def clear(self) -> None:
        """Pass every request through unchanged from now on."""
        with self._lock:
            self._fault, self._remaining = None, None

    @property
    def fault(self) -> Fault | None:
        """The fault still in force (None once ``times`` is used up or after ``clear()``)."""
        with self._lock:
            return self._fault

    @property
    def requests_total(self) -> int:
        with self._lock:
            return self._requests_total

    @property
    def faults_injected(self) -> int:
        with self._lock:
            return self._faults_injected

    @property
    def connections_total(self) -> int:
        """Client connections accepted: shows whether clients reuse keep-alive connections."""
        with self._lock:
            return self._connections_total

    @property
    def in_flight(self) -> int:
        """Requests received in full whose response is not finished yet (faulted ones too)."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def reset_counters(self) -> None:
        """Zero every counter; ``max_in_flight`` restarts from the requests in flight now."""
        with self._lock:
            self._requests_total = self._faults_injected = self._connections_total = 0
            self._max_in_flight = self._in_flight

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            self._requests_total += 1
            fault = self._fault
            if fault is None or (fault.path_contains and fault.path_contains not in path):
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining == 0:
                    self._fault, self._remaining = None, None
            self._faults_injected += 1
            return fault

    def _count_in_flight(self, delta: int) -> None:
        with self._lock:
            self._in_flight += delta
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free loopback port and serve from a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("FaultProxy is already running: call stop() before start()")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main(ready)),
            name=f"FaultProxy->{self.upstream}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout=10.0):
            raise RuntimeError("FaultProxy did not start within 10 s")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"FaultProxy failed to start: {self._startup_error}")
        return self

    def stop(self) -> None:
        """Close the listener and every client connection, and join the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10.0)
        if thread.is_alive():
            raise RuntimeError("FaultProxy thread did not stop within 10 s")
        self._thread = self._loop = self._stopping = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _main(self, ready: threading.Event) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            # trust_env=False: a developer's HTTP_PROXY must not reroute loopback traffic.
            # No pool limit, so the proxy never queues and in_flight reflects the client alone.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0, read=None, pool=None),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
                trust_env=False,
            )
            server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self._port = int(server.sockets[0].getsockname()[1])
        except BaseException as exc:
            self._startup_error = exc
            ready.set()
            if self._client is not None:
                await self._client.aclose()
            return
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
            await self._client.aclose()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connections_total += 1
        try:
            await _ClientConnection(self, reader, writer).serve()
        except asyncio.CancelledError:
            # stop() cancels open connections; ending quietly because Python 3.11's start_server
            # calls task.exception() on a cancelled task and logs a spurious traceback.
            pass
        finally:
            self._tasks.discard(task)


class _ClientConnection:
    """One accepted client connection: its h11 state machine and its socket streams."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy, self.reader, self.writer = proxy, reader, writer
        self.h11 = h11.Connection(h11.SERVER)

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:  # cannot happen: serve() starts each cycle before reading
                raise RuntimeError("h11 paused: a request was read before the last was answered")
            self.h11.receive_data(await self.reader.read(_READ_SIZE))

    async def serve(self) -> None:
        after: _After = "close"
        try:
            while isinstance(request := await self.next_event(), h11.Request):
                if self.h11.they_are_waiting_for_100_continue:
                    await self.send(h11.InformationalResponse(status_code=100, headers=[]))
                body = bytearray()
                while not isinstance(part := await self.next_event(), h11.EndOfMessage):
                    if isinstance(part, h11.Data):
                        body += part.data
                after = await self._handle_watching(request, bytes(body))
                # their_state is not DONE when the client sent "Connection: close".
                if after != "keep" or self.h11.our_state is not h11.DONE:
                    break
                if self.h11.their_state is not h11.DONE:
                    break
                self.h11.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            after = "close"  # a broken or malformed client connection has nothing to answer
        finally:
            if after == "reset":
                sock = self.writer.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER on with a zero timeout makes close() send RST, not FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.writer.transport.abort()
            else:
                self.writer.close()
                with contextlib.suppress(ConnectionError):
                    await self.writer.wait_closed()

    async def _handle_watching(self, request: h11.Request, body: bytes) -> _After:
        """Handle one request, abandoning it (and the upstream call) if the client hangs up.

        Without the watch a client that timed out would leave the upstream model generating
        for nobody, which on a 2-core test machine stalls every test that follows.
        """
        handler = asyncio.create_task(self._handle(request, body))
        watcher = asyncio.create_task(self._watch_hangup())
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (handler, watcher):
                task.cancel()
            await asyncio.gather(handler, watcher, return_exceptions=True)
        if handler.cancelled():
            return "close"  # the client hung up first
        if isinstance(handler.exception(), ConnectionError | h11.ProtocolError):
            return "close"  # the client went away while we were writing to it
        return handler.result()  # re-raises anything else: a bug must not pass silently

    async def _watch_hangup(self) -> None:
        """Return when the client closes; bytes of a pipelined next request go to h11's buffer."""
        with contextlib.suppress(ConnectionError):
            while data := await self.reader.read(_READ_SIZE):
                self.h11.receive_data(data)

    async def _handle(self, request: h11.Request, body: bytes) -> _After:
        target = request.target.decode("latin-1")
        if not target.startswith("/"):  # absolute-form, as sent to a forward proxy
            target = httpx.URL(target).raw_path.decode("ascii")
        fault = self.proxy._take_fault(target.split("?", 1)[0])
        self.proxy._count_in_flight(+1)
        try:
            if fault is not None and fault.seconds > 0:
                await asyncio.sleep(fault.seconds)
            kind = fault.kind if fault is not None else None
            if kind == "drop":
                return "close"
            if kind == "reset":
                return "reset"
            if fault is not None and kind in ("status", "error_200", "replace"):
                status = fault.status if kind == "status" else 200
                await self._answer(status, fault.error_body(), fault.headers)
                return "keep"
            limit = fault.after_bytes if fault is not None and kind == "truncate" else None
            sse = fault if kind in ("trickle", "inject") else None
            return await self._forward(request, target, body, limit, sse)
        finally:
            self.proxy._count_in_flight(-1)

    async def _answer(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        await self.send(
            h11.Response(status_code=status, headers=[*headers, *(extra or {}).items()])
        )
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def _forward(
        self, request: h11.Request, target: str, body: bytes, limit: int | None,
        sse: Fault | None = None,
    ) -> _After:
        client, upstream = self.proxy._client, self.proxy.upstream
        assert client is not None
        upstream_request = httpx.Request(
            request.method.decode("ascii"),
            upstream + target,
            headers=[(k, v) for k, v in request.headers if k not in _REQUEST_DROP],
            content=body or None,
        )
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            message = f"FaultProxy could not reach upstream {upstream}: {exc!r}"
            error = {"error": {"message": message, "type": "proxy_error"}}
            await self._answer(502, json.dumps(error).encode())
            return "keep"
        try:
            headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]
            if sse is not None:  # a rewritten body has another length: h11 chunks it
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            reason = response.extensions.get("reason_phrase", b"")
            await self.send(
                h11.Response(status_code=response.status_code, headers=headers, reason=reason)
            )
            if sse is not None:
                rewriter = SseRewriter(sse)
                async for chunk in response.aiter_raw():
                    for event in rewriter.feed(chunk):
                        await self.send(h11.Data(data=event))
                        await asyncio.sleep(sse.event_delay)
                if rest := rewriter.rest():
                    await self.send(h11.Data(data=rest))
                await self.send(h11.EndOfMessage())
                return "keep"
            sent = 0
            async for chunk in response.aiter_raw():
                if limit is not None:
                    chunk = chunk[: limit - sent]
                if chunk:
                    await self.send(h11.Data(data=chunk))
                    sent += len(chunk)
                if limit is not None and sent >= limit:
                    return "close"
            if limit is not None:
                return "close"  # truncate never completes a response, however short
            await self.send(h11.EndOfMessage())
            return "keep"
        except httpx.HTTPError:
            return "close"  # upstream broke mid-body: the client sees the same cut
        finally:
            await response.aclose()
