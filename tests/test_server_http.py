"""The HTTP edge of `localroute serve` against browsers and misbehaving clients (issue 11):
DNS rebinding, cross-origin pages, no-preflight POSTs, slow and oversized requests, bodies that
cannot be decoded, duplicate credentials and how the API key is given. A real `serve`
subprocess each time, driven by raw sockets and httpx where an SDK could not misbehave.

No model answers here: the profile's model server is a dead port, and the answers these tests
need come from tools ("what time is it"), which need no model.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.servers import free_port
from tests.test_server import Serve, write_config

TOOL_QUESTION = {"model": "auto", "messages": [{"role": "user", "content": "what time is it"}]}


@pytest.fixture(scope="module")
def dead_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return write_config(tmp_path_factory.mktemp("http") / "models.yaml", dead)


@pytest.fixture(scope="module")
def plain(dead_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    feedback = tmp_path_factory.mktemp("feedback") / "feedback.jsonl"
    server = Serve(dead_config, "--header-timeout", "2", "--body-timeout", "2",
                   "--feedback-file", str(feedback), "--feedback-max-bytes", "2048")
    yield server
    server.stop()


def exchange(port: int, request: bytes, *, source: str = "127.0.0.1",
             timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes and read the response until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def post(server: Serve, body: bytes, content_type: str = "application/json",
         **headers: str) -> httpx.Response:
    return httpx.post(server.base_url + "/chat/completions", content=body, timeout=30,
                      headers={"content-type": content_type, **headers})


def code(response: httpx.Response) -> str:
    error: dict[str, Any] = response.json()["error"]
    return str(error["code"])


# ---- the browser ---------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example",
                                  "localhost.:{port}", "127.0.0.1:1", "[::1"])
def test_a_foreign_host_name_is_misdirected(plain: Serve, host: str) -> None:
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 calls the
    # server as same-origin; only the Host header shows the name the browser used.
    response = httpx.get(plain.base_url + "/models",
                         headers={"host": host.format(port=plain.port)})
    assert response.status_code == 421, response.text
    assert code(response) == "misdirected_request"
    assert "--allow-host" in response.json()["error"]["message"]
    answered = post(plain, json.dumps(TOOL_QUESTION).encode(), host=host.format(port=plain.port))
    assert answered.status_code == 421 and "choices" not in answered.text


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}",
                                  "LOCALHOST", "127.0.0.1"])
def test_the_bound_address_is_answered_as_clients_write_it(plain: Serve, host: str) -> None:
    response = httpx.get(plain.base_url + "/models", headers={"host": host.format(port=plain.port)})
    assert response.status_code == 200, response.text


def test_cross_origin_pages_are_refused_and_same_origin_is_not(plain: Serve) -> None:
    refused = httpx.get(plain.base_url + "/models", headers={"origin": "http://evil.example"})
    assert refused.status_code == 403 and code(refused) == "origin_not_allowed"
    assert "--allow-origin http://evil.example" in refused.json()["error"]["message"]
    assert "access-control-allow-origin" not in refused.headers
    # A no-preflight POST from a page (text/plain, as fetch sends a string) is refused by its
    # Origin before its body is even read.
    simple = post(plain, json.dumps(TOOL_QUESTION).encode(), "text/plain",
                  origin="https://evil.example")
    assert simple.status_code == 403 and "choices" not in simple.text
    same = httpx.get(plain.base_url + "/models", headers={"origin": plain.url})
    assert same.status_code == 200


@pytest.mark.parametrize(("content_type", "shown"), [
    ("text/plain", "'text/plain'"), ("text/plain;charset=UTF-8", "'text/plain'"),
    ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
    ("multipart/form-data; boundary=x", "'multipart/form-data'"), ("", "no content type")])
def test_post_bodies_must_be_json(plain: Serve, content_type: str, shown: str) -> None:
    # The three content types a page may POST cross-origin without a CORS preflight.
    response = post(plain, json.dumps(TOOL_QUESTION).encode(), content_type)
    assert response.status_code == 415, response.text
    assert code(response) == "unsupported_media_type" and shown in response.text
    assert "choices" not in response.text
    ok = post(plain, json.dumps(TOOL_QUESTION).encode(), "application/json; charset=utf-8")
    assert ok.status_code == 200 and ok.json()["localroute"]["route"] == "tool"


@pytest.fixture(scope="module")
def keyed(dead_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    key_file = tmp_path_factory.mktemp("key") / "key"
    key_file.write_text("s3cret-from-file\n")
    key_file.chmod(0o600)
    server = Serve(dead_config, "--api-key-file", str(key_file), "--allow-origin",
                   "http://localhost:3000", env={"LOCALROUTE_ALLOW_HOSTS": "proxy.example"})
    yield server
    server.stop()


def test_allowed_origin_gets_cors_and_its_preflight_is_answered(keyed: Serve) -> None:
    origin = "http://localhost:3000"
    preflight = httpx.options(keyed.base_url + "/chat/completions", headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    answer = httpx.post(keyed.base_url + "/chat/completions", json=TOOL_QUESTION, timeout=30,
                        headers={"origin": origin, "authorization": "Bearer s3cret-from-file"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert "x-localroute-trace-id" in answer.headers["access-control-expose-headers"].lower()
    other = httpx.options(keyed.base_url + "/chat/completions", headers={
        "origin": "http://localhost:4000", "access-control-request-method": "POST"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


def test_a_configured_host_name_is_answered(keyed: Serve) -> None:
    auth = {"authorization": "Bearer s3cret-from-file"}
    for host in ("proxy.example", "proxy.example:443", f"proxy.example:{keyed.port}"):
        response = httpx.get(keyed.base_url + "/models", headers={"host": host, **auth})
        assert response.status_code == 200, (host, response.text)
    other = httpx.get(keyed.base_url + "/models", headers={"host": "other.example", **auth})
    assert other.status_code == 421


def test_the_key_file_is_the_key(keyed: Serve) -> None:
    assert next(m.id for m in keyed.client("s3cret-from-file").models.list()) == "auto"
    wrong = httpx.get(keyed.base_url + "/models", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "warning" not in keyed.output()  # no key on the command line, nothing to warn of


@pytest.mark.parametrize("values", [("Bearer s3cret-from-file", "Bearer nope"),
                                    ("Bearer nope", "Bearer s3cret-from-file"),
                                    ("Bearer s3cret-from-file", "Bearer s3cret-from-file")])
def test_two_authorization_headers_are_refused(keyed: Serve, values: tuple[str, str]) -> None:
    # Raw bytes: HTTP clients merge or drop repeated headers; a proxy and the server might each
    # read a different one.
    head = (f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{keyed.port}\r\n"
            f"Authorization: {values[0]}\r\nAuthorization: {values[1]}\r\n"
            "Connection: close\r\n\r\n").encode()
    status, _, body = exchange(keyed.port, head)
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "duplicate_header"


def test_a_key_file_others_can_read_is_refused(dead_config: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret")
    key_file.chmod(0o644)
    server = Serve(dead_config, "--api-key-file", str(key_file), wait=False)
    try:
        assert server.proc.wait(60) == 2
        out = server.output()
    finally:
        server.stop()
    assert str(key_file) in out and "chmod 600" in out and "0644" in out


def test_a_key_on_the_command_line_is_warned_about(dead_config: Path) -> None:
    server = Serve(dead_config, "--api-key", "visible-in-ps")
    try:
        ok = httpx.get(server.base_url + "/models",
                       headers={"authorization": "Bearer visible-in-ps"})
        assert ok.status_code == 200
        out = server.output()
    finally:
        server.stop()
    assert "warning: --api-key on the command line" in out and "LOCALROUTE_API_KEY" in out
    assert "--api-key-file" in out


# ---- bodies that cannot be decoded ------------------------------------------------------------

def _chat_with(fragment: bytes) -> bytes:
    return b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "x": ' + \
        fragment + b"}"


UNDECODABLE = [
    # Python refuses int() of more than 4300 digits: json.loads raised ValueError -> 500.
    ("5000-digit integer", _chat_with(b"9" * 5000)),
    # json.loads recursed into RecursionError -> 500 and a long traceback.
    ("deep nesting", _chat_with(b"[" * 100_000 + b"]" * 100_000)),
    ("invalid UTF-8", _chat_with(b'"\xff\xfe"')),
    ("lone surrogate", _chat_with(b'"\\ud800"')),
    ("NaN", _chat_with(b"NaN")),
    ("Infinity", _chat_with(b"-Infinity")),
    ("truncated", b'{"model": "auto", "messages": ['),
]


@pytest.mark.parametrize(("kind", "body"), UNDECODABLE, ids=[u[0] for u in UNDECODABLE])
def test_undecodable_bodies_are_400_without_a_traceback(plain: Serve, kind: str,
                                                        body: bytes) -> None:
    response = post(plain, body)
    assert response.status_code == 400, response.text
    assert code(response) == "invalid_json"
    assert "Traceback" not in plain.output()


def test_nesting_within_the_bound_is_still_parsed(plain: Serve) -> None:
    response = post(plain, json.dumps({**TOOL_QUESTION, "x": [[[[[[[[[[1]]]]]]]]]]}).encode())
    assert response.status_code == 200


# ---- slow and oversized requests ----------------------------------------------------------

def test_a_trickled_request_head_is_cut_at_its_deadline(plain: Serve) -> None:
    started = time.monotonic()  # before the connection: the server's clock starts at accept
    with socket.create_connection(("127.0.0.1", plain.port), timeout=60) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        took = time.monotonic() - started
    status, _, body = parse_response(data)
    assert status == 408 and b"--header-timeout" in body
    assert took >= 2.0  # the deadline given to this server; no upper bound on a busy machine


def test_a_trickled_body_is_cut_at_its_deadline(plain: Serve) -> None:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{plain.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
    with socket.create_connection(("127.0.0.1", plain.port), timeout=60) as sock:
        started = time.monotonic()
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        took = time.monotonic() - started
    status, _, body = parse_response(data)
    assert status == 408 and b"--body-timeout" in body
    assert took >= 2.0


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_a_200_mib_header_is_refused_without_holding_it(plain: Serve) -> None:
    pid = plain.proc.pid
    before = _rss(pid)
    peak = before
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, _rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    chunk = b"a" * (1 << 20)
    sent = 0
    reply = b""
    try:
        with socket.create_connection(("127.0.0.1", plain.port), timeout=30) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            waiting = selectors.DefaultSelector()
            waiting.register(sock, selectors.EVENT_READ)
            try:
                while sent < 200 << 20 and not waiting.select(timeout=0):
                    sock.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            while data := sock.recv(65536):
                reply += data
    finally:
        sampling = False
        sampler.join()
    status, _, body = parse_response(reply)
    assert status == 431 and b"--max-header-bytes" in body
    assert sent < 200 << 20  # refused long before the client was done
    # Holding the header would add at least 200 MiB; the bound is 64 KiB plus one socket read
    # (256 KiB), and 50 MiB leaves room for whatever else the process allocates meanwhile.
    assert peak - before < 50 << 20, f"server memory grew by {(peak - before) >> 20} MiB"


def _open_files(limit: int) -> Any:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    return apply


def test_slow_clients_do_not_shut_out_the_others(dead_config: Path) -> None:
    """200 clients trickling request heads from one address: the server caps them at
    --max-connections-per-client (default 64), answers the rest 503 at once, cuts the held ones
    at --header-timeout (default 10 s), and a client at another address is answered all along.
    The server runs with 200 open files, as on a machine with a low `ulimit -n` (macOS: 256),
    where 245 such clients used to exhaust its descriptors and stop `accept` for everyone."""
    server = Serve(dead_config, preexec=_open_files(200))
    slow: list[socket.socket] = []
    try:
        assert "--max-connections lowered" in server.output()
        opened = time.monotonic()
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30,
                                            source_address=("127.0.0.2", 0))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            slow.append(sock)
        # Another client, meanwhile: answered, with a tool's answer too.
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
        answer = server.client().chat.completions.create(**TOOL_QUESTION)
        assert (answer.model_extra or {})["localroute"]["route"] == "tool"

        replies: dict[int, bytes] = {}
        closed_at: dict[int, float] = {}
        deadline = time.monotonic() + 90
        while len(closed_at) < len(slow) and time.monotonic() < deadline:
            for i, sock in enumerate(slow):
                if i in closed_at:
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    try:
                        sock.send(b"a")  # one more byte of the header, every half second
                    except OSError:
                        closed_at[i] = time.monotonic()
                    continue
                except OSError:
                    closed_at[i] = time.monotonic()
                    continue
                replies[i] = replies.get(i, b"") + data
                if not data:
                    closed_at[i] = time.monotonic()
            time.sleep(0.5)
        assert len(closed_at) == len(slow), "slow clients were never cut off"
        statuses = [parse_response(replies[i])[0] if replies.get(i) else None
                    for i in range(len(slow))]
        assert statuses.count(503) == 200 - 64 and statuses.count(408) == 64, statuses
        held = [closed_at[i] - opened for i, s in enumerate(statuses) if s == 408]
        assert min(held) >= 10.0  # cut at the deadline, not before
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
    finally:
        for sock in slow:
            sock.close()
        server.stop()


# ---- feedback ------------------------------------------------------------------------------

def _trace(server: Serve) -> str:
    answer = httpx.post(server.base_url + "/chat/completions", json=TOOL_QUESTION, timeout=30)
    return str(answer.headers["x-localroute-trace-id"])


def test_feedback_only_for_answered_traces_and_bounded(plain: Serve, tmp_path: Path) -> None:
    url = plain.base_url + "/feedback"
    unknown = httpx.post(url, json={"trace_id": "0" * 32, "rating": 1})
    assert unknown.status_code == 404 and code(unknown) == "trace_not_found"
    assert "0" * 32 in unknown.json()["error"]["message"]
    trace = _trace(plain)
    huge = httpx.post(url, json={"trace_id": trace, "rating": 1, "note": "x" * 100_000})
    assert huge.status_code == 413 and code(huge) == "request_too_large"
    long_note = httpx.post(url, json={"trace_id": trace, "rating": 1, "note": "x" * 2001})
    assert long_note.status_code == 422 and "note" in long_note.text
    # The file rotates past --feedback-max-bytes (2048 here): at most twice that on disk.
    stored = Path(httpx.post(url, json={"trace_id": trace, "rating": 1}).json()["stored_in"]
                  .split(" and ", 1)[1])
    for _ in range(40):
        ok = httpx.post(url, json={"trace_id": trace, "rating": -1, "note": "n" * 200})
        assert ok.status_code == 200
    rotated = stored.with_name(stored.name + ".1")
    assert rotated.exists()
    assert stored.stat().st_size <= 2048 and rotated.stat().st_size <= 2048
    assert oct(stored.stat().st_mode & 0o777) == oct(0o600)

