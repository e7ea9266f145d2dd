"""The role-based client: every later stage asks a *role* for an answer, never a server.

One call = context guard -> gate -> backend call with bounded retries -> normalisation
(reasoning split, text tool calls, structured output) -> on failure, the role's fallback chain.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from localroute.backends.base import ChatRequest, RawCompletion
from localroute.backends.pool import BackendPool
from localroute.client.gates import Gates
from localroute.client.messages import estimate_tokens, prepare_messages
from localroute.client.normalise import normalise
from localroute.client.parsing import extract_json
from localroute.client.retry import delay_after, should_retry
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.residency.manager import Residency
from localroute.types import (
    ErrorEvent,
    Fallback,
    LLMContextOverflow,
    LLMError,
    LLMInvalidResponse,
    LLMResponse,
    StreamEvent,
)

ResponseFormat = type[BaseModel] | dict[str, Any] | None
# Told of every `respond` and `stream` once it ends: requested role, the response or the final
# error, seconds.
CallHook = Callable[[str, LLMResponse | None, LLMError | None, float], None]
MIN_COMPLETION_TOKENS = 16  # below this, a capped max_tokens could not hold an answer


def json_schema_format(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": model.__name__,
            "strict": True,
            "schema": model.model_json_schema(),
        },
    }


class FallbackChain:
    """Which role answers next when one fails: the failed role's fallbacks in order, then
    theirs, each role at most once; after a context overflow only a role with a larger context
    can help (coding -> coding_large_context)."""

    def __init__(self, profile: ResolvedProfile, first: ResolvedRole) -> None:
        self.profile = profile
        self.current = first
        self.taken: list[Fallback] = []
        self._tried = {first.name}
        self._pending = list(first.fallback)

    def advance(self, exc: LLMError) -> bool:
        """Move to the next role after `exc`; False when none is left."""
        for name in self._pending:
            candidate = self.profile.role(name)
            if isinstance(exc, LLMContextOverflow):
                needed = max(exc.prompt_tokens, self.current.context_length + 1)
                if candidate.context_length < needed:
                    continue
            self.taken.append(
                Fallback(from_role=self.current.name, to_role=name, reason=str(exc))
            )
            self._tried.add(name)
            self._pending = [r for r in [*self._pending, *candidate.fallback]
                             if r not in self._tried]
            self.current = candidate
            return True
        return False


class LLMClient:
    """Calls roles of one resolved profile."""

    def __init__(self, profile: ResolvedProfile, pool: BackendPool | None = None,
                 residency: Residency | None = None) -> None:
        """Raises ResidencyError (a ValueError naming the numbers) for a profile whose pinned
        set does not fit its memory budget."""
        self.profile = profile
        self.pool = pool or BackendPool()
        self.residency = residency or Residency(profile, self.pool)
        self.gates = Gates(profile)
        self.on_call: CallHook | None = None  # telemetry's hook

    async def aclose(self) -> None:
        await self.residency.aclose()
        await self.pool.aclose()

    # ---- the public calls -------------------------------------------------------------

    async def respond(
        self,
        role: str,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        response_format: ResponseFormat = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> LLMResponse:
        """One answer from `role` (or its fallbacks). `extra_body` holds fields for this request
        only (tool_choice, stop, seed...), sent over the role's own `extra_body`."""
        chain = FallbackChain(self.profile, self.profile.role(role))
        started = time.perf_counter()
        while True:
            try:
                response = await self._respond_role(
                    chain.current, messages, tools, response_format, max_tokens, temperature,
                    timeout, extra_body,
                )
                response.fallbacks = chain.taken
                if self.on_call is not None:
                    self.on_call(role, response, None, time.perf_counter() - started)
                return response
            except LLMError as exc:
                if not chain.advance(exc):
                    exc.fallbacks = chain.taken
                    if self.on_call is not None:
                        self.on_call(role, None, exc, time.perf_counter() - started)
                    raise

    async def stream(
        self,
        role: str,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Events as `role` produces them, ending in one `done` or `error` event; `extra_body`
        as for `respond`. The call hook hears of the stream when it ends (not when the caller
        stops reading early: that call has no outcome to record)."""
        from localroute.client.streaming import stream_role

        chain = FallbackChain(self.profile, self.profile.role(role))
        started = time.perf_counter()
        while True:
            emitted = False
            try:
                async for event in stream_role(
                    self, chain.current, messages, tools, max_tokens, temperature, timeout,
                    chain.taken, extra_body,
                ):
                    # A note (waiting for a load) is not the model's text: a fallback may follow.
                    emitted = emitted or event.type in ("content", "reasoning", "tool_call")
                    if event.type == "done" and self.on_call is not None:
                        self.on_call(role, event.response, None, time.perf_counter() - started)
                    yield event
                return
            except LLMError as exc:
                # Once text reached the caller a retry would repeat it: report, do not fall back.
                if emitted or not chain.advance(exc):
                    exc.fallbacks = chain.taken
                    if self.on_call is not None:
                        self.on_call(role, None, exc, time.perf_counter() - started)
                    yield ErrorEvent(error=str(exc), kind=type(exc).__name__)
                    return

    # ---- one role ---------------------------------------------------------------------

    async def prepare(
        self,
        role: ResolvedRole,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Shape messages and enforce the context guard; returns messages, prompt tokens and
        the max_tokens that fits."""
        shaped = prepare_messages(role, messages)
        wanted = max_tokens or role.max_tokens
        tokens = estimate_tokens(shaped, tools)
        if tokens + wanted > role.context_length // 2:
            # Near the limit the estimate is not good enough: ask the server's tokenizer.
            backend = self.pool.for_role(role)
            exact = await backend.count_tokens(role.id, shaped)
            tokens = exact if exact is not None else tokens
        room = role.context_length - tokens
        if room < MIN_COMPLETION_TOKENS:
            raise LLMContextOverflow(
                f"role '{role.name}' (model '{role.id}'): the prompt needs {tokens} tokens but the "
                f"context is {role.context_length} tokens (leaving {max(room, 0)} for the answer); "
                "shorten the input or use a role with a larger context_length",
                prompt_tokens=tokens,
                context_length=role.context_length,
                role=role.name,
                model=role.id,
                url=self.pool.for_role(role).url,
            )
        return shaped, tokens, min(wanted, room)

    def request(
        self,
        role: ResolvedRole,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None,
        max_tokens: int,
        temperature: float | None,
        timeout: float | None,
        extra_body: dict[str, Any] | None = None,
    ) -> ChatRequest:
        # Built without validation: every part is already checked (the role by the config
        # schema, messages and tools by the caller: the server's request schema, or our own
        # stages), and validating the messages again copied each one on every call.
        return ChatRequest.model_construct(
            model=role.id,
            messages=messages,
            tools=tools if role.supports_tools or tools else None,
            response_format=response_format,
            max_tokens=max_tokens,
            temperature=role.temperature if temperature is None else temperature,
            top_p=role.top_p,
            timeout=timeout or role.default_timeout,
            extra_body={**role.extra_body, **extra_body} if extra_body else role.extra_body,
        )

    async def _call_with_retries(
        self, role: ResolvedRole, request: ChatRequest
    ) -> tuple[RawCompletion, float, int, float]:
        backend = self.pool.for_role(role)
        attempt = 0
        notes: list[str] = []
        while True:
            attempt += 1
            # The instance first (it may have to be loaded, and eviction waits for the lease),
            # then a slot of its gate.
            async with self.residency.enter(role) as lease, self.gates.slot(role) as waited:
                notes += lease.notes
                started = time.perf_counter()
                try:
                    raw = await backend.chat(request, role=role.name)
                    raw.notes = [*notes, *raw.notes]
                    return raw, waited + lease.waited_s, attempt, time.perf_counter() - started
                except LLMError as exc:
                    failure = exc
            if not should_retry(failure, attempt, role.retries):
                raise failure
            await asyncio.sleep(delay_after(failure, attempt))

    async def _respond_role(
        self,
        role: ResolvedRole,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        response_format: ResponseFormat,
        max_tokens: int | None,
        temperature: float | None,
        timeout: float | None,
        extra_body: dict[str, Any] | None = None,
    ) -> LLMResponse:
        schema_model = response_format if isinstance(response_format, type) else None
        wire_format: dict[str, Any] | None = (
            json_schema_format(schema_model) if schema_model else response_format  # type: ignore[assignment]
        )
        if wire_format is not None and role.reasoning:
            # Grammar-constrained output suppresses thinking: ask in words, extract afterwards.
            messages = _ask_for_json(messages, wire_format)
            wire_format = None
        shaped, _, cap = await self.prepare(role, messages, tools, max_tokens)
        request = self.request(role, shaped, tools, wire_format, cap, temperature, timeout,
                               extra_body)
        response = await self._once(role, request, tools)
        if schema_model is None:
            return response
        try:
            response.parsed = schema_model.model_validate(extract_json(response.content))
            return response
        except (ValueError, ValidationError) as first:
            repair = [
                *shaped,
                {"role": "assistant", "content": response.content},
                {
                    "role": "user",
                    "content": f"That reply was not valid JSON for the schema ({_short(first)}). "
                    "Reply with only the corrected JSON object.",
                },
            ]
            retry = await self._once(role, request.model_copy(update={"messages": repair}), tools)
            retry.attempts += response.attempts
            try:
                retry.parsed = schema_model.model_validate(extract_json(retry.content))
                return retry
            except (ValueError, ValidationError) as second:
                raise LLMInvalidResponse(
                    f"role '{role.name}' (model '{role.id}'): no valid JSON for "
                    f"{schema_model.__name__} after one repair: {_short(second)}",
                    raw=retry.content,
                    role=role.name,
                    model=role.id,
                ) from second

    async def _once(
        self, role: ResolvedRole, request: ChatRequest, tools: list[dict[str, Any]] | None
    ) -> LLMResponse:
        raw, waited, attempts, elapsed = await self._call_with_retries(role, request)
        return normalise(role, raw, tools, waited, attempts, elapsed, self.pool.for_role(role).kind)


def _ask_for_json(messages: list[dict[str, Any]], fmt: dict[str, Any]) -> list[dict[str, Any]]:
    schema = fmt.get("json_schema", {}).get("schema", fmt.get("schema", {}))
    note = (
        "\n\nAfter thinking, reply with only a JSON object matching this JSON schema:\n"
        + json.dumps(schema)
    )
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = f"{m.get('content') or ''}{note}"
            break
    return out


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]
