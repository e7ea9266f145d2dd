"""A real HTTP server that replays fixed JSON answers, standing in for model servers that cannot
run here (LM Studio, Ollama, vLLM; llama-server's native endpoints). The bodies are written in the
shapes each server's documentation gives; see tests/test_init_discovery.py for their sources."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# path -> body for GET; for POST, path -> {request "model" (or "name") -> body}
Routes = dict[str, Any]


def _handler(get: Routes, post: dict[str, dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Replay(BaseHTTPRequestHandler):
        def _send(self, body: Any) -> None:
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body if body is not None else
                                        {"error": "not found"}).encode())

        def do_GET(self) -> None:
            self._send(get.get(self.path))

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            by_model = post.get(self.path, {})
            self._send(by_model.get(request.get("model") or request.get("name")))

        def log_message(self, *args: object) -> None:
            return None

    return Replay


@contextmanager
def replaying(get: Routes, post: dict[str, dict[str, Any]] | None = None) -> Iterator[str]:
    """A replay server on a free loopback port; yields its root URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(get, post or {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
