"""The governor inside `localroute serve`: a manual mode set from another process reaches the
running server, downgrades and refuses its requests, narrows its gates, shows in `localroute
status`, and lands in the telemetry store. Real subprocesses, the real llama.cpp server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import MODEL_ALIAS, LlamaServer
from tests.test_server import Serve, write_config

CODING_QUESTION = "Write a Python function that reverses a string"


def localroute(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALROUTE_")}
    done = subprocess.run([sys.executable, "-m", "localroute", *args], capture_output=True,
                          text=True, timeout=120, env={**environ, **env})
    assert done.returncode == 0, f"localroute {' '.join(args)}: {done.stderr}"
    return done


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def health_mode(server: Serve) -> str:
    mode: str = httpx.get(server.url + "/health", timeout=5).json()["mode"]
    return mode


def runtime(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "runtime.json").read_text())
    return data


def test_manual_degraded_downgrades_refuses_and_is_recorded(
        llama_server: LlamaServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"LOCALROUTE_STATE_DIR": str(state)}
    router = {"id": MODEL_ALIAS, "backend": "llamacpp", "endpoint": llama_server.base_url,
              "context_length": 2048, "max_concurrency": 4, "max_tokens": 8,
              "temperature": 0.0, "retries": 0}
    config = write_config(tmp_path / "models.yaml", llama_server.base_url, router=router)
    # The shared llama.cpp server may still be finishing an earlier test's abandoned answer,
    # and misses health probes meanwhile (the sensors would rightly call it down): start idle.
    httpx.post(llama_server.base_url + "/chat/completions", timeout=300, json={
        "model": MODEL_ALIAS, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    server = Serve(config, env=env, governed=True)
    try:
        assert health_mode(server) == "NORMAL"
        assert runtime(state)["gate_state"]["router"]["capacity"] == 4
        localroute("mode", "set", "DEGRADED", "--reason", "test", env=env)
        wait_for("the server to pick up DEGRADED", lambda: health_mode(server) == "DEGRADED")

        client = server.client()
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": CODING_QUESTION}], max_tokens=8)
        completion = raw.parse()
        summary = (completion.model_extra or {})["localroute"]
        assert completion.choices[0].message.content
        assert (summary["route"], summary["role"]) == ("coding", "router")
        assert summary["downgraded_from"] == "coding" and summary["mode"] == "DEGRADED"
        assert raw.headers["x-localroute-role"] == "router"

        # A heavy request is refused while the mode lasts, saying why and what to do.
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(
                model="router", messages=[{"role": "user", "content": "word " * 5000}])
        assert refused.value.status_code == 503
        assert "mode DEGRADED (set by hand: test)" in refused.value.message
        assert "over 4000 prompt tokens" in refused.value.message

        # `localroute status` reads the live snapshot: mode, narrowed gates, recent requests.
        wait_for("the snapshot to list both requests",
                 lambda: len(runtime(state).get("recent_requests", [])) >= 2)
        status = json.loads(localroute("--config", str(config), "status", "--json",
                                       "--profile", "test", env=env).stdout)
        assert status["mode"] == "DEGRADED" and status["source"].startswith("running governor")
        assert status["gates"]["router"] == {"capacity": 1, "in_flight": 0, "waiting": 0}
        assert "cpu_percent" in status["sensors"]
        recent = status["recent_requests"]
        assert [(r["route"], r["role"], r["status"]) for r in recent[-2:]] == [
            ("coding", "router", 200), ("direct", "router", 503)]
        assert recent[-2]["trace_id"] == summary["trace_id"]
        assert recent[-1]["code"] == "mode_refused"

        localroute("mode", "set", "auto", env=env)
        # DEGRADED recovers through RECOVERY (the graph has no DEGRADED -> NORMAL edge).
        wait_for("the sensors to take over", lambda: health_mode(server) == "RECOVERY")
        assert wait_for("RECOVERY's wider gates",
                        lambda: runtime(state)["gate_state"]["router"]["capacity"] == 2)

        def changes() -> list[dict[str, Any]]:
            rows = json.loads(localroute("telemetry", "query", "--event", "mode.change",
                                         "--json", env=env).stdout)
            return [r["data"] for r in reversed(rows)] if len(rows) >= 2 else []

        recorded = wait_for("both mode changes in the store", changes)
        assert [(c["from"], c["to"], c["manual"]) for c in recorded[:2]] == [
            ("NORMAL", "DEGRADED", True), ("DEGRADED", "RECOVERY", False)]
        assert recorded[0]["reason"] == "manual: test"
        assert "cpu_percent" in recorded[0]["readings"]  # what the sensors read at the time
        refusals = json.loads(localroute("telemetry", "query", "--event", "governance.refusal",
                                         "--json", env=env).stdout)
        assert [r["role"] for r in refusals] == ["router"]
        assert refusals[0]["data"]["prompt_tokens"] > 4000
    finally:
        server.stop()
    assert not (state / "runtime.json").exists()  # a clean stop tells `status` it is gone
