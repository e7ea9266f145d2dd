"""Any OpenAI-compatible server: LM Studio, Ollama (/v1), llama.cpp, vLLM, gateways.

The data plane is one long-lived `httpx` client per server speaking the OpenAI wire format
(`wire.py`, which says why not the `openai` SDK); the dialect differences (where reasoning goes,
structured-output syntax, errors inside HTTP 200 bodies) are normalised here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from localroute.backends import wire
from localroute.backends.activity import Activity
from localroute.backends.base import ChatRequest, ModelInfo, RawChunk, RawCompletion
from localroute.backends.errors import CallSite, body_error, map_exception, status_error
from localroute.backends.http import make_client
from localroute.backends.introspect import list_models, server_root
from localroute.types import LLMConnectionError, LLMError, LLMServerError

START_HINTS = {
    "lmstudio": "Start LM Studio's server: `lms server start` (and `lms load <model>`).",
    "ollama": "Start Ollama: `ollama serve` (and `ollama pull <model>`).",
    "llamacpp": "Start it: `llama-server -m MODEL.gguf --port PORT` or "
    "`python -m llama_cpp.server --model MODEL.gguf --port PORT --interrupt_requests False`.",
    "vllm": "Start it: `vllm serve MODEL --port PORT`.",
    "openai": "Check the endpoint URL and that the server is running.",
}

# The cheapest "are you up" of each server, below its root. llama-server and vLLM answer /health
# without touching the model; Ollama's /api/version comes from its HTTP layer. llama-cpp-python's
# server has no /health: its 404 comes from the HTTP layer without taking the model lock (which
# /v1/models takes, and which ends a running stream on a server started with its defaults), and
# it loads its model before it listens, so that answer means it is up. Others (LM Studio,
# gateways): the model list, which cuts nothing there.
LIVENESS = {"llamacpp": ("/health", (200, 404)), "vllm": ("/health", (200,)),
            "ollama": ("/api/version", (200,))}
DEFAULT_TIMEOUT_S = 5.0  # control-plane calls (lists, token counts, probes)


# A model a JIT-loading server has not loaded yet costs a load before its first token (tens of
# seconds for a 20B model): the call's timeout grows by this much (modes.yaml cold_load_extra_s
# says the same; the env var lets a process set it without reading modes.yaml here).
COLD_LOAD_ENV = "LOCALROUTE_COLD_LOAD_S"
COLD_LOAD_EXTRA_S = 120.0
LOADED_CACHE_S = 10.0  # how long a list of loaded models is trusted
JIT_KINDS = ("lmstudio", "ollama")
COLD_LOAD_EVENT = "backend.cold_load"


class OpenAICompatBackend:
    """One server endpoint, shared by every role whose model it serves."""

    def __init__(self, kind: str, url: str, api_key: str | None = None) -> None:
        self.kind = kind
        self.url = url.rstrip("/")
        self._chat_url = self.url + "/chat/completions"
        # Local servers ignore the key; gateways and vLLM --api-key need it.
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = make_client(DEFAULT_TIMEOUT_S, headers)
        self._loaded: tuple[float, dict[str, bool | None]] | None = None
        self.cold_load_extra_s = float(os.environ.get(COLD_LOAD_ENV, COLD_LOAD_EXTRA_S))
        self.activity = Activity()

    def site(self, role: str, model: str) -> CallSite:
        return CallSite(role=role, model=model, url=self.url, hint=START_HINTS.get(self.kind, ""))

    def _response_format(self, fmt: dict[str, Any] | None) -> dict[str, Any] | None:
        # llama-cpp-python's server rejects json_schema (HTTP 500) but honours json_object with a
        # schema; llama-server accepts both, so the translation is safe for the whole family.
        if fmt is not None and self.kind == "llamacpp" and fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema", {}).get("schema", {})
            return {"type": "json_object", "schema": schema}
        return fmt

    def _body(self, request: ChatRequest, stream: bool = False) -> dict[str, Any]:
        return wire.request_body(request, self._response_format(request.response_format), stream)

    async def is_loaded(self, model: str) -> bool | None:
        """Whether a JIT-loading server has `model` in memory (None: unknown), cached briefly."""
        if self.kind not in JIT_KINDS:
            return None
        now = time.monotonic()
        if self._loaded is None or now - self._loaded[0] > LOADED_CACHE_S:
            try:
                found = await self.list_models()
            except Exception:  # an unanswered probe only means "unknown": the call itself reports
                return None
            self._loaded = (now, {m.id.lower().split("/")[-1]: m.loaded for m in found})
        return self._loaded[1].get(model.lower().split("/")[-1])

    async def cold_load(self, request: ChatRequest, role: str) -> tuple[ChatRequest, list[str]]:
        """The request with its timeout extended when its model must be loaded first."""
        if self.cold_load_extra_s <= 0 or await self.is_loaded(request.model) is not False:
            return request, []
        note = (f"cold load: '{request.model}' is not loaded on {self.kind} at {self.url}; "
                f"timeout extended by {self.cold_load_extra_s:g} s to "
                f"{request.timeout + self.cold_load_extra_s:g} s for the load")
        import structlog  # the event is a log line; telemetry picks it up from the notes too

        structlog.get_logger("localroute.backends").info(
            COLD_LOAD_EVENT, role=role, model=request.model, url=self.url,
            extra_s=self.cold_load_extra_s)
        if self._loaded is not None:  # the call below loads it
            self._loaded[1][request.model.lower().split("/")[-1]] = True
        return request.model_copy(
            update={"timeout": request.timeout + self.cold_load_extra_s}), [note]

    async def chat(self, request: ChatRequest, role: str = "") -> RawCompletion:
        site = self.site(role, request.model)
        request, notes = await self.cold_load(request, role)
        with self.activity.track():
            try:
                r = await self._http.post(self._chat_url, json=self._body(request),
                                          timeout=request.timeout)
            except Exception as exc:  # every failure becomes one typed error
                raise map_exception(site, exc) from exc
            if r.status_code != 200:
                raise status_error(site, r.status_code, r.content, r.headers)
            data = _json_object(site, r.content)
            error = data.get("error")
            choice = wire.first_choice(data)
            if error is not None or choice is None:
                raise body_error(site, error or "the response had no choices")
            return wire.completion(data, choice, request.model, notes)

    async def stream(self, request: ChatRequest, role: str = "") -> AsyncIterator[RawChunk]:
        site = self.site(role, request.model)
        request, _ = await self.cold_load(request, role)
        reader = wire.ChunkReader()
        with self.activity.track():
            try:
                async with self._http.stream("POST", self._chat_url,
                                             json=self._body(request, stream=True),
                                             timeout=request.timeout) as r:
                    if r.status_code != 200:
                        raise status_error(site, r.status_code, await r.aread(), r.headers)
                    if "text/event-stream" not in r.headers.get("content-type", ""):
                        data = _json_object(site, await r.aread())
                        raise body_error(site, data.get("error") or
                                         "the server answered a stream request without an "
                                         f"event stream ({r.headers.get('content-type')})")
                    async for event in EventSource(r).aiter_sse():
                        if event.data == wire.DONE:
                            break
                        if not event.data.strip():  # a keep-alive or named empty event
                            continue
                        data = _json_object(site, event.data.encode())
                        if data.get("error") is not None:
                            raise body_error(site, data["error"])
                        chunk = reader.read(data)
                        if chunk is not None:
                            yield chunk
            except LLMError:
                raise
            except (httpx.HTTPError, SSEError, OSError) as exc:
                raise map_exception(site, exc) from exc
            if not reader.finished:
                raise LLMConnectionError(
                    f"{site.where()}: the stream ended before the model finished (truncated)",
                    role=role,
                    model=request.model,
                    url=self.url,
                )

    async def liveness(self, timeout: float) -> str | None:
        """None when the server answers its cheapest liveness check, else why not. Uses the
        long-lived client: a probe builds no client, TLS context or connection pool."""
        check = LIVENESS.get(self.kind)
        try:
            if check is None:
                await list_models(self.kind, self.url, self._http, timeout)
                return None
            r = await self._http.get(server_root(self.url) + check[0], timeout=timeout)
        except Exception as exc:  # any failure to answer is the reason
            cause = exc.__cause__ or exc
            return f"not answering ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})"
        if r.status_code in check[1]:
            return None
        return f"GET {check[0]} answered HTTP {r.status_code}"

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        """Exact counts where the server has a tokenizer endpoint (llama.cpp family only)."""
        if self.kind != "llamacpp":
            return None
        text = "\n".join(str(m.get("content") or "") for m in messages)
        root = server_root(self.url)
        try:
            r = await self._http.post(f"{root}/tokenize", json={"content": text})
            if r.status_code == 200 and "tokens" in r.json():
                return len(r.json()["tokens"]) + 4 * len(messages)
            r = await self._http.post(
                f"{root}/extras/tokenize/count", json={"input": text, "model": model}
            )
            if r.status_code == 200:
                return int(r.json()["count"]) + 4 * len(messages)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        return None

    async def list_models(self) -> list[ModelInfo]:
        return await list_models(self.kind, self.url, self._http, DEFAULT_TIMEOUT_S)

    async def aclose(self) -> None:
        await self._http.aclose()


def _json_object(site: CallSite, body: bytes) -> dict[str, Any]:
    """A JSON object from the server, or a server error quoting what came instead."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        text = body[:200].decode("utf-8", errors="replace")
        raise LLMServerError(f"{site.where()}: the server answered with something that is not a "
                             f"JSON object: {text!r}", status=None, role=site.role,
                             model=site.model, url=site.url)
    return data
