"""Residency against LM Studio's and Ollama's control planes: load, unload and list, in their
documented shapes, replayed by a real HTTP server with state (tests/support/control_plane.py).

Each role declares `memory_gb: 10` under a 15 GiB budget, so only one model fits at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from localroute.client.llm_client import LLMClient
from localroute.config.schema import ResolvedProfile
from tests.conftest import make_profile
from tests.support.control_plane import ControlState, control_server

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def state() -> ControlState:
    return ControlState(lmstudio={"qwen/qwen3-1.7b": 1_800_000_000,
                                  "deepseek-r1-distill-qwen-14b": 15_700_000_000,
                                  "qwen/qwen3-4b-2507": 4_300_000_000},
                        ollama={"qwen3:1.7b": 1_400_000_000, "qwen3:4b": 2_600_000_000})


@pytest.fixture
def url(state: ControlState) -> Iterator[str]:
    with control_server(state) as base:
        yield base


def on_demand(backend: str, model: str, url: str, **kw: Any) -> dict[str, Any]:
    return {"id": model, "backend": backend, "endpoint": url, "residency": "on_demand",
            "memory_gb": 10, "context_length": 8192, "max_tokens": 8, **kw}


def budget(profile: ResolvedProfile, gb: float = 15) -> ResolvedProfile:
    return profile.model_copy(update={"memory_budget_gb": gb, "min_residency": 0.0})


async def test_lmstudio_loads_lists_first_and_unloads_by_instance_id(
        state: ControlState, url: str) -> None:
    profile = budget(make_profile({
        "summarization": on_demand("lmstudio", "qwen/qwen3-1.7b", url),
        "reasoning": on_demand("lmstudio", "deepseek-r1-distill-qwen-14b", url,
                               context_length=16384)}))
    client = LLMClient(profile)
    try:
        await client.respond("summarization", HI)
        assert state.posts("/api/v1/models/load") == [
            {"model": "qwen/qwen3-1.7b", "context_length": 8192, "echo_load_config": True}]
        await client.respond("reasoning", HI)  # needs the memory: summarization goes first
        assert state.posts("/api/v1/models/unload") == [{"instance_id": "qwen/qwen3-1.7b"}]
        assert state.posts("/api/v1/models/load")[1] == {
            "model": "deepseek-r1-distill-qwen-14b", "context_length": 16384,
            "echo_load_config": True}
        assert state.instances["qwen/qwen3-1.7b"] == []
        # Every call found its model loaded: no JIT load, no auto-evict thrash.
        assert state.calls == [("qwen/qwen3-1.7b", True), ("deepseek-r1-distill-qwen-14b", True)]
        kinds = [(e.kind, e.instance, e.cause, e.seconds) for e in client.residency.events]
        assert kinds == [("load", "summarization", "request", 1.5),  # load_time_seconds
                         ("eviction", "summarization", "memory", None),
                         ("load", "reasoning", "request", 1.5)]
        # Each list came before its load: the manager never loads blind.
        order = [(m, p) for m, p, _ in state.log if p.startswith("/api/v1/models")]
        assert order.index(("GET", "/api/v1/models")) < order.index(
            ("POST", "/api/v1/models/load"))
    finally:
        await client.aclose()


async def test_lmstudio_model_already_loaded_is_adopted_not_loaded_twice(
        state: ControlState, url: str) -> None:
    state.instances["qwen/qwen3-4b-2507"] = [{"id": "qwen/qwen3-4b-2507", "config": {}}]
    profile = budget(make_profile({"router": on_demand("lmstudio", "qwen/qwen3-4b-2507", url)}))
    client = LLMClient(profile)
    try:
        answers = await asyncio.gather(*(client.respond("router", HI) for _ in range(10)))
        assert len(answers) == 10
        assert state.posts("/api/v1/models/load") == []  # adopted: a load would copy it
        assert len(state.instances["qwen/qwen3-4b-2507"]) == 1
        assert client.residency.scheduler.instances["router"].state.value == "ready"
        (event,) = client.residency.events
        assert event.kind == "load" and event.adopted and event.seconds is None
    finally:
        await client.aclose()


async def test_ten_concurrent_requests_make_one_lmstudio_load(
        state: ControlState, url: str) -> None:
    profile = budget(make_profile({"router": on_demand("lmstudio", "qwen/qwen3-4b-2507", url,
                                                       max_concurrency=4)}))
    client = LLMClient(profile)
    try:
        await asyncio.gather(*(client.respond("router", HI) for _ in range(10)))
        assert len(state.posts("/api/v1/models/load")) == 1
        assert state.most_instances == 1  # LM Studio never got a second copy
    finally:
        await client.aclose()


async def test_ollama_loads_with_keep_alive_and_unloads_with_zero(
        state: ControlState, url: str) -> None:
    profile = budget(make_profile({
        "summarization": on_demand("ollama", "qwen3:1.7b", url, idle_ttl=600),
        "router": on_demand("ollama", "qwen3:4b", url)}))
    client = LLMClient(profile)
    try:
        await client.respond("summarization", HI)
        await client.respond("router", HI)
        generate = state.posts("/api/generate")
        assert generate[0] == {"model": "qwen3:1.7b", "prompt": "", "stream": False,
                               "keep_alive": 600, "options": {"num_ctx": 8192}}
        assert generate[1] == {"model": "qwen3:1.7b", "keep_alive": 0, "stream": False}
        assert generate[2]["model"] == "qwen3:4b" and generate[2]["keep_alive"] == -1
        assert set(state.running) == {"qwen3:4b"}  # /api/ps now lists only the router's
        assert state.calls == [("qwen3:1.7b", True), ("qwen3:4b", True)]
        loads = [e.seconds for e in client.residency.events if e.kind == "load"]
        assert loads == [2.0, 2.0]  # Ollama's load_duration, in seconds
    finally:
        await client.aclose()


async def test_a_pinned_lmstudio_role_is_loaded_explicitly_once(
        state: ControlState, url: str) -> None:
    profile = make_profile({"router": {"id": "qwen/qwen3-1.7b", "backend": "lmstudio",
                                       "endpoint": url, "quantization": "8bit"}})
    client = LLMClient(profile)
    try:
        await client.respond("router", HI)
        await client.respond("router", HI)
        assert len(state.posts("/api/v1/models/load")) == 1
        assert state.calls == [("qwen/qwen3-1.7b", True), ("qwen/qwen3-1.7b", True)]
    finally:
        await client.aclose()
