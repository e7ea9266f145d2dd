"""Streaming one role: typed events as the model produces them, one `done` event at the end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from localroute.backends.base import RawCompletion
from localroute.client.normalise import normalise
from localroute.client.parsing import ReasoningStreamSplitter
from localroute.client.retry import delay_after, should_retry
from localroute.config.schema import ResolvedRole
from localroute.types import (
    ContentDelta,
    DoneEvent,
    Fallback,
    LLMError,
    NoteEvent,
    ReasoningDelta,
    StreamEvent,
    ToolCall,
    ToolCallEvent,
    Usage,
)

if TYPE_CHECKING:
    from localroute.client.llm_client import LLMClient


async def stream_role(
    client: LLMClient,
    role: ResolvedRole,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    max_tokens: int | None,
    temperature: float | None,
    timeout: float | None,
    fallbacks: list[Fallback],
    extra_body: dict[str, Any] | None = None,
) -> AsyncIterator[StreamEvent]:
    shaped, _, cap = await client.prepare(role, messages, tools, max_tokens)
    request = client.request(role, shaped, tools, None, cap, temperature, timeout, extra_body)
    backend = client.pool.for_role(role)
    attempt = 0
    notes: list[str] = []
    while True:
        attempt += 1
        emitted = False
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[ToolCall] = []
        finish: str | None = None
        usage: Usage | None = None
        ttft: float | None = None
        # A reasoning role's template may open <think> itself, so its text starts as reasoning
        # until the server shows it separates reasoning into its own field.
        splitter = ReasoningStreamSplitter(start_in_reasoning=role.reasoning)
        try:
            ticket = client.residency.enter(role)
            if ticket.pending and client.residency.settings.loading_notes:
                yield NoteEvent(text=f"loading {role.id}, ~{ticket.eta_s:.0f} s\n")
            async with ticket as lease, client.gates.slot(role) as gate_wait:
                notes += lease.notes
                waited = gate_wait + lease.waited_s
                started = time.perf_counter()
                async for chunk in backend.stream(request, role=role.name):
                    if chunk.reasoning:
                        if not reasoning and not text:
                            splitter = ReasoningStreamSplitter(start_in_reasoning=False)
                        reasoning.append(chunk.reasoning)
                        ttft = ttft if ttft is not None else time.perf_counter() - started
                        emitted = True
                        yield ReasoningDelta(text=chunk.reasoning)
                    if chunk.content:
                        text.append(chunk.content)
                        ttft = ttft if ttft is not None else time.perf_counter() - started
                        for kind, piece in splitter.feed(chunk.content):
                            emitted = True
                            yield (
                                ContentDelta(text=piece)
                                if kind == "content"
                                else ReasoningDelta(text=piece)
                            )
                    calls.extend(chunk.tool_calls)
                    finish = chunk.finish_reason or finish
                    usage = chunk.usage or usage
                for kind, piece in splitter.flush():
                    yield (
                        ContentDelta(text=piece)
                        if kind == "content"
                        else ReasoningDelta(text=piece)
                    )
                elapsed = time.perf_counter() - started
        except LLMError as exc:
            if not should_retry(exc, attempt, role.retries, emitted=emitted):
                raise
            await asyncio.sleep(delay_after(exc, attempt))
            continue
        raw = RawCompletion(
            content="".join(text),
            reasoning="".join(reasoning) or None,
            tool_calls=calls,
            finish_reason=finish,
            usage=usage,
            model=role.id,
            notes=notes,
        )
        response = normalise(role, raw, tools, waited, attempt, elapsed, backend.kind, ttft)
        response.fallbacks = list(fallbacks)
        for call in response.tool_calls:
            yield ToolCallEvent(call=call)
        yield DoneEvent(response=response)
        return
