"""Any OpenAI-compatible server: LM Studio, Ollama (/v1), llama.cpp, vLLM, gateways.

The data plane is the official `openai` SDK; the dialect differences (where reasoning goes,
structured-output syntax, errors inside HTTP 200 bodies) are normalised here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai

from localroute.backends.base import ChatRequest, ModelInfo, RawChunk, RawCompletion
from localroute.backends.errors import CallSite, body_error, map_exception
from localroute.backends.introspect import list_models, server_root
from localroute.types import LLMConnectionError, LLMError, ToolCall, Usage

START_HINTS = {
    "lmstudio": "Start LM Studio's server: `lms server start` (and `lms load <model>`).",
    "ollama": "Start Ollama: `ollama serve` (and `ollama pull <model>`).",
    "llamacpp": "Start it: `llama-server -m MODEL.gguf --port PORT` or "
    "`python -m llama_cpp.server --model MODEL.gguf --port PORT`.",
    "vllm": "Start it: `vllm serve MODEL --port PORT`.",
    "openai": "Check the endpoint URL and that the server is running.",
}


# A model a JIT-loading server has not loaded yet costs a load before its first token (tens of
# seconds for a 20B model): the call's timeout grows by this much (modes.yaml cold_load_extra_s
# says the same; the env var lets a process set it without reading modes.yaml here).
COLD_LOAD_ENV = "LOCALROUTE_COLD_LOAD_S"
COLD_LOAD_EXTRA_S = 120.0
LOADED_CACHE_S = 10.0  # how long a list of loaded models is trusted
JIT_KINDS = ("lmstudio", "ollama")
COLD_LOAD_EVENT = "backend.cold_load"


def _reasoning_of(obj: Any) -> str | None:
    # LM Studio / llama-server: reasoning_content; Ollama and newer vLLM: reasoning.
    extra = getattr(obj, "model_extra", None) or {}
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _arguments(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        # Kept, not dropped: the tool registry reports it as invalid arguments to the model.
        return {"__invalid_json__": raw}
    return value if isinstance(value, dict) else {"__invalid_json__": raw}


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(
        prompt_tokens=raw.prompt_tokens or 0,
        completion_tokens=raw.completion_tokens or 0,
        total_tokens=raw.total_tokens or 0,
    )


class OpenAICompatBackend:
    """One server endpoint, shared by every role whose model it serves."""

    def __init__(self, kind: str, url: str, api_key: str | None = None) -> None:
        self.kind = kind
        self.url = url.rstrip("/")
        self._client = openai.AsyncOpenAI(
            base_url=self.url,
            api_key=api_key or "localroute",  # local servers ignore it; the SDK wants one
            max_retries=0,  # the client owns retries, fallbacks and their telemetry
        )
        self._http = httpx.AsyncClient(timeout=5.0)
        self._loaded: tuple[float, dict[str, bool | None]] | None = None
        self.cold_load_extra_s = float(os.environ.get(COLD_LOAD_ENV, COLD_LOAD_EXTRA_S))

    def site(self, role: str, model: str) -> CallSite:
        return CallSite(role=role, model=model, url=self.url, hint=START_HINTS.get(self.kind, ""))

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": request.model, "messages": request.messages}
        for key in ("max_tokens", "temperature", "top_p"):
            value = getattr(request, key)
            if value is not None:
                kwargs[key] = value
        if request.tools:
            kwargs["tools"] = request.tools
        if request.response_format is not None:
            kwargs["response_format"] = self._response_format(request.response_format)
        extra = dict(request.extra_body)
        if not request.tools:
            extra.pop("tool_choice", None)  # servers reject tool_choice without tools
        if extra:
            kwargs["extra_body"] = extra
        kwargs["timeout"] = request.timeout
        return kwargs

    def _response_format(self, fmt: dict[str, Any]) -> dict[str, Any]:
        # llama-cpp-python's server rejects json_schema (HTTP 500) but honours json_object with a
        # schema; llama-server accepts both, so the translation is safe for the whole family.
        if self.kind == "llamacpp" and fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema", {}).get("schema", {})
            return {"type": "json_object", "schema": schema}
        return fmt

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
        try:
            completion = await self._client.chat.completions.create(**self._kwargs(request))
        except Exception as exc:  # every failure becomes one typed error
            raise map_exception(site, exc) from exc
        error = (completion.model_extra or {}).get("error")
        if error is not None or not completion.choices:
            raise body_error(site, error or "the response had no choices")
        choice = completion.choices[0]
        message = choice.message
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=_arguments(c.function.arguments))
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        return RawCompletion(
            content=message.content or "",
            reasoning=_reasoning_of(message),
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            usage=_usage(completion.usage),
            model=completion.model or request.model,
            notes=notes,
        )

    async def stream(self, request: ChatRequest, role: str = "") -> AsyncIterator[RawChunk]:
        site = self.site(role, request.model)
        request, _ = await self.cold_load(request, role)
        kwargs = self._kwargs(request)
        partial: dict[int, dict[str, str]] = {}
        finished = False
        try:
            chunks = await self._client.chat.completions.create(stream=True, **kwargs)
            async for chunk in chunks:
                error = (chunk.model_extra or {}).get("error")
                if error is not None:
                    raise body_error(site, error)
                if not chunk.choices:
                    if chunk.usage is not None:
                        yield RawChunk(usage=_usage(chunk.usage))
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                for tc in delta.tool_calls or []:
                    slot = partial.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        # OpenAI sends the name once; llama-cpp-python repeats it in every
                        # delta. A name already whole is a repeat, not another fragment.
                        name = tc.function.name or ""
                        if name != slot["name"]:
                            slot["name"] += name
                        slot["args"] += tc.function.arguments or ""
                out = RawChunk(
                    content=delta.content or "",
                    reasoning=_reasoning_of(delta) or "",
                    finish_reason=choice.finish_reason,
                    usage=_usage(chunk.usage),
                )
                if choice.finish_reason is not None:
                    finished = True
                    out.tool_calls = [
                        ToolCall(
                            id=s["id"] or f"call{i}",
                            name=s["name"],
                            arguments=_arguments(s["args"]),
                        )
                        for i, s in sorted(partial.items())
                    ]
                yield out
        except LLMError:
            raise
        except Exception as exc:
            raise map_exception(site, exc) from exc
        if not finished:
            raise LLMConnectionError(
                f"{site.where()}: the stream ended before the model finished (truncated)",
                role=role,
                model=request.model,
                url=self.url,
            )

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
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        return None

    async def list_models(self) -> list[ModelInfo]:
        return await list_models(self.kind, self.url, self._client, self._http)

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()
