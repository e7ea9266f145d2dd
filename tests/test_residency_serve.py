"""The acceptance path with a real `localroute serve` and the two-model managed profile (SmolLM2
and Gemma 3 270M, a 0.4 GiB budget that holds one of them; see test_residency.py for the
sizes): a request to a role whose model is not loaded loads it and answers, a streamed one says
it is loading first, `localroute status --json` then shows it resident with its footprint and
TTL expiry, after the TTL it is gone with its process, and SIGTERM leaves no server behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil

from tests.support.polling import until
from tests.support.servers import free_port, gguf_path, managed_by, wait_for_http

TTL_S = 40  # long enough for a `localroute status` subprocess on a busy two-core machine


def write_config(path: Path, gemma: Path) -> Path:
    path.write_text(f"""version: 1
auto_profiles: [local]
profiles:
  local:
    memory_budget_gb: 0.4
    min_residency: 0
    roles:
      router:
        backend: llamacpp
        model_path: {gguf_path()}
        context_length: 512
        max_tokens: 8
        temperature: 0
        residency: on_demand
      reasoning:
        backend: llamacpp
        model_path: {gemma}
        chat_format: gemma
        context_length: 512
        max_tokens: 8
        temperature: 0
        residency: on_demand
        idle_ttl: {TTL_S}
""")
    return path


def status(env: dict[str, str], config: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "localroute", "--config", str(config),
                           "status", "--json"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def instance(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in data["residency"]["instances"] if i["instance"] == name)


def test_serve_loads_on_demand_shows_it_in_status_and_unloads_after_the_ttl(
        tmp_path: Path, gemma_gguf: Path) -> None:
    config = write_config(tmp_path / "models.yaml", gemma_gguf)
    env = {**os.environ, "LOCALROUTE_STATE_DIR": str(tmp_path / "state")}
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "localroute", "--config", str(config), "serve",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/health", proc, 120, "localroute serve")  # type: ignore[arg-type]
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", timeout=300)
        answer = client.chat.completions.create(model="router", max_tokens=8, messages=[
            {"role": "user", "content": "Say hi."}])
        assert answer.choices[0].message.content
        # Streamed, to a model that is not loaded: the wait is announced as reasoning first.
        chunks = list(client.chat.completions.create(model="reasoning", stream=True, messages=[
            {"role": "user", "content": "Say hi."}]))
        reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                            for c in chunks if c.choices)
        assert reasoning.startswith("loading gemma-3-270m-q4_k_m, ~")

        def published() -> dict[str, Any] | None:
            d = status(env, config)
            live = d["residency"]["source"] == "running server"
            return d if live and instance(d, "reasoning")["state"] == "ready" else None

        data = until(published, 120, "the status snapshot")
        row = instance(data, "reasoning")
        assert row["footprint_bytes"] == 323_133_952 and row["loads"] == 1
        assert row["ttl_expires_at"] is not None
        assert abs(row["ttl_expires_at"] - (row["last_used"] + TTL_S)) < 0.01
        assert instance(data, "router")["state"] == "stopped"  # evicted for it
        pid = row["pid"]
        assert psutil.pid_exists(pid)
        metrics = httpx.get(base + "/metrics").text
        assert 'localroute_model_loads_total{instance="router",model="SmolLM2-135M' in metrics
        assert ('localroute_model_evictions_total{cause="memory",instance="router",model="SmolLM2-'
                '135M-Instruct.Q4_1"} 1.0') in metrics
        # After the TTL: unloaded, and its process gone with it.
        until(lambda: instance(status(env, config), "reasoning")["state"] == "stopped",
              TTL_S + 120, "the idle TTL")
        until(lambda: not psutil.pid_exists(pid) or
              psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 15, "the process to end")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            log.close()
    # uvicorn shuts down gracefully (the app's lifespan stops the managed servers), then raises
    # the SIGTERM it caught again with the default handler: -15 is a clean exit here.
    assert proc.returncode in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()[-2000:]
    assert managed_by(proc.pid) == []  # SIGTERM stopped its servers
