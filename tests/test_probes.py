"""Health probes never hurt a request (issue 13), against the real llama.cpp server.

llama-cpp-python's server started with its defaults (`interrupt_requests` on) ends a running
stream whenever another request waits for its model lock, and its `/v1/models` takes that lock.
The governor's probe must therefore never land there: it is skipped while a request is in flight
or has just finished, and otherwise asks `/health`, which that server answers (404) from its
HTTP layer without the lock. And no probe or request builds a TLS context (each costs tens of
milliseconds) once the backends exist.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localroute.backends.base import ChatRequest
from localroute.backends.health import role_statuses
from localroute.backends.liveness import backend_health
from localroute.backends.openai_compat import OpenAICompatBackend
from localroute.client.llm_client import LLMClient
from localroute.config.modes import load_modes
from localroute.governance.governor import build_governor
from localroute.types import LLMConnectionError
from tests.conftest import make_profile, server_role
from tests.support.servers import MODEL_ALIAS, LlamaServer, free_port

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
PROBE_EVERY_S = 0.1  # the governor's health interval, shortened from 15 s for the test


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server as its users start it: interrupt_requests left on."""
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = LlamaServer(log=log, interrupt_requests=True)
    server.log_path = log  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def access_log(server: LlamaServer) -> str:
    path: Path = server.log_path  # type: ignore[attr-defined]
    return path.read_text(encoding="utf-8", errors="replace")


async def test_the_default_server_cuts_a_stream_when_asked_for_its_models(
        default_server: LlamaServer) -> None:
    """The hazard itself, so the test below is not vacuous: a model-list request sent while a
    stream runs ends that stream before the model finishes."""
    backend = OpenAICompatBackend("llamacpp", default_server.base_url)
    request = ChatRequest(model=MODEL_ALIAS, messages=STORY, max_tokens=200, temperature=0.0)
    chunks = 0
    async with httpx.AsyncClient() as http:
        task: asyncio.Task[httpx.Response] | None = None
        try:
            with pytest.raises(LLMConnectionError, match=r"truncated|connection broke"):
                async for _ in backend.stream(request, role="router"):
                    chunks += 1
                    if chunks == 3:
                        task = asyncio.create_task(
                            http.get(default_server.base_url + "/models", timeout=60))
        finally:
            await backend.aclose()
        assert task is not None
        assert (await task).status_code == 200
    assert chunks < 200


async def test_streams_across_probe_intervals_complete_on_a_default_server(
        default_server: LlamaServer) -> None:
    profile = make_profile({"router": server_role(default_server.base_url, max_tokens=128,
                                                  default_timeout=120)})
    client = LLMClient(profile)
    modes = load_modes()
    modes = modes.model_copy(update={"homeostasis": modes.homeostasis.model_copy(
        update={"interval_s": PROBE_EVERY_S / 2, "health_interval_s": PROBE_EVERY_S})})
    governor = build_governor(client, modes, publish=False)
    before = access_log(default_server)
    await governor.start()
    outcomes: list[tuple[str, str | None, float]] = []
    downs: list[float | None] = []
    try:
        for i in range(6):
            started = time.monotonic()
            last = None
            async for event in client.stream("router", STORY):
                last = event
            assert last is not None
            finish = last.response.finish_reason if last.type == "done" else None  # type: ignore[union-attr]
            outcomes.append((last.type, finish, time.monotonic() - started))
            if governor.monitor.last is not None:
                downs.append(governor.monitor.last.values.get("backends_down"))
            if i % 2:  # idle past the interval, so that probes are sent between streams
                await asyncio.sleep(PROBE_EVERY_S * 3)
    finally:
        await governor.stop()
        await client.aclose()
    # Every stream ended as the model finished (the token limit), none cut short.
    assert [o[:2] for o in outcomes] == [("done", "length")] * 6, outcomes
    # And each ran across several probe intervals (else the test would prove little).
    assert all(o[2] > 2 * PROBE_EVERY_S for o in outcomes), outcomes
    log = access_log(default_server)[len(before):]
    assert log.count("GET /health") >= 1, "no probe was sent: the test proves nothing"
    assert "GET /v1/models" not in log, "a probe asked for the model list (takes the lock)"
    assert downs and all(d == 0 for d in downs), downs


async def test_a_probe_judges_by_traffic_first(default_server: LlamaServer) -> None:
    profile = make_profile({"router": server_role(default_server.base_url, max_tokens=48)})
    client = LLMClient(profile)
    try:
        # Busy: a stream in flight is not probed.
        seen: list[Any] = []
        async for _event in client.stream("router", STORY):
            if not seen:
                seen = await backend_health(client.pool, profile, within_s=PROBE_EVERY_S)
        (busy,) = seen
        assert busy.alive and not busy.probed and "busy" in busy.reason
        # Fresh: a request that just succeeded is proof of health.
        (fresh,) = await backend_health(client.pool, profile, within_s=60)
        assert fresh.alive and not fresh.probed
        # Stale: asked, and llama-cpp-python's 404 on /health means it is up.
        (asked,) = await backend_health(client.pool, profile, within_s=0)
        assert asked.alive and asked.probed
    finally:
        await client.aclose()

    dead = make_profile({"router": server_role(f"http://127.0.0.1:{free_port()}/v1",
                                               retries=0)})
    client = LLMClient(dead)
    try:
        (probed,) = await backend_health(client.pool, dead, within_s=60)
        assert not probed.alive and probed.probed and "ConnectError" in probed.reason
        with pytest.raises(LLMConnectionError):
            await client.respond("router", STORY)
        # A request that just failed to connect counts against it, without a probe.
        (failed,) = await backend_health(client.pool, dead, within_s=60)
        assert not failed.alive and not failed.probed and "cannot connect" in failed.reason
    finally:
        await client.aclose()


class SSLCount:
    """Counts TLS contexts built while active (every way of building one ends in __new__)."""

    def __init__(self) -> None:
        self.built = 0
        self._original: Any = ssl.SSLContext.__dict__["__new__"]
        self._lock = threading.Lock()

    def __enter__(self) -> SSLCount:
        original: Callable[..., Any] = self._original.__func__ if isinstance(
            self._original, staticmethod) else self._original

        def counting(cls: type, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.built += 1
            return original(cls, *args, **kwargs)

        ssl.SSLContext.__new__ = staticmethod(counting)  # type: ignore[assignment,method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        ssl.SSLContext.__new__ = self._original  # type: ignore[method-assign]


async def test_no_request_or_probe_builds_a_tls_context(llama_server: LlamaServer) -> None:
    profile = make_profile({"router": server_role(llama_server.base_url, max_tokens=4)})
    client = LLMClient(profile)
    hi = [{"role": "user", "content": "Say hi."}]
    try:
        await client.respond("router", hi)  # warm-up: the backend and its client exist now
        with SSLCount() as count:
            for _ in range(3):
                await client.respond("router", hi)
                async for _event in client.stream("router", hi):
                    pass
                await backend_health(client.pool, profile, within_s=0)  # a real probe
                await role_statuses(profile, client.pool)  # what /ready does
        assert count.built == 0
        # The counter counts: a fresh plain client builds one.
        with SSLCount() as count:
            ssl.create_default_context()
        assert count.built == 1
    finally:
        await client.aclose()
