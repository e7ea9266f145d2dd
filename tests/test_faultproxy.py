"""FaultProxy against a real loopback upstream, observed through a real httpx client."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import httpx
import pytest
from pydantic import ValidationError

from tests.support.faultproxy import Fault, FaultProxy
from tests.support.polling import until


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The proxy closing its upstream connection mid-body (truncate, client hang-up) is
        # expected here; anything else still gets the default traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Upstream:
    """A tiny real HTTP/1.1 server: echo, slow, big, sse and sse-handshake endpoints."""

    def __init__(self) -> None:
        self.hits = 0
        self.lock = threading.Lock()
        self.client_saw_first_event = threading.Event()
        self.released_by_client: bool | None = None
        self.finished_slow = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

            def do_GET(self) -> None:
                self._route()

            def do_POST(self) -> None:
                self._route()

            def do_PUT(self) -> None:
                self._route()

            def _route(self) -> None:
                with upstream.lock:
                    upstream.hits += 1
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length) if length else b""
                if split.path.endswith("/slow"):
                    time.sleep(float(query.get("seconds", "0.3")))
                    with upstream.lock:
                        upstream.finished_slow += 1
                if split.path.endswith("/big"):
                    self._reply(200, b"x" * 10_000, "application/octet-stream")
                elif split.path.endswith("/sse"):
                    self._sse(handshake=query.get("handshake") == "1")
                elif split.path.endswith("/chat-sse"):
                    self._chat_sse()
                else:
                    echo = {
                        "method": self.command,
                        "path": self.path,
                        "body": body.decode(),
                        "host": self.headers.get("Host"),
                        "x_test": self.headers.get("X-Test"),
                    }
                    self._reply(200, json.dumps(echo).encode(), "application/json")

            def _reply(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Upstream", "yes")
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, data: bytes) -> None:
                # http.server has no chunked writer; llama-cpp-python's server streams chunked,
                # so the fake must too. Framing: hex size, CRLF, data, CRLF.
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _sse(self, handshake: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk(b'data: {"n": 1}\n\n')
                if handshake:
                    # Hold the rest until the client has the first event: a buffering proxy
                    # never delivers it, so the wait times out and the flag stays False.
                    got = upstream.client_saw_first_event.wait(timeout=3.0)
                    upstream.released_by_client = got
                for n in (2, 3):
                    self._chunk(b'data: {"n": %d}\n\n' % n)
                self._chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chat_sse(self) -> None:
                # Chat-completion chunks framed as sse-starlette frames them (CRLF CRLF).
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for word in ("one ", "two ", "three"):
                    chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
                    self._chunk(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
                self._chunk(b"data: [DONE]\r\n\r\n")
                self.wfile.write(b"0\r\n\r\n")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as c:
        yield c


def _raw_request(port: int, path: str = "/echo") -> socket.socket:
    """Send one GET on a bare socket (bytes made by h11) to watch how the proxy closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=3.0)
    conn = h11.Connection(h11.CLIENT)
    head = conn.send(h11.Request(method="GET", target=path, headers=[("Host", "proxy")]))
    end = conn.send(h11.EndOfMessage())
    assert head is not None and end is not None
    sock.sendall(head + end)
    return sock


def test_passthrough_get_post_put_on_one_keepalive_connection(
    proxy: FaultProxy, upstream: Upstream, client: httpx.Client
) -> None:
    got = client.get(f"{proxy.url}/echo?a=1", headers={"X-Test": "kept"})
    assert got.status_code == 200
    assert got.headers["x-upstream"] == "yes"
    echo = got.json()
    assert echo["method"] == "GET" and echo["path"] == "/echo?a=1"
    assert echo["x_test"] == "kept"
    assert echo["host"] == upstream.url.removeprefix("http://")

    posted = client.post(f"{proxy.base_url}/chat/completions", json={"messages": ["hi"]})
    assert posted.json()["path"] == "/v1/chat/completions"
    assert json.loads(posted.json()["body"]) == {"messages": ["hi"]}

    big_body = "é" * 100_000
    put = client.put(f"{proxy.url}/echo", content=big_body.encode())
    assert put.json()["body"] == big_body

    assert proxy.requests_total == 3 and upstream.hits == 3
    assert proxy.connections_total == 1, "the three requests should share one connection"
    assert proxy.faults_injected == 0


