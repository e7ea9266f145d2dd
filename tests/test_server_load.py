"""Load: 200 requests from 20 concurrent clients against one slot per role and a queue of 2.

Every request gets a complete answer or a 429 with Retry-After, none a 5xx, and no gate slot
leaks: the in-flight and queue gauges return to zero.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import LlamaServer
from tests.test_server import Serve, write_config

CLIENTS = 20
REQUESTS = 200

# Model calls (a direct role, and `auto` routed to the router role) mixed with a tool-only
# question; max_tokens stays tiny so the run takes seconds on two cores.
BODIES: list[dict[str, Any]] = [
    {"model": "router", "max_tokens": 2, "messages": [{"role": "user", "content": "Say hi"}]},
    {"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "what is 2+2"}]},
    {"model": "auto", "messages": [{"role": "user", "content": "what time is it"}]},
]


@pytest.fixture(scope="module")
def loaded(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    config = write_config(tmp_path_factory.mktemp("load") / "models.yaml", llama_server.base_url)
    server = Serve(config, "--max-queue", "2")
    yield server
    server.stop()


async def _client(http: httpx.AsyncClient, url: str, jobs: asyncio.Queue[int],
                  results: list[tuple[int, int, dict[str, Any], httpx.Headers]]) -> None:
    while True:
        try:
            i = jobs.get_nowait()
        except asyncio.QueueEmpty:
            return
        response = await http.post(url, json=BODIES[i % len(BODIES)])
        results.append((i, response.status_code, response.json(), response.headers))


async def _run(url: str) -> list[tuple[int, int, dict[str, Any], httpx.Headers]]:
    jobs: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        jobs.put_nowait(i)
    results: list[tuple[int, int, dict[str, Any], httpx.Headers]] = []
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(_client(http, url, jobs, results) for _ in range(CLIENTS)))
    return results


def test_load_answers_or_sheds_and_leaks_no_slot(loaded: Serve) -> None:
    started = time.monotonic()
    results = asyncio.run(_run(loaded.base_url + "/chat/completions"))
    elapsed = time.monotonic() - started
    assert len(results) == REQUESTS
    statuses = [status for _, status, _, _ in results]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    answered_by_model = 0
    for i, status, body, headers in results:
        if status == 429:
            assert body["error"]["code"] == "server_overloaded"
            assert int(headers["retry-after"]) >= 1
            continue
        choice = body["choices"][0]
        assert choice["finish_reason"] in ("stop", "length")
        assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
        assert body["localroute"]["trace_id"] == headers["x-localroute-trace-id"]
        if i % len(BODIES) == 2:
            assert body["localroute"]["route"] == "tool"
        else:
            answered_by_model += 1
            assert body["localroute"]["role"] == "router"
    assert answered_by_model > 0, "no model call was admitted"
    assert statuses.count(429) > 0, "one slot and a queue of 2 should shed some of 20 clients"
    for gate in ("router", "reasoning", "coding", "summarization"):
        assert loaded.gate(gate, "in_flight") == 0
        assert loaded.gate(gate, "queue_depth") == 0
    m = loaded.metrics()
    assert m[("localroute_rejections_total", (("reason", "overloaded"),))] == statuses.count(429)
    assert elapsed < 120
