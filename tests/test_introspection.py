"""Model introspection in each server's dialect.

LM Studio and Ollama cannot run here, so their native endpoints are served by a small real HTTP
server replaying response bodies in the shapes their documentation gives (docs/backends.md); the
llama.cpp path runs against the real server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localroute.backends.health import role_statuses
from localroute.backends.openai_compat import OpenAICompatBackend
from tests.conftest import make_profile, server_role
from tests.support.servers import LlamaServer

LMSTUDIO_V0 = {"object": "list", "data": [
    {"id": "qwen/qwen3-4b-2507", "object": "model", "type": "llm", "publisher": "qwen",
     "arch": "qwen3", "compatibility_type": "mlx", "quantization": "8bit", "state": "loaded",
     "max_context_length": 262144},
    {"id": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "object": "model", "type": "llm",
     "quantization": "8bit", "state": "not-loaded", "max_context_length": 131072},
]}
OLLAMA_TAGS = {"models": [{"name": "qwen3:4b", "size": 2600000000},
                          {"name": "qwen3:1.7b", "size": 1400000000}]}
OLLAMA_PS = {"models": [{"name": "qwen3:4b", "size": 5100000000, "size_vram": 5100000000,
                         "context_length": 32768, "expires_at": "2026-11-26T10:00:00Z"}]}
ROUTES = {"/api/v0/models": LMSTUDIO_V0, "/api/tags": OLLAMA_TAGS, "/api/ps": OLLAMA_PS}


class Replay(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ROUTES.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body or {"error": "not found"}).encode())

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def replay() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_lmstudio_native_state(replay: str) -> None:
    backend = OpenAICompatBackend("lmstudio", replay)
    try:
        models = {m.id: m for m in await backend.list_models()}
    finally:
        await backend.aclose()
    assert models["qwen/qwen3-4b-2507"].loaded is True
    assert models["deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"].loaded is False


async def test_ollama_ps_marks_what_is_in_memory(replay: str) -> None:
    backend = OpenAICompatBackend("ollama", replay)
    try:
        models = {m.id: m for m in await backend.list_models()}
    finally:
        await backend.aclose()
    assert models["qwen3:4b"].loaded is True and models["qwen3:4b"].size_bytes == 5100000000
    assert models["qwen3:4b"].context_length == 32768
    assert models["qwen3:1.7b"].loaded is False


async def test_role_statuses_report_served_loaded_and_missing(replay: str) -> None:
    profile = make_profile({
        "router": {"id": "qwen/qwen3-4b-2507", "backend": "lmstudio", "endpoint": replay},
        "reasoning": {"id": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "backend": "lmstudio",
                      "endpoint": replay},
        "coding": {"id": "mistralai/devstral-small-2-2512", "backend": "lmstudio",
                   "endpoint": replay},
    })
    statuses = {s.role: s for s in await role_statuses(profile)}
    assert statuses["router"].loaded is True and statuses["router"].problem is None
    assert statuses["reasoning"].served is True and statuses["reasoning"].loaded is False
    coding = statuses["coding"]
    assert coding.served is False and coding.problem is not None
    assert "is not served" in coding.problem and "lms get mistralai/devstral" in (coding.fix or "")


async def test_llamacpp_lists_its_alias(llama_server: LlamaServer) -> None:
    profile = make_profile({"router": server_role(llama_server.base_url)})
    (status,) = await role_statuses(profile)
    assert status.reachable and status.served and status.loaded is None
