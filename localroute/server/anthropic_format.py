"""Anthropic-shaped answers: errors, a whole message, and a stream of Anthropic SSE events.

Both are made from the OpenAI answer the shared pipelines produce (server/chat.py), so the
Anthropic endpoint can never behave differently from the OpenAI one: same routing, validation,
admission and telemetry. Plain dicts and json.dumps, as in openai_format.py, for speed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

# HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors).
_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    503: "overloaded_error", 529: "overloaded_error",
}

ANTHROPIC_TYPES = frozenset({*_TYPES.values(), "api_error"})

# OpenAI finish_reason -> Anthropic stop_reason.
_STOPS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
          "content_filter": "refusal"}


def error_type(status: int) -> str:
    if status in _TYPES:
        return _TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """Anthropic's error object; `code` is localroute's own (SDKs ignore the extra key)."""
    error: dict[str, Any] = {"type": error_type(status), "message": message}
    if code:
        error["code"] = code
    return {"type": "error", "error": error}


def stop_reason(finish_reason: str | None) -> str:
    return _STOPS.get(finish_reason or "stop", "end_turn")


def tool_input(arguments: str) -> dict[str, Any]:
    """The tool call's arguments as an object; arguments a model wrote as broken JSON are kept
    visible under `__invalid_json__` (as the OpenAI side keeps them), never silently dropped."""
    try:
        value = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return {"__invalid_json__": arguments}
    return value if isinstance(value, dict) else {"__invalid_json__": arguments}


def usage(openai_usage: dict[str, Any] | None) -> dict[str, int]:
    u = openai_usage or {}
    return {"input_tokens": int(u.get("prompt_tokens") or 0),
            "output_tokens": int(u.get("completion_tokens") or 0)}


def message_id(routing: dict[str, Any] | None) -> str:
    return f"msg_{(routing or {}).get('trace_id') or 'localroute'}"


def message(completion: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion as an Anthropic message (thinking, text, tool_use blocks)."""
    choice = completion["choices"][0]
    m = choice["message"]
    content: list[dict[str, Any]] = []
    if m.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": m["reasoning_content"], "signature": ""})
    if m.get("content"):
        content.append({"type": "text", "text": m["content"]})
    for call in m.get("tool_calls") or []:
        content.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                        "input": tool_input(call["function"]["arguments"])})
    routing = completion.get("localroute")
    return {"id": message_id(routing), "type": "message", "role": "assistant",
            "model": completion["model"], "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")), "stop_sequence": None,
            "usage": usage(completion.get("usage")), "localroute": routing}


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class EventTranslator:
    """OpenAI `chat.completion.chunk` events in, Anthropic stream events out.

    Each OpenAI delta opens a content block of its kind (thinking, text, tool_use) when the
    previous block was of another kind, so the client sees the blocks in the order written.
    The server's own OpenAI writers send each tool call whole (id, name and arguments in one
    delta), which becomes one tool_use block with one input_json_delta.
    """

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.index = -1
        self.kind: str | None = None  # the open block's type
        self.stop: str | None = None
        self.usage: dict[str, Any] | None = None
        self.routing: dict[str, Any] | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            return []
        if data.strip() == b"[DONE]":
            return self.finish()
        chunk: dict[str, Any] = json.loads(data)
        if "error" in chunk:  # headers are gone: the error travels in the stream, then it ends
            self.done = True
            error = chunk["error"]
            kind = error.get("type")  # OpenAI's server_error, invalid_response_error...
            return [sse("error", {"type": "error", "error": {
                "type": kind if kind in ANTHROPIC_TYPES else "api_error",
                "message": error.get("message", ""), "code": error.get("code")}})]
        out = [] if self.started else [self._start(chunk)]
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                out += self._delta("thinking", {"type": "thinking_delta",
                                                "thinking": delta["reasoning_content"]})
            if delta.get("content"):
                out += self._delta("text", {"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.stop = stop_reason(choice["finish_reason"])
                self.routing = chunk.get("localroute") or self.routing
        return out

    def finish(self) -> list[bytes]:
        if self.done:
            return []
        self.done = True
        out = [] if self.started else [self._start({})]
        out += self._close()
        out.append(sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop or "end_turn", "stop_sequence": None},
            "usage": usage(self.usage), "localroute": self.routing}))
        out.append(sse("message_stop", {"type": "message_stop"}))
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        self.routing = chunk.get("localroute")
        return sse("message_start", {"type": "message_start", "message": {
            "id": message_id(self.routing), "type": "message", "role": "assistant",
            "model": chunk.get("model", ""), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
            "localroute": self.routing}})

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.index += 1
        self.kind = kind
        out.append(sse("content_block_start", {"type": "content_block_start",
                                               "index": self.index, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = None
        return [sse("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if self.kind != kind:
            empty = {"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking" \
                else {"type": "text", "text": ""}
            out = self._open(kind, empty)
        out.append(sse("content_block_delta", {"type": "content_block_delta",
                                               "index": self.index, "delta": delta}))
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        fn = call.get("function") or {}
        out = self._open("tool_use", {"type": "tool_use", "id": call.get("id", ""),
                                      "name": fn.get("name", ""), "input": {}})
        # Re-encoded: the client's SDK parses the partial JSON, broken arguments would break it.
        arguments = json.dumps(tool_input(fn.get("arguments") or ""))
        out.append(sse("content_block_delta", {"type": "content_block_delta",
                                               "index": self.index, "delta": {
                                                   "type": "input_json_delta",
                                                   "partial_json": arguments}}))
        out += self._close()
        return out


async def translate(chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """An OpenAI SSE body as an Anthropic one. Closing this closes the OpenAI stream too, so
    a client that leaves still cancels the model call and frees its slot."""
    translator = EventTranslator()
    pending = b""
    async with aclosing(chunks):
        async for raw in chunks:
            pending += raw
            while b"\n\n" in pending:
                event, pending = pending.split(b"\n\n", 1)
                for line in event.splitlines():
                    if line.startswith(b"data:"):
                        for out in translator.feed(line[5:].strip()):
                            yield out
    for out in translator.finish():
        yield out
