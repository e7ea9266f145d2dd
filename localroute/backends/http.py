"""The HTTP clients backends talk through: long-lived, one per server, sharing one TLS context.

Building a TLS context loads the CA bundle (tens of milliseconds, measured at ~30 ms each on the
2-core test machine), and httpx builds one for every client it creates, even for plain-http
local servers. So the context is built once per process, on first use, and every client gets it.
"""

from __future__ import annotations

import ssl
import threading

import httpx

# uvicorn (llama-cpp-python's server, LM Studio's gateway, vLLM) closes an idle keep-alive
# connection after 5 s: a connection idle longer is not reused, so a request never races the
# server's close and fails with "Server disconnected".
KEEPALIVE_EXPIRY_S = 4.0

_context: ssl.SSLContext | None = None
_lock = threading.Lock()


def shared_ssl_context() -> ssl.SSLContext:
    global _context
    with _lock:
        if _context is None:
            _context = httpx.create_ssl_context()
        return _context


def make_client(timeout: float, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=shared_ssl_context(), timeout=timeout, headers=headers,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64,
                            keepalive_expiry=KEEPALIVE_EXPIRY_S))
