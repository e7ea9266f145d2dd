"""What `localroute serve` adds per request, against the same requests sent to the model server.

Starts a real llama-cpp-python server with SmolLM2-135M and `localroute serve` in front of it
(as a subprocess, one slot per role), then interleaves N requests for a direct role through the
server and N identical requests straight to the llama.cpp server (max_tokens=1, temperature 0),
both with the `openai` SDK over keep-alive connections. Prints p50/p99 of each path, the added
latency (per interleaved pair) at p50/p99, and the ratio. Goal: <= 2 ms p50 added.

    python benchmarks/server_overhead.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import MODEL_ALIAS, LlamaServer
from tests.test_server import Serve, write_config

MESSAGES = [{"role": "user", "content": "Say OK."}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(n: int) -> None:
    llama = LlamaServer()
    serve: Serve | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp) / "models.yaml", llama.base_url)
            serve = Serve(config, "--max-queue", "0")
            via = openai.OpenAI(base_url=serve.base_url, api_key="x", max_retries=0)
            direct = openai.OpenAI(base_url=llama.base_url, api_key="x", max_retries=0)

            def through_server() -> None:
                via.chat.completions.create(model="router", messages=MESSAGES,  # type: ignore[arg-type]
                                            max_tokens=1)

            def to_backend() -> None:
                direct.chat.completions.create(model=MODEL_ALIAS, messages=MESSAGES,  # type: ignore[arg-type]
                                               max_tokens=1, temperature=0.0, top_p=0.95)

            for _ in range(5):  # warm both paths (connections, prompt cache)
                through_server()
                to_backend()
            ours: list[float] = []
            bare: list[float] = []
            for _ in range(n):
                t = time.perf_counter()
                through_server()
                ours.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                to_backend()
                bare.append((time.perf_counter() - t) * 1000)
    finally:
        if serve is not None:
            serve.stop()
        llama.stop()
    added = [o - d for o, d in zip(ours, bare, strict=True)]
    p50o, p50d = statistics.median(ours), statistics.median(bare)
    print(f"requests: {n} each, interleaved, direct role 'router', max_tokens=1")
    print(f"via localroute serve  p50 {p50o:8.2f} ms  p99 {pct(ours, 0.99):8.2f} ms")
    print(f"llama.cpp directly    p50 {p50d:8.2f} ms  p99 {pct(bare, 0.99):8.2f} ms")
    print(f"added                 p50 {statistics.median(added):8.2f} ms  "
          f"p99 {pct(added, 0.99):8.2f} ms   (goal: <= 2 ms p50)")
    print(f"ratio                 {p50o / p50d:8.3f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
