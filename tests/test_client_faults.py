"""Each fault between client and a real server ends in the documented retry, fallback or error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from localroute.client.llm_client import LLMClient
from localroute.types import LLMConnectionError, LLMContextOverflow, LLMServerError, LLMTimeout
from tests.conftest import make_profile, server_role
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.servers import LlamaServer

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def proxy(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as p:
        yield p


def client_via(proxy: FaultProxy, **overrides: object) -> LLMClient:
    return LLMClient(make_profile({"router": server_role(proxy.base_url, **overrides)}))


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=503, times=2),
        Fault(kind="status", status=500, times=1),
        Fault(kind="drop", times=2),
        Fault(kind="reset", times=1),
        Fault(kind="error_200", message="Model crashed while generating", times=1),
    ],
    ids=["503x2", "500x1", "dropx2", "reset", "error-body-200"],
)
async def test_transient_faults_are_retried(proxy: FaultProxy, fault: Fault) -> None:
    proxy.set_fault(fault)
    client = client_via(proxy)
    try:
        r = await client.respond("router", HI)
    finally:
        await client.aclose()
    assert r.content.strip()
    assert r.attempts == (fault.times or 0) + 1
    assert proxy.faults_injected == fault.times


async def test_retry_after_of_a_429_is_honoured(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="status", status=429, headers={"Retry-After": "1"}, times=1))
    client = client_via(proxy)
    started = time.perf_counter()
    try:
        r = await client.respond("router", HI)
    finally:
        await client.aclose()
    assert r.attempts == 2 and time.perf_counter() - started >= 1.0


async def test_persistent_5xx_exhausts_retries_then_raises(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="status", status=500))
    client = client_via(proxy, retries=2)
    try:
        with pytest.raises(LLMServerError) as info:
            await client.respond("router", HI)
    finally:
        await client.aclose()
    assert info.value.status == 500 and proxy.faults_injected == 3
    assert "HTTP 500" in str(info.value) and proxy.base_url in str(info.value)


async def test_persistent_fault_falls_back_to_the_next_role(
    proxy: FaultProxy, llama_server: LlamaServer
) -> None:
    proxy.set_fault(Fault(kind="status", status=503))
    profile = make_profile({
        "reasoning": server_role(proxy.base_url, retries=1, fallback=["reasoning_heavy"]),
        "reasoning_heavy": server_role(llama_server.base_url),
    })
    client = LLMClient(profile)
    try:
        r = await client.respond("reasoning", HI)
    finally:
        await client.aclose()
    assert r.role == "reasoning_heavy"
    assert [(f.from_role, f.to_role) for f in r.fallbacks] == [("reasoning", "reasoning_heavy")]
    assert "HTTP 503" in r.fallbacks[0].reason


async def test_client_errors_are_not_retried(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="status", status=404))
    client = client_via(proxy)
    try:
        with pytest.raises(LLMServerError) as info:
            await client.respond("router", HI)
    finally:
        await client.aclose()
    assert info.value.status == 404 and proxy.faults_injected == 1


async def test_lmstudio_overflow_in_a_200_body_is_a_context_overflow(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="error_200"))
    client = client_via(proxy)
    try:
        with pytest.raises(LLMContextOverflow, match="context the overflows"):
            await client.respond("router", HI)
    finally:
        await client.aclose()
    assert proxy.faults_injected == 1  # not retried: the same prompt cannot fit next time


async def test_latency_beyond_the_timeout_is_a_typed_timeout(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="delay", seconds=3.0))
    client = client_via(proxy, retries=0)
    try:
        with pytest.raises(LLMTimeout, match="role 'router'"):
            await client.respond("router", HI, timeout=0.5)
    finally:
        await client.aclose()


async def test_stream_cut_before_any_text_is_retried(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="truncate", after_bytes=0, times=1, path_contains="chat"))
    client = client_via(proxy)
    try:
        events = [e async for e in client.stream("router", HI)]
    finally:
        await client.aclose()
    assert events[-1].type == "done", events
    assert events[-1].response.attempts == 2  # type: ignore[union-attr]


async def test_stream_cut_mid_answer_ends_in_an_error_event(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="truncate", after_bytes=700, path_contains="chat"))
    client = client_via(proxy, max_tokens=40)
    try:
        events = [e async for e in client.stream("router", HI)]
    finally:
        await client.aclose()
    kinds = [e.type for e in events]
    assert "done" not in kinds and kinds[-1] == "error", kinds
    assert events[-1].kind == "LLMConnectionError"  # type: ignore[union-attr]


async def test_in_flight_never_exceeds_max_concurrency(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="delay", seconds=0.3))
    client = client_via(proxy, max_concurrency=2, max_tokens=2)
    try:
        results = await asyncio.gather(*(client.respond("router", HI) for _ in range(6)))
    finally:
        await client.aclose()
    assert len(results) == 6
    assert proxy.max_in_flight == 2
    assert client.gates.snapshot()["router"]["in_flight"] == 0


async def test_sharing_role_gate_is_nested_inside_the_instance(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="delay", seconds=0.3))
    profile = make_profile({
        "router": server_role(proxy.base_url, max_concurrency=3, max_tokens=2),
        "validation": {"shares_instance_with": "router", "max_concurrency": 1, "max_tokens": 2},
    })
    client = LLMClient(profile)
    try:
        await asyncio.gather(*(client.respond("validation", HI) for _ in range(3)))
    finally:
        await client.aclose()
    assert proxy.max_in_flight == 1


async def test_refused_connection_after_retries_is_a_connection_error(proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="drop"))
    client = client_via(proxy, retries=1)
    try:
        with pytest.raises(LLMConnectionError, match="cannot connect"):
            await client.respond("router", HI)
    finally:
        await client.aclose()
    assert proxy.faults_injected == 2
