"""The OpenAI chat wire format, read and written as plain JSON.

The request body is built straight from a `ChatRequest` and answers are read straight from the
decoded JSON, without the `openai` SDK's typed layer: that layer (its parameter transform,
request building and response models) was most of what `localroute serve` added to a call
(issue 13's profile), and it bought nothing here: localroute owns retries, maps errors to its
own types and needs only a handful of fields. Every field is read defensively: the body is the
model server's, so untrusted.
"""

from __future__ import annotations

import json
from typing import Any

from localroute.backends.base import ChatRequest, RawChunk, RawCompletion
from localroute.types import ToolCall, Usage

DONE = "[DONE]"


def request_body(request: ChatRequest, response_format: dict[str, Any] | None,
                 stream: bool = False) -> dict[str, Any]:
    """The JSON body for /chat/completions; `extra_body` fields go at the top level, as the
    SDK's `extra_body` did (they win over the named fields, for servers' own extensions)."""
    body: dict[str, Any] = {"model": request.model, "messages": request.messages}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = request.tools
    if response_format is not None:
        body["response_format"] = response_format
    if stream:
        body["stream"] = True
    if request.extra_body:
        extra = dict(request.extra_body)
        if not request.tools:
            extra.pop("tool_choice", None)  # servers reject tool_choice without tools
        body.update(extra)
    return body


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _reasoning(obj: dict[str, Any]) -> str:
    # LM Studio / llama-server: reasoning_content; Ollama and newer vLLM: reasoning.
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw or not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        # Kept, not dropped: the tool registry reports it as invalid arguments to the model.
        return {"__invalid_json__": raw}
    return value if isinstance(value, dict) else {"__invalid_json__": raw}


def usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) else 0

    return Usage(prompt_tokens=count("prompt_tokens"),
                 completion_tokens=count("completion_tokens"),
                 total_tokens=count("total_tokens"))


def first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def completion(data: dict[str, Any], choice: dict[str, Any], model: str,
               notes: list[str]) -> RawCompletion:
    """A non-streaming answer's first choice."""
    message = _obj(choice.get("message"))
    calls = []
    for raw in message.get("tool_calls") or []:
        fn = _obj(_obj(raw).get("function"))
        if fn:
            calls.append(ToolCall(id=_text(raw.get("id")), name=_text(fn.get("name")),
                                  arguments=arguments(fn.get("arguments"))))
    finish = choice.get("finish_reason")
    return RawCompletion(
        content=_text(message.get("content")),
        reasoning=_reasoning(message) or None,
        tool_calls=calls,
        finish_reason=finish if isinstance(finish, str) else None,
        usage=usage(data.get("usage")),
        model=_text(data.get("model")) or model,
        notes=notes,
    )


class ChunkReader:
    """Stream chunks to `RawChunk`s; tool-call pieces are joined by index and handed out with
    the chunk that carries the finish reason."""

    def __init__(self) -> None:
        self.partial: dict[int, dict[str, str]] = {}
        self.finished = False

    def read(self, data: dict[str, Any]) -> RawChunk | None:
        choice = first_choice(data)
        if choice is None:
            found = usage(data.get("usage"))
            return RawChunk(usage=found) if found is not None else None
        delta = _obj(choice.get("delta"))
        for raw in delta.get("tool_calls") or []:
            raw = _obj(raw)
            index = raw.get("index")
            slot = self.partial.setdefault(index if isinstance(index, int) else 0,
                                           {"id": "", "name": "", "args": ""})
            slot["id"] = _text(raw.get("id")) or slot["id"]
            fn = _obj(raw.get("function"))
            # OpenAI sends the name once; llama-cpp-python repeats it in every delta. A name
            # already whole is a repeat, not another fragment.
            name = _text(fn.get("name"))
            if name != slot["name"]:
                slot["name"] += name
            args = fn.get("arguments")
            slot["args"] += args if isinstance(args, str) else json.dumps(args) if args else ""
        finish = choice.get("finish_reason")
        out = RawChunk(content=_text(delta.get("content")), reasoning=_reasoning(delta),
                       finish_reason=finish if isinstance(finish, str) else None,
                       usage=usage(data.get("usage")))
        if out.finish_reason is not None:
            self.finished = True
            out.tool_calls = [
                ToolCall(id=s["id"] or f"call{i}", name=s["name"], arguments=arguments(s["args"]))
                for i, s in sorted(self.partial.items())
            ]
        return out
