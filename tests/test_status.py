"""`status`, `mode`, `load` and what-is-loaded, through the CLI and the control-plane dialects.

LM Studio and Ollama cannot run here: their native endpoints are served by a small real HTTP
server answering in the shapes their documentation gives (docs/backends.md: LM Studio,
Ollama), and it records the requests it got.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from localroute.backends.base import ChatRequest
from localroute.backends.health import role_statuses
from localroute.backends.loading import auto_evict_risk, load_role
from localroute.backends.openai_compat import OpenAICompatBackend
from localroute.cli.common import UsageError
from localroute.cli.main import app
from localroute.config.modes import Mode, load_modes
from localroute.governance.governor import Governor
from localroute.governance.homeostasis import Override
from localroute.governance.sensors import Reading
from localroute.governance.state_files import OverrideStore, RuntimeStore
from localroute.governance.status import collect_status
from tests.conftest import make_profile

V1_MODELS = {"models": [
    {"key": "qwen/qwen3-4b-2507", "type": "llm", "format": "mlx", "size_bytes": 4_300_000_000,
     "quantization": {"name": "8bit", "bits_per_weight": 8}, "max_context_length": 262144,
     "loaded_instances": [{"id": "qwen/qwen3-4b-2507",
                           "config": {"context_length": 32768, "parallel": 4}}]},
    {"key": "deepseek-ai/deepseek-r1-distill-qwen-14b", "type": "llm", "size_bytes": 15_700_000_000,
     "max_context_length": 131072, "loaded_instances": []},
    {"key": "qwen/qwen3-1.7b", "type": "llm", "size_bytes": 1_800_000_000,
     "max_context_length": 32768, "loaded_instances": []},
]}
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hi"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class Replay(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def _send(self, body: Any, code: int = 200) -> None:
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def do_GET(self) -> None:
        self._send(V1_MODELS) if self.path == "/api/v1/models" else self._send({}, 404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
        Replay.posts.append((self.path, body))
        if self.path == "/api/v1/models/load":
            self._send({"instance_id": body["model"], "load_time_seconds": 12.5})
        elif self.path == "/api/generate":
            self._send({"model": body["model"], "done": True, "load_duration": 2_000_000_000})
        elif self.path == "/v1/chat/completions":
            self._send(COMPLETION)
        else:
            self._send({"error": "not found"}, 404)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def replay() -> Iterator[str]:
    Replay.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def lms(url: str, model: str, **kw: object) -> dict[str, object]:
    return {"id": model, "backend": "lmstudio", "endpoint": url, "quantization": "8bit", **kw}


async def test_models_report_loaded_state_and_memory(replay: str) -> None:
    profile = make_profile({"router": lms(replay, "qwen/qwen3-4b-2507"),
                            "reasoning": lms(replay, "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")})
    statuses = {s.role: s for s in await role_statuses(profile)}
    assert statuses["router"].loaded is True and statuses["router"].memory_bytes == 4_300_000_000
    assert statuses["reasoning"].loaded is False and statuses["reasoning"].memory_bytes is None


async def test_auto_evict_warning_when_two_roles_would_be_jit_loaded(replay: str) -> None:
    profile = make_profile({"router": lms(replay, "qwen/qwen3-4b-2507"),
                            "reasoning": lms(replay, "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"),
                            "summarization": lms(replay, "qwen/qwen3-1.7b")})
    statuses = await role_statuses(profile)
    warnings = auto_evict_risk(profile.roles.values(), {s.role: s.loaded for s in statuses})
    assert len(warnings) == 1
    assert "2 roles are not loaded" in warnings[0] and "reasoning (" in warnings[0]
    assert "localroute load" in warnings[0]
    # Everything loaded: nothing to warn about.
    assert auto_evict_risk(profile.roles.values(), dict.fromkeys(profile.roles, True)) == []


async def test_load_uses_each_servers_own_endpoint(replay: str) -> None:
    profile = make_profile({
        "router": lms(replay, "qwen/qwen3-4b-2507", context_length=16384),
        "summarization": {"id": "qwen3:1.7b", "backend": "ollama", "endpoint": replay,
                          "context_length": 8192},
        "coding": {"id": "smollm2", "backend": "llamacpp", "endpoint": replay},
    })
    results = {r: await load_role(profile.role(r)) for r in profile.roles}
    # The router's model is listed as loaded: adopted, never loaded a second time (LM Studio
    # would make a second copy).
    assert results["router"].status == "already_loaded"
    assert not any(path == "/api/v1/models/load" for path, _ in Replay.posts)
    assert results["summarization"].status == "loaded"
    assert results["summarization"].load_time_s == 2.0
    assert results["coding"].status == "not_needed"
    reasoning = lms(replay, "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", context_length=16384)
    loaded = await load_role(make_profile({"reasoning": reasoning}).role("reasoning"))
    assert loaded.status == "loaded" and loaded.load_time_s == 12.5
    assert ("/api/v1/models/load", {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
                                    "context_length": 16384, "echo_load_config": True}
            ) in Replay.posts
    ollama = next(body for path, body in Replay.posts if path == "/api/generate")
    assert ollama["keep_alive"] == -1 and ollama["options"] == {"num_ctx": 8192}


async def test_cold_load_extends_the_timeout_and_says_so(replay: str) -> None:
    backend = OpenAICompatBackend("lmstudio", replay)
    try:
        request = ChatRequest(model="qwen/qwen3-1.7b", messages=[{"role": "user", "content": "x"}],
                              timeout=10)
        extended, notes = await backend.cold_load(request, "summarization")
        assert extended.timeout == 10 + backend.cold_load_extra_s
        assert "cold load: 'qwen/qwen3-1.7b' is not loaded" in notes[0]
        warm = request.model_copy(update={"model": "qwen/qwen3-4b-2507"})
        assert await backend.cold_load(warm, "router") == (warm, [])
        # The note travels with the completion of the call that paid for the load.
        fresh = OpenAICompatBackend("lmstudio", replay)
        raw = await fresh.chat(request, role="summarization")
        await fresh.aclose()
        assert raw.content == "hi" and raw.notes and "timeout extended" in raw.notes[0]
    finally:
        await backend.aclose()


async def test_status_reads_the_running_governors_snapshot(tmp_path: Path) -> None:
    modes = load_modes()
    runtime = RuntimeStore(tmp_path / "runtime.json")
    gov = Governor(modes, sources=[], runtime_store=runtime, override_store=OverrideStore(
        tmp_path / "override.json"), extra_snapshot=lambda: {
            "gate_state": {"router": {"capacity": 1, "in_flight": 1, "waiting": 5}}})
    await gov.on_reading(Reading(0.0, {"cpu_percent": 12.0, "queue_depth": 5.0}))
    profile = make_profile({"router": {"id": "SmolLM2-135M-Instruct.Q4_1", "backend": "embedded",
                                       "context_length": 2048}})
    snap = await collect_status(profile, modes, runtime=runtime,
                                overrides=OverrideStore(tmp_path / "override.json"))
    assert snap["mode"] == "NORMAL" and snap["source"].startswith("running governor (pid")
    assert snap["sensors"] == {"cpu_percent": 12.0, "queue_depth": 5.0}
    assert snap["gates"]["router"] == {"capacity": 1, "in_flight": 1, "waiting": 5}
    (router,) = snap["models"]
    assert router["planned_bytes"] > 0 and router["reachable"] is True


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOCALROUTE_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "localroute", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_status_json_snapshot_through_the_cli(tmp_path: Path) -> None:
    OverrideStore(tmp_path / "mode_override.json").save(Override(Mode.ALERT, "load test", 1.0))
    done = cli("status", "--json", "--profile", "embedded", state=tmp_path)
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    assert (snap["mode"], snap["cause"]) == ("ALERT", "load test")
    assert "manual override" in snap["source"]
    assert 0 <= snap["sensors"]["memory_percent"] <= 100
    assert {m["role"] for m in snap["models"]} >= {"router", "validation"}
    assert snap["gates"]["router"]["capacity"] == 1


def test_mode_set_persists_refuses_forbidden_edges_and_clears(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALROUTE_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    missing = runner.invoke(app, ["mode", "set", "alert"])
    assert isinstance(missing.exception, UsageError) and "--reason is required" in str(
        missing.exception)
    done = runner.invoke(app, ["mode", "set", "DEGRADED", "--reason", "disk swap"])
    assert done.exit_code == 0, done.output
    assert OverrideStore(tmp_path / "mode_override.json").load().mode == Mode.DEGRADED  # type: ignore[union-attr]
    refused = runner.invoke(app, ["mode", "set", "NORMAL", "--reason", "back"])
    assert "DEGRADED -> NORMAL is not an allowed edge" in str(refused.exception)
    shown = json.loads(runner.invoke(app, ["mode", "show", "--json"]).output)
    assert shown["mode"] == "DEGRADED" and shown["allowed_next"] == ["RECOVERY", "LOCKDOWN"]
    assert "cleared" in runner.invoke(app, ["mode", "set", "auto"]).output
    assert not (tmp_path / "mode_override.json").exists()


def test_load_refuses_a_stack_that_does_not_fit() -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["load", "--profile", "m4max", "--budget", "10"])
    assert "the pinned set does not fit: router 13.08 GiB" in str(refused.exception)
    assert "nothing was loaded" in str(refused.exception)
    done = runner.invoke(app, ["load", "--profile", "embedded", "--json"])
    assert done.exit_code == 0, done.output
    (router,) = json.loads(done.output)["results"]
    assert router["status"] == "not_needed"
