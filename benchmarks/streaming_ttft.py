"""Time to first token of `auto` streams through `localroute serve`, per validation policy,
against the model server's own time to first token for the same request.

Starts a real llama-cpp-python server with SmolLM2-135M and `localroute serve` in front of it
(a subprocess), then interleaves N rounds of: the request straight to the llama.cpp server, and
the same request to `serve` with `model: auto` under each policy (`after`, `window`, `buffer`),
all streamed with the `openai` SDK. Prints p50/p90 of the first content token per path, of the
first chunk (the routing summary, sent once the route is decided), and the p50 added to the
backend's TTFT (per interleaved pair). Goal: `after` adds at most routing time + 5 ms at p50;
`window` waits for its first window of text by design (window_chars), `buffer` for the whole
answer: printed beside them for contrast.

    python benchmarks/streaming_ttft.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import MODEL_ALIAS, LlamaServer
from tests.test_server import Serve, write_config

MESSAGES: Any = [{"role": "user", "content": "Tell me a story about a dragon"}]  # route router
MAX_TOKENS = 64
POLICIES = ("after", "window", "buffer")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(client: openai.OpenAI, model: str, extra: dict[str, Any] | None) -> tuple[float, float]:
    """Seconds to the first chunk and to the first content token."""
    started = time.perf_counter()
    first_chunk = first_token = None
    for chunk in client.chat.completions.create(model=model, messages=MESSAGES, stream=True,
                                                max_tokens=MAX_TOKENS, temperature=0.0,
                                                extra_body=extra):
        now = time.perf_counter() - started
        first_chunk = now if first_chunk is None else first_chunk
        if first_token is None and chunk.choices and chunk.choices[0].delta.content:
            first_token = now
    assert first_chunk is not None and first_token is not None, "no content streamed"
    return first_chunk, first_token


def main(n: int) -> None:
    llama = LlamaServer()
    serve: Serve | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp) / "models.yaml", llama.base_url,
                                  router={"id": MODEL_ALIAS, "backend": "llamacpp",
                                          "endpoint": llama.base_url, "context_length": 2048,
                                          "max_concurrency": 1, "max_tokens": MAX_TOKENS,
                                          "temperature": 0.0, "retries": 0})
            serve = Serve(config)
            via = openai.OpenAI(base_url=serve.base_url, api_key="x", max_retries=0)
            direct = openai.OpenAI(base_url=llama.base_url, api_key="x", max_retries=0)
            for _ in range(2):  # warm both paths (classifier, connections, prompt cache)
                timed(direct, MODEL_ALIAS, None)
                timed(via, "auto", None)
            backend: list[float] = []
            first: dict[str, list[float]] = {p: [] for p in POLICIES}
            token: dict[str, list[float]] = {p: [] for p in POLICIES}
            added: dict[str, list[float]] = {p: [] for p in POLICIES}
            for _ in range(n):
                _, own = timed(direct, MODEL_ALIAS, None)
                backend.append(own)
                for policy in POLICIES:
                    chunk, tok = timed(via, "auto", {"localroute": {"validation": policy}})
                    first[policy].append(chunk)
                    token[policy].append(tok)
                    added[policy].append(tok - own)
            ms = 1000
            print(f"{n} interleaved rounds, {MAX_TOKENS} tokens, SmolLM2-135M on llama.cpp")
            print(f"  backend TTFT        p50 {pct(backend, .5) * ms:7.1f} ms  "
                  f"p90 {pct(backend, .9) * ms:7.1f} ms")
            for policy in POLICIES:
                print(f"  auto {policy:<7} TTFT  p50 {pct(token[policy], .5) * ms:7.1f} ms  "
                      f"p90 {pct(token[policy], .9) * ms:7.1f} ms  first chunk p50 "
                      f"{pct(first[policy], .5) * ms:6.1f} ms  added p50 "
                      f"{statistics.median(added[policy]) * ms:+7.1f} ms")
            print("  (first chunk: the routing summary, sent once the route is decided)")
    finally:
        if serve is not None:
            serve.stop()
        llama.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