def test_delay_is_added_before_forwarding(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="delay", seconds=0.4, times=1))
    started = time.monotonic()
    assert client.get(f"{proxy.url}/echo").status_code == 200
    assert time.monotonic() - started >= 0.4
    assert proxy.faults_injected == 1 and proxy.fault is None


def test_drop_closes_without_response(
    proxy: FaultProxy, upstream: Upstream, client: httpx.Client
) -> None:
    proxy.set_fault(Fault(kind="drop"))
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        client.get(f"{proxy.url}/echo")
    with _raw_request(proxy.port) as sock:
        assert sock.recv(1024) == b"", "drop closes with FIN: an orderly EOF"
    assert proxy.requests_total == 2 and proxy.faults_injected == 2
    assert upstream.hits == 0


def test_reset_sends_rst(proxy: FaultProxy, upstream: Upstream, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="reset"))
    with pytest.raises(httpx.ReadError):
        client.get(f"{proxy.url}/echo")
    with _raw_request(proxy.port) as sock, pytest.raises(ConnectionResetError):
        sock.recv(1024)
    assert upstream.hits == 0 and proxy.faults_injected == 2


def test_truncate_cuts_a_content_length_body(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="truncate", after_bytes=100))
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError, match="received 100 bytes"),
        client.stream("GET", f"{proxy.url}/big") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == "10000"
        for chunk in response.iter_raw():
            received += chunk
    assert received == b"x" * 100


def test_truncate_cuts_an_sse_stream_midway(proxy: FaultProxy, client: httpx.Client) -> None:
    first_event = b'data: {"n": 1}\n\n'
    proxy.set_fault(Fault(kind="truncate", after_bytes=len(first_event) + 5))
    lines: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("GET", f"{proxy.url}/sse") as response,
    ):
        lines.extend(response.iter_lines())
    assert lines[0] == 'data: {"n": 1}'
    assert "data: [DONE]" not in lines


@pytest.mark.parametrize(
    ("status", "headers", "error_type"),
    [(500, {}, "server_error"), (503, {}, "server_error"), (429, {"Retry-After": "2"}, None)],
)
def test_status_answers_an_openai_error(
    proxy: FaultProxy,
    upstream: Upstream,
    client: httpx.Client,
    status: int,
    headers: dict[str, str],
    error_type: str | None,
) -> None:
    proxy.set_fault(Fault(kind="status", status=status, headers=headers, times=1))
    response = client.get(f"{proxy.base_url}/models")
    assert response.status_code == status
    for name, value in headers.items():
        assert response.headers[name] == value
    error = response.json()["error"]
    assert str(status) in error["message"]
    assert error["type"] == (error_type or "rate_limit_error")
    assert upstream.hits == 0
    # The connection stays usable and the next request passes through.
    assert client.get(f"{proxy.url}/echo").json()["method"] == "GET"
    assert proxy.connections_total == 1


def test_error_200_mimics_lmstudio_overflow(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="error_200", error_type="context_length_exceeded"))
    response = client.post(f"{proxy.base_url}/chat/completions", json={"messages": []})
    assert response.status_code == 200
    body = response.json()
    assert "choices" not in body
    assert "context the overflows" in body["error"]["message"]
    assert body["error"]["type"] == "context_length_exceeded"


def test_times_applies_exactly_n_then_passes_through(
    proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.set_fault(Fault(kind="status", status=503, times=3))
    codes = [client.get(f"{proxy.url}/echo").status_code for _ in range(5)]
    assert codes == [503, 503, 503, 200, 200]
    assert proxy.faults_injected == 3 and proxy.requests_total == 5
    assert proxy.fault is None


def test_path_contains_limits_the_fault(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="status", status=500, path_contains="/chat/", times=1))
    assert client.get(f"{proxy.base_url}/models").status_code == 200
    assert client.post(f"{proxy.base_url}/chat/completions", json={}).status_code == 500
    assert client.post(f"{proxy.base_url}/chat/completions", json={}).status_code == 200
    assert proxy.faults_injected == 1


def test_clear_and_reset_counters(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="status", status=500))
    assert client.get(f"{proxy.url}/echo").status_code == 500
    proxy.clear()
    assert client.get(f"{proxy.url}/echo").status_code == 200
    assert (proxy.requests_total, proxy.faults_injected) == (2, 1)
    # The proxy counts a request out after its last byte is sent, so the client can hold the
    # answer a moment before that: wait for it, since reset keeps the requests still in flight.
    until(lambda: proxy.in_flight == 0, 5, "the proxy to finish the second request", 0.01)
    proxy.reset_counters()
    assert (proxy.requests_total, proxy.faults_injected, proxy.max_in_flight) == (0, 0, 0)


