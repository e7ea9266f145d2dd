"""What LLMClient adds per call, against the same calls made with the bare `openai` SDK.

Starts a real llama-cpp-python server with SmolLM2-135M on loopback, then interleaves N calls
through LLMClient and N direct SDK calls (max_tokens=1, temperature 0) and prints p50/p99 of
each, the added milliseconds and the ratio. Goal: <= 1 ms p50 added.

    python benchmarks/client_overhead.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.client.llm_client import LLMClient
from tests.conftest import make_profile, server_role
from tests.support.servers import MODEL_ALIAS, LlamaServer

MESSAGES = [{"role": "user", "content": "Say OK."}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(n: int) -> None:
    server = LlamaServer()
    try:
        client = LLMClient(make_profile({"router": server_role(server.base_url, max_tokens=1)}))
        sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        ours: list[float] = []
        direct: list[float] = []
        for _ in range(3):  # warm both paths (connection pools, prompt cache)
            await client.respond("router", MESSAGES)
            await sdk.chat.completions.create(model=MODEL_ALIAS, messages=MESSAGES, max_tokens=1,
                                              temperature=0.0)
        for _ in range(n):
            t = time.perf_counter()
            await client.respond("router", MESSAGES)
            ours.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await sdk.chat.completions.create(model=MODEL_ALIAS, messages=MESSAGES, max_tokens=1,
                                              temperature=0.0, top_p=0.95)
            direct.append((time.perf_counter() - t) * 1000)
        await client.aclose()
        await sdk.close()
    finally:
        server.stop()
    p50o, p50d = statistics.median(ours), statistics.median(direct)
    print(f"calls: {n} each, interleaved, max_tokens=1")
    print(f"LLMClient   p50 {p50o:8.2f} ms  p99 {pct(ours, 0.99):8.2f} ms")
    print(f"openai SDK  p50 {p50d:8.2f} ms  p99 {pct(direct, 0.99):8.2f} ms")
    print(f"added p50: {p50o - p50d:+.2f} ms per call (goal <= 1 ms); ratio {p50o / p50d:.3f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
