"""A backend's raw completion turned into an `LLMResponse`: reasoning split out, tool calls
written as text parsed, usage and timings filled. Shared by the plain and streaming paths."""

from __future__ import annotations

from typing import Any

from localroute.backends.base import RawCompletion
from localroute.client.parsing import parse_text_tool_calls, split_reasoning
from localroute.config.schema import ResolvedRole
from localroute.types import LLMResponse, Timings, Usage


def normalise(
    role: ResolvedRole,
    raw: RawCompletion,
    tools: list[dict[str, Any]] | None,
    waited: float,
    attempts: int,
    elapsed: float,
    backend: str,
    ttft: float | None = None,
) -> LLMResponse:
    """Split reasoning, parse text tool calls, fill usage and timings."""
    inline_reasoning, content = split_reasoning(raw.content)
    parts = [p for p in (raw.reasoning, inline_reasoning) if p]
    calls = list(raw.tool_calls)
    if tools and not calls:
        calls, content = parse_text_tool_calls(content)
    usage = raw.usage or Usage(
        completion_tokens=max(1, len(raw.content) // 4) if raw.content else 0
    )
    finish = raw.finish_reason
    if calls and finish in (None, "stop"):
        finish = "tool_calls"
    return LLMResponse(
        content=content,
        reasoning="\n\n".join(parts) if parts else None,
        tool_calls=calls,
        finish_reason=finish,
        usage=usage,
        timings=Timings(
            queue_wait_s=waited,
            ttft_s=ttft,
            total_s=elapsed,
            tokens_per_s=(usage.completion_tokens / elapsed) if elapsed > 0 else None,
        ),
        role=role.name,
        model=raw.model or role.id,
        backend=backend,
        attempts=attempts,
        notes=list(raw.notes),
    )