async def test_in_flight_counts_concurrent_slow_requests(proxy: FaultProxy) -> None:
    n = 4
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as aclient:
        calls = [aclient.get(f"{proxy.url}/slow?seconds=0.6") for _ in range(n)]
        pending = asyncio.gather(*calls)
        seen = 0
        deadline = time.monotonic() + 0.5
        while seen < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            seen = max(seen, proxy.in_flight)
        responses = await pending
    assert seen == n
    assert [r.status_code for r in responses] == [200] * n
    # Each request is counted out after its last byte is sent: the client may be a moment ahead.
    until(lambda: proxy.in_flight == 0, 5, "the proxy to finish the requests", 0.01)
    assert proxy.max_in_flight == n


def test_client_hangup_abandons_the_upstream_call(proxy: FaultProxy, upstream: Upstream) -> None:
    with (
        httpx.Client(timeout=0.2, trust_env=False) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.get(f"{proxy.url}/slow?seconds=1.5")
    deadline = time.monotonic() + 1.0
    while proxy.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.in_flight == 0
    assert upstream.finished_slow == 0, "in_flight fell because the client left, not the upstream"


def test_sse_is_forwarded_event_by_event(
    proxy: FaultProxy, upstream: Upstream, client: httpx.Client
) -> None:
    lines: list[str] = []
    with client.stream("GET", f"{proxy.url}/sse?handshake=1") as response:
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            lines.append(line)
            if line == 'data: {"n": 1}':
                upstream.client_saw_first_event.set()
    assert upstream.released_by_client is True, "first event arrived only after the last"
    assert [x for x in lines if x] == [f'data: {{"n": {n}}}' for n in (1, 2, 3)] + ["data: [DONE]"]


def _chat_words(client: httpx.Client, url: str) -> tuple[list[str], list[float]]:
    words, times = [], []
    with client.stream("GET", url) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                words.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
                times.append(time.monotonic())
    return words, times


def test_trickle_paces_the_events(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="trickle", event_delay=0.2))
    words, times = _chat_words(client, f"{proxy.url}/chat-sse")
    assert words == ["one ", "two ", "three"]
    assert times[-1] - times[0] >= 0.35  # two pauses of 0.2 s between the three events


def test_inject_puts_text_into_one_content_chunk(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_fault(Fault(kind="inject", inject="<|im_end|>", after_events=1))
    words, _ = _chat_words(client, f"{proxy.url}/chat-sse")
    assert words == ["one ", "<|im_end|>two ", "three"]


def test_unreachable_upstream_answers_502(client: httpx.Client) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{placeholder.getsockname()[1]}"
    with FaultProxy(dead) as proxy:
        response = client.get(f"{proxy.url}/echo")
    assert response.status_code == 502
    assert dead in response.json()["error"]["message"]


def test_stop_joins_the_thread_and_closes_the_port(upstream: Upstream) -> None:
    proxy = FaultProxy(upstream.url).start()
    port = proxy.port
    with httpx.Client(trust_env=False) as c:
        assert c.get(f"{proxy.url}/echo").status_code == 200  # leaves a keep-alive connection
        names = {t.name for t in threading.enumerate()}
        assert f"FaultProxy->{upstream.url}" in names
        proxy.stop()
        proxy.stop()  # idempotent
        assert f"FaultProxy->{upstream.url}" not in {t.name for t in threading.enumerate()}
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0)
        with pytest.raises(RuntimeError, match="not running"):
            _ = proxy.url
    with proxy:  # restartable
        assert proxy.port != 0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValidationError, match="kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="seconds > 0"):
        Fault(kind="delay")
    with pytest.raises(ValidationError, match="times"):
        Fault(kind="drop", times=0)
    with pytest.raises(ValidationError, match="status"):
        Fault(kind="status", status=200)
    with pytest.raises(ValueError, match="absolute http"):
        FaultProxy("127.0.0.1:8080")
    with pytest.raises(ValueError, match="no path"):
        FaultProxy("http://127.0.0.1:8080/v1")
    with pytest.raises(TypeError, match="Fault"):
        FaultProxy("http://127.0.0.1:8080").set_fault("drop")  # type: ignore[arg-type]
