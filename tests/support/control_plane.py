"""A real HTTP server that answers like LM Studio and Ollama control planes, with state.

LM Studio and Ollama cannot run here, so their native endpoints are replayed in the response
shapes their documentation gives (docs/backends.md: LM Studio, Ollama):
`GET /api/v1/models` with `loaded_instances`, `POST /api/v1/models/load|unload`, Ollama's
`GET /api/tags`, `GET /api/ps` and `POST /api/generate` with `keep_alive`. Loads and unloads
change what the listings say, and like LM Studio a second load of a loaded model makes a second
instance. Every request is recorded; `/v1/chat/completions` answers one fixed completion and
records whether the model was loaded when it was asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPLETION = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "finish_reason": "stop",
                           "message": {"role": "assistant", "content": "hi"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


@dataclass
class ControlState:
    lmstudio: dict[str, int] = field(default_factory=dict)  # model key -> size_bytes
    ollama: dict[str, int] = field(default_factory=dict)  # model name -> size
    instances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # LM Studio
    running: dict[str, int] = field(default_factory=dict)  # Ollama: name -> keep_alive
    log: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    calls: list[tuple[str, bool]] = field(default_factory=list)  # (model, loaded when called)
    most_instances: int = 0  # the most LM Studio instances of one model at any moment
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [body for method, p, body in self.log if method == "POST" and p == path]


def _handler(state: ControlState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, body: Any, code: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with state.lock:
                state.log.append(("GET", self.path, {}))
                if self.path == "/api/v1/models":
                    self._send({"models": [
                        {"key": k, "type": "llm", "size_bytes": size, "max_context_length": 32768,
                         "loaded_instances": list(state.instances.get(k, []))}
                        for k, size in state.lmstudio.items()]})
                elif self.path == "/api/tags":
                    self._send({"models": [{"name": n, "size": s} for n, s in
                                           state.ollama.items()]})
                elif self.path == "/api/ps":
                    self._send({"models": [
                        {"name": n, "size": state.ollama[n], "size_vram": state.ollama[n],
                         "context_length": 8192, "expires_at": "2026-12-01T10:00:00Z"}
                        for n in state.running]})
                else:
                    self._send({"error": "not found"}, 404)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
            with state.lock:
                state.log.append(("POST", self.path, body))
                self._post(body)

        def _post(self, body: dict[str, Any]) -> None:
            if self.path == "/api/v1/models/load":
                key = body["model"]
                if key not in state.lmstudio:
                    return self._send({"error": f"model {key} not found"}, 404)
                copies = state.instances.setdefault(key, [])
                instance_id = key if not copies else f"{key}:{len(copies) + 1}"
                copies.append({"id": instance_id,
                               "config": {"context_length": body.get("context_length")}})
                state.most_instances = max(state.most_instances, len(copies))
                return self._send({"instance_id": instance_id, "load_time_seconds": 1.5})
            if self.path == "/api/v1/models/unload":
                for key, copies in state.instances.items():
                    state.instances[key] = [c for c in copies if c["id"] != body["instance_id"]]
                return self._send({"instance_id": body["instance_id"]})
            if self.path == "/api/generate":
                name = body["model"]
                if body.get("keep_alive") == 0:
                    state.running.pop(name, None)
                    return self._send({"model": name, "done": True, "done_reason": "unload"})
                state.running[name] = body.get("keep_alive", 300)
                return self._send({"model": name, "done": True, "load_duration": 2_000_000_000})
            if self.path == "/v1/chat/completions":
                model = body["model"]
                loaded = bool(state.instances.get(model)) or model in state.running
                state.calls.append((model, loaded))
                return self._send(COMPLETION)
            return self._send({"error": "not found"}, 404)

        def log_message(self, *args: object) -> None:
            return None

    return Handler


@contextmanager
def control_server(state: ControlState) -> Iterator[str]:
    """The replaying server on a free loopback port; yields its OpenAI base URL (…/v1)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
