"""Opening the dashboard must not cost `serve` its later events. A real `localroute serve` with
one managed on-demand model (SmolLM2, idle TTL 8 s): the page's first poll opens the
dashboard's own store in the server process, another process reads the store (as `localroute
telemetry query` does), then a request loads the model and the idle TTL evicts it. Both must
reach the store. (The dashboard once opened its store in a way that dropped the server's SQLite
locks; the other process then deleted the WAL the server was writing to, and every later event,
the eviction among them, was lost while the scheduler had in fact unloaded the model.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from tests.support.polling import stored_events
from tests.support.servers import free_port, gguf_path, wait_for_http

TTL_S = 8  # short, so the eviction comes during the test


def write_config(path: Path) -> Path:
    path.write_text(f"""version: 1
auto_profiles: [local]
profiles:
  local:
    memory_budget_gb: 2
    min_residency: 0
    roles:
      router:
        backend: llamacpp
        model_path: {gguf_path()}
        context_length: 512
        max_tokens: 8
        temperature: 0
        residency: on_demand
        idle_ttl: {TTL_S}
""")
    return path


def test_events_after_the_dashboard_opened_reach_the_store(tmp_path: Path) -> None:
    config = write_config(tmp_path / "models.yaml")
    env = {**os.environ, "LOCALROUTE_STATE_DIR": str(tmp_path / "state")}
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    # --mode: on a busy machine the CPU sensor could otherwise refuse work (ALERT).
    proc = subprocess.Popen([sys.executable, "-m", "localroute", "--config", str(config), "serve",
                             "--port", str(port), "--mode", "NORMAL"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/health", proc, 120, "localroute serve")  # type: ignore[arg-type]
        poll = httpx.get(base + "/ui/api/overview", params={"window": "day"}, timeout=120)
        assert poll.status_code == 200, poll.text
        assert stored_events(env, "residency.eviction") == []  # another process opens and closes it
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", timeout=300)
        answer = client.chat.completions.create(model="router", messages=[
            {"role": "user", "content": "Say hi."}])
        assert answer.choices[0].message.content
        answered = time.time()
        deadline = time.monotonic() + TTL_S + 90
        evictions = stored_events(env, "residency.eviction")
        while not evictions:
            assert time.monotonic() < deadline, (
                "no residency.eviction in the store; loads stored: "
                f"{len(stored_events(env, 'residency.load'))}")
            time.sleep(1.0)
            evictions = stored_events(env, "residency.eviction")
        [eviction] = evictions
        assert eviction["role"] == "router" and eviction["data"]["cause"] == "idle_ttl"
        assert eviction["data"]["idle_s"] >= TTL_S
        assert eviction["ts"] >= answered + TTL_S - 2  # the call ended just before the answer came
        [load] = stored_events(env, "residency.load")
        assert load["data"]["cause"] == "request" and load["ok"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            log.close()
