"""Admission everywhere (issue 11, point 6): router-model escalation and tool-only answers.

Before the fix, 30 unsure queries queued 29 router-model calls at a gate of 8 slots, routing
took 18-29 s and direct-role clients starved behind them; tool-only answers were never limited.
Here a real llama.cpp server (SmolLM2-135M) answers the router model, and a real `serve` the
tool-only requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from localroute.client.llm_client import LLMClient
from localroute.config.modes import RoutingSettings
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.types import LLMResponse
from tests.conftest import make_profile, server_role
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.servers import LlamaServer, free_port
from tests.test_server import Serve, write_config

ROUTER_SLOTS = 2
QUERIES = 30
LIMIT_S = 30.0  # routing.router_model_timeout: generous, the deadline itself is what is tested


@pytest.fixture(scope="module")
def classifier() -> RouteClassifier:
    return RouteClassifier.load()


def unsure_router(url: str, classifier: RouteClassifier, limit: float) -> Stage1Router:
    # escalation_threshold 1.0: every classifier decision is unsure, so each query escalates.
    profile = make_profile({"router": server_role(url, max_concurrency=ROUTER_SLOTS,
                                                  max_tokens=64, retries=0)})
    settings = RoutingSettings(escalation_threshold=1.0, router_model_timeout=limit)
    return Stage1Router(classifier, settings, LLMClient(profile))


async def test_unsure_queries_never_queue_at_the_router_and_direct_calls_are_served(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    router = unsure_router(llama_server.base_url, classifier, LIMIT_S)
    client = router.client
    assert client is not None
    gate = client.gates.gates_for(client.profile.role("router"))[0]
    calls: list[tuple[str, float]] = []
    client.on_call = lambda role, response, error, seconds: calls.append((role, seconds))
    peaks = {"in_flight": 0, "waiting": 0}
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            peaks["in_flight"] = max(peaks["in_flight"], gate.in_flight)
            peaks["waiting"] = max(peaks["waiting"], gate.waiting)
            await asyncio.sleep(0.002)

    async def direct() -> LLMResponse:
        await asyncio.sleep(0.5)  # once the escalations hold the router
        return await client.respond("router", [{"role": "user", "content": "Say OK."}],
                                    max_tokens=4)

    queries = [f"tell me something nice about otters, take {i}" for i in range(QUERIES)]
    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    try:
        *decisions, answer = await asyncio.gather(*(router.decide(q) for q in queries), direct())
    finally:
        done.set()
        await sampler
        await client.aclose()
    elapsed = time.perf_counter() - started

    assert isinstance(answer, LLMResponse)
    asked = [d for d in decisions if d.escalated]
    busy = [d for d in decisions if not d.escalated]
    assert asked and busy  # some were asked, the rest found the router busy
    # A busy router leaves the classifier's answer, and says so.
    assert all(d.decided_by == "classifier" and d.escalation_error
               and d.escalation_error.startswith("router busy") for d in busy)
    assert len(asked) + len(busy) == QUERIES
    # Never more calls at the router than its slots; nothing queued but the direct client (and
    # at most one escalation per slot that met it on the way to the gate).
    assert peaks["in_flight"] <= ROUTER_SLOTS
    assert peaks["waiting"] <= 1 + ROUTER_SLOTS
    # Every routing ends within the deadline; the direct call waits for a slot to free, not
    # behind a queue of escalations.
    assert all(d.latency_ms < (LIMIT_S + 2) * 1000 for d in decisions)
    longest = max(seconds for role, seconds in calls if role == "router")
    assert answer.timings.queue_wait_s <= 2 * longest + 1.0, (answer.timings, longest)
    assert elapsed < LIMIT_S + 10


@pytest.fixture
def slow_router(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as proxy:
        proxy.set_fault(Fault(kind="delay", seconds=10.0, path_contains="chat"))
        yield proxy


async def test_a_late_router_model_leaves_the_classifier_answer_at_the_deadline(
    slow_router: FaultProxy, classifier: RouteClassifier
) -> None:
    router = unsure_router(slow_router.base_url, classifier, 1.5)
    started = time.perf_counter()
    try:
        decision = await router.decide("tell me something nice about otters")
    finally:
        assert router.client is not None
        await router.client.aclose()
    assert time.perf_counter() - started < 5.0
    assert decision.escalated and decision.decided_by == "classifier"
    assert decision.escalation_error is not None
    assert "1.5 s" in decision.escalation_error or "Timeout" in decision.escalation_error
    assert "classifier answer kept" in decision.reason


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = write_config(tmp_path_factory.mktemp("tools") / "models.yaml", dead)
    server = Serve(config, "--max-tool-requests", "2")
    yield server
    server.stop()


def test_tool_only_answers_are_admitted_and_bounded(tool_server: Serve) -> None:
    # `nproc` is answered by the cpu tool, which samples for 0.25 s: twenty at once overlap.
    body = {"model": "auto", "messages": [{"role": "user", "content": "nproc"}]}
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def ask() -> None:
        response = httpx.post(tool_server.base_url + "/chat/completions", json=body, timeout=60)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(r.status_code for r in answers)
    assert len(statuses) == 20 and set(statuses) == {200, 429}, statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1"
    error = refused.json()["error"]
    assert error["code"] == "server_overloaded" and "--max-tool-requests" in error["message"]
    # The places are given back: one at a time, every request is answered.
    for _ in range(3):
        again = httpx.post(tool_server.base_url + "/chat/completions", json=body, timeout=60)
        assert again.status_code == 200 and again.headers["X-Localroute-Route"] == "tool"
