"""What `localroute serve` adds per request, against the same requests sent to the model server,
with the LiteLLM proxy in front of the same server side by side when it is installed.

Starts a real llama-cpp-python server with SmolLM2-135M, `localroute serve` in front of it (a
subprocess, one slot per role) and, when found, the LiteLLM proxy (a subprocess, one model entry
pointing at the same server). Then interleaves N one-token requests (max_tokens=1, temperature
0) to each path, with the `openai` SDK over keep-alive connections, and M short streams whose time
to first token (the first chunk carrying text) is measured the same way. Prints p50/p99 of each
path, the added latency per interleaved pair (p50/p99), the ratio to a direct call (p50), and the
streaming time to first token added. Goals (issue 13): ratio <= 1.3x, TTFT added <= 3 ms.

The LiteLLM proxy's dependencies clash with localroute's (it pins its own fastapi/openai
ranges), so it lives in its own virtualenv, found at `$LITELLM` (the `litellm` executable), else
`.bench-venv/bin/litellm` in this repository, else `litellm` on PATH:

    python -m venv .bench-venv && .bench-venv/bin/pip install 'litellm[proxy]==1.106.12'
    python benchmarks/server_overhead.py [N] [M]

`BASELINE=/path/to/another/checkout` adds that checkout's `localroute serve` as one more path in
the same interleaved run (before/after a change on a busy machine, where separate runs differ by
more than the change). `LITELLM=none` leaves the proxy out.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import openai
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import MODEL_ALIAS, LlamaServer, free_port, stop_process, wait_for_http
from tests.test_server import Serve, write_config

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "Say OK."}]
# What localroute sends for role 'router' of write_config (temperature 0.0, the role's top_p):
# the other paths send the same, so every server does the same work.
SAMPLING = {"temperature": 0.0, "top_p": 0.95}
STREAM_TOKENS = 4


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def litellm_executable() -> str | None:
    if os.environ.get("LITELLM") == "none":
        return None
    for candidate in (os.environ.get("LITELLM"), str(ROOT / ".bench-venv" / "bin" / "litellm"),
                      shutil.which("litellm")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class LiteLLMProxy:
    """`litellm --config` on a free port, one model entry for the llama.cpp server."""

    def __init__(self, exe: str, backend_url: str, tmp: Path) -> None:
        config = {"model_list": [{"model_name": MODEL_ALIAS, "litellm_params": {
            "model": f"openai/{MODEL_ALIAS}", "api_base": backend_url, "api_key": "x"}}]}
        path = tmp / "litellm.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        # The proxy refuses to start without a master key; a fresh one per run, sent as the
        # client's API key. The bundled model-cost map, not a download at start.
        self.key = "sk-" + secrets.token_hex(16)
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
               "LITELLM_MASTER_KEY": self.key}
        self._log = open(tmp / "litellm.log", "wb")  # noqa: SIM115 - closed in stop()
        self.log_path = tmp / "litellm.log"
        self.proc = subprocess.Popen(
            [exe, "--config", str(path), "--host", "127.0.0.1", "--port", str(self.port),
             "--num_workers", "1"], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_http(f"http://127.0.0.1:{self.port}/health/liveliness", self.proc, 180.0,
                          "litellm proxy")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


def one_token(client: openai.OpenAI, model: str, sampling: dict[str, float]) -> Callable[[], None]:
    def call() -> None:
        client.chat.completions.create(model=model, messages=MESSAGES,  # type: ignore[arg-type]
                                       max_tokens=1, **sampling)  # type: ignore[arg-type]
    return call


def first_token(client: openai.OpenAI, model: str,
                sampling: dict[str, float]) -> Callable[[], float]:
    """A short stream; the seconds until its first chunk with text (the rest is read too, so
    the connection is reused)."""
    def call() -> float:
        started = time.perf_counter()
        ttft: float | None = None
        stream = client.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=STREAM_TOKENS, stream=True,  # type: ignore[arg-type]
            **sampling)  # type: ignore[arg-type]
        for chunk in stream:
            if ttft is None and chunk.choices and chunk.choices[0].delta.content:
                ttft = time.perf_counter() - started
        return ttft if ttft is not None else time.perf_counter() - started
    return call


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def report(name: str, ours: list[float], bare: list[float], unit: str) -> None:
    added = [o - d for o, d in zip(ours, bare, strict=True)]
    print(f"  {name:<22} p50 {statistics.median(ours):8.2f} ms  p99 {pct(ours, 0.99):8.2f} ms"
          f"  added p50 {statistics.median(added):7.2f} ms  p99 {pct(added, 0.99):7.2f} ms"
          f"  ratio {statistics.median(ours) / statistics.median(bare):6.3f}x{unit}")


def main(n: int, m: int) -> None:
    llama = LlamaServer()
    serve: Serve | None = None
    baseline: Serve | None = None
    proxy: LiteLLMProxy | None = None
    exe = litellm_executable()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            config = write_config(tmp / "models.yaml", llama.base_url)
            serve = Serve(config, "--max-queue", "0")
            if os.environ.get("BASELINE"):
                baseline = Serve(config, "--max-queue", "0",
                                 env={"PYTHONPATH": os.environ["BASELINE"]})
            if exe is not None:
                proxy = LiteLLMProxy(exe, llama.base_url, tmp)

            def sdk(url: str, key: str = "x") -> openai.OpenAI:
                return openai.OpenAI(base_url=url, api_key=key, max_retries=0)

            paths: dict[str, tuple[Callable[[], None], Callable[[], float]]] = {
                "llama.cpp directly": (one_token(sdk(llama.base_url), MODEL_ALIAS, SAMPLING),
                                       first_token(sdk(llama.base_url), MODEL_ALIAS, SAMPLING)),
                # localroute applies the role's sampling itself, as a client of it would expect.
                "via localroute serve": (one_token(sdk(serve.base_url), "router", {}),
                                         first_token(sdk(serve.base_url), "router", {})),
            }
            if baseline is not None:
                paths["via baseline serve"] = (one_token(sdk(baseline.base_url), "router", {}),
                                               first_token(sdk(baseline.base_url), "router", {}))
            if proxy is not None:
                paths["via LiteLLM proxy"] = (
                    one_token(sdk(proxy.base_url, proxy.key), MODEL_ALIAS, SAMPLING),
                    first_token(sdk(proxy.base_url, proxy.key), MODEL_ALIAS, SAMPLING))
            for _ in range(5):  # warm every path (connections, prompt cache, lazy imports)
                for call, stream in paths.values():
                    call()
                    stream()
            latency: dict[str, list[float]] = {name: [] for name in paths}
            ttft: dict[str, list[float]] = {name: [] for name in paths}
            # CPU seconds each proxy process spends on the one-token requests: steadier than
            # latency on a busy machine, where other processes' load moves every figure.
            procs = {name: psutil.Process(proc.pid) for name, proc in (
                ("via localroute serve", serve.proc),
                ("via baseline serve", baseline.proc if baseline else None),
                ("via LiteLLM proxy", proxy.proc if proxy else None)) if proc is not None}
            cpu0 = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
            for _ in range(n):
                for name, (call, _) in paths.items():
                    latency[name].append(timed(call))
            cpu = {name: (sum(p.cpu_times()[:2]) - cpu0[name]) * 1000 / n
                   for name, p in procs.items()}
            for _ in range(m):
                for name, (_, stream) in paths.items():
                    ttft[name].append(stream() * 1000)
        finally:
            if proxy is not None:
                proxy.stop()
            for server in (serve, baseline):
                if server is not None:
                    server.stop()
            llama.stop()
    direct = "llama.cpp directly"
    print(f"one-token requests: {n} per path, interleaved (localroute: direct role 'router')")
    print(f"  {direct:<22} p50 {statistics.median(latency[direct]):8.2f} ms  "
          f"p99 {pct(latency[direct], 0.99):8.2f} ms")
    for name in paths:
        if name != direct:
            report(name, latency[name], latency[direct], "   (goal for localroute: <= 1.3x)")
    print("CPU per one-token request in the proxy process (user + system): " + ", ".join(
        f"{name.removeprefix('via ')} {ms:.2f} ms" for name, ms in cpu.items()))
    print(f"streams of {STREAM_TOKENS} tokens: {m} per path, interleaved; time to first token")
    print(f"  {direct:<22} p50 {statistics.median(ttft[direct]):8.2f} ms  "
          f"p99 {pct(ttft[direct], 0.99):8.2f} ms")
    for name in paths:
        if name != direct:
            report(name, ttft[name], ttft[direct], "   (goal for localroute: <= 3 ms added)")
    if baseline is not None:
        print(f"baseline: localroute from {os.environ['BASELINE']}")
    if proxy is None:
        print("LiteLLM proxy: left out or not found (set LITELLM, or: python -m venv "
              ".bench-venv && .bench-venv/bin/pip install 'litellm[proxy]==1.106.12')")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200,
         int(sys.argv[2]) if len(sys.argv) > 2 else 50)
