"""Building OpenAI-shaped answers: completion objects, stream chunks, tool calls, headers.

Plain dicts and json.dumps rather than pydantic response models: this runs on every request
and chunk, and the server's added latency budget is about a millisecond.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from localroute.types import ToolCall, Usage

DONE = b"data: [DONE]\n\n"


@dataclass
class Routing:
    """How one request was answered: the `localroute` field and the X-Localroute-* headers."""

    trace_id: str
    route: str
    role: str | None
    model: str | None
    decided_by: str
    validation: str
    details: dict[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            "X-Localroute-Trace-Id": self.trace_id,
            "X-Localroute-Route": self.route,
            "X-Localroute-Role": self.role or "none",
            "X-Localroute-Model": _header_safe(self.model or "none"),
            "X-Localroute-Decided-By": self.decided_by,
            "X-Localroute-Validation": self.validation,
        }

    def field(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "route": self.route, "role": self.role,
                "model": self.model, "decided_by": self.decided_by,
                "validation": self.validation, **self.details}


def _header_safe(value: str) -> str:
    return value.encode("ascii", "replace").decode("ascii").replace("\r", " ").replace("\n", " ")


def tool_call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    raw = call.arguments.get("__invalid_json__") if len(call.arguments) == 1 else None
    arguments = raw if isinstance(raw, str) else json.dumps(call.arguments)
    out: dict[str, Any] = {"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": arguments}}
    if index is not None:
        out["index"] = index
    return out


def usage_json(usage: Usage | None) -> dict[str, int]:
    u = usage or Usage()
    total = u.total_tokens or u.prompt_tokens + u.completion_tokens
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": total}


def completion(
    routing: Routing,
    model: str,
    content: str | None,
    *,
    reasoning: str | None = None,
    tool_calls: list[ToolCall] | None = None,
    finish_reason: str | None = "stop",
    usage: Usage | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [tool_call_json(c) for c in tool_calls]
    return {
        "id": f"chatcmpl-{routing.trace_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason or "stop",
                     "logprobs": None}],
        "usage": usage_json(usage),
        "localroute": routing.field(),
    }


class ChunkWriter:
    """Server-sent events in the OpenAI `chat.completion.chunk` format for one answer."""

    def __init__(self, routing: Routing, model: str) -> None:
        self.routing = routing
        self.model = model
        self.id = f"chatcmpl-{routing.trace_id}"
        self.created = int(time.time())

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              **extra: Any) -> bytes:
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                         "logprobs": None}],
            **extra,
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    def role(self) -> bytes:
        return self.chunk({"role": "assistant", "content": ""})

    def content(self, text: str) -> bytes:
        return self.chunk({"content": text})

    def reasoning(self, text: str) -> bytes:
        return self.chunk({"reasoning_content": text})

    def tool_calls(self, calls: list[ToolCall]) -> bytes:
        return self.chunk({"tool_calls": [tool_call_json(c, i) for i, c in enumerate(calls)]})

    def finish(self, reason: str | None) -> bytes:
        # The last chunk carries the routing summary: a stream has no other place for it.
        return self.chunk({}, reason or "stop", localroute=self.routing.field())

    def usage(self, usage: Usage | None) -> bytes:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage_json(usage)}
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    def error(self, message: str, code: str, kind: str = "server_error") -> bytes:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return b"data: " + json.dumps(body).encode() + b"\n\n"


async def replay(routing: Routing, model: str, content: str | None, *,
                 reasoning: str | None = None, tool_calls: list[ToolCall] | None = None,
                 finish_reason: str | None = "stop", usage: Usage | None = None,
                 include_usage: bool = False) -> AsyncIterator[bytes]:
    """A finished answer as a stream (`auto` streams once the pipeline has decided)."""
    writer = ChunkWriter(routing, model)
    yield writer.role()
    if reasoning:
        yield writer.reasoning(reasoning)
    if content:
        yield writer.content(content)
    if tool_calls:
        yield writer.tool_calls(tool_calls)
    yield writer.finish(finish_reason)
    if include_usage:
        yield writer.usage(usage)
    yield DONE
