"""The steps of a streamed `auto` request: the answer goes out as the model writes it.

The orchestrator runs as usual (routing, tool rounds, the model call, validation); these steps
pass what happens on the way into a `Channel` that the HTTP side reads while the machine runs:
`routed` once the request is admitted for its role, notes of tool rounds, reasoning and -- per
the request's validation policy -- the answer's text:

- `after`: every piece at once; validation runs on the whole answer and is never retried (the
  client has read it), a failed verdict is flagged.
- `window`: pieces pass a `WindowGate` first; a failed window ends the request FAILED.
- `buffer`: nothing of the answer; the steps behave as the non-streaming ones (retry included).
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

from localroute.config.modes import Mode, StreamPolicy, StreamValidationSettings
from localroute.orchestrator.machine import Orchestrator
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.orchestrator.steps import Deps, Outcome
from localroute.server.pipeline import Admit, AutoRun, RequestOptions, ServerSteps, auto_run
from localroute.types import LLMError, LLMResponse
from localroute.validation.window import WindowFailed, WindowGate

PieceKind = Literal["routed", "content", "reasoning"]

# What a tool round reads, as the note a client shows while it waits.
_TOOL_WORDS = {"cpu": "CPU load", "memory": "memory", "processes": "processes", "disk": "disks",
               "list_directory": "a directory", "read_file": "a file"}


def tool_note(names: list[str]) -> str:
    words = list(dict.fromkeys(_TOOL_WORDS.get(n, n) for n in names))
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"reading {listed}…\n"


# How a model that writes its tool calls as text starts them (client/parsing.py parses them).
_TOOL_CALL_STARTS = ("<tool_call", "[TOOL_", "<function", "{", "```")
_DECIDE_AFTER = 24  # characters: enough to tell a tool call from the start of an answer


class _ToolCallHold:
    """With tools offered, the text that opens a model's answer may be a tool call written as
    text: held until it plainly is not (then streamed), or to the end (then sent only if the
    answer holds no tool call). A held answer reaches the client whole, at the end."""

    def __init__(self, active: bool) -> None:
        self.holding = active
        self.decided = not active
        self.text = ""

    def feed(self, text: str) -> str:
        if self.decided and not self.holding:
            return text
        self.text += text
        start = self.text.lstrip()
        if not self.decided and len(start) >= _DECIDE_AFTER:
            self.decided = True
            self.holding = start.startswith(_TOOL_CALL_STARTS)
            if not self.holding:
                return self.release()
        return ""

    def release(self) -> str:
        text, self.text = self.text, ""
        return text


@dataclass
class Piece:
    kind: PieceKind
    text: str = ""


class Channel:
    """From the steps to the HTTP response: pieces in order, then None once the run ends."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Piece | None] = asyncio.Queue()
        self.content_sent = False

    def put(self, kind: PieceKind, text: str = "") -> None:
        if kind == "content":
            self.content_sent = True
        self._queue.put_nowait(Piece(kind, text))

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def get(self) -> Piece | None:
        return await self._queue.get()


class StreamingSteps(ServerSteps):
    def __init__(self, deps: Deps, options: RequestOptions, admit: Admit, *, channel: Channel,
                 settings: StreamValidationSettings, requested: StreamPolicy | None) -> None:
        def admit_and_announce(ctx: ExecutionContext) -> None:
            admit(ctx)
            channel.put("routed")

        super().__init__(deps, options, admit_and_announce)
        self.channel = channel
        self.settings = settings
        self.requested = requested

    def stream_policy(self, ctx: ExecutionContext) -> StreamPolicy:
        """The request's own policy, else its route's in modes.yaml, else the default."""
        route = ctx.routing.route if ctx.routing else None
        return self.requested or self.settings.policy(route)

    def streams(self, ctx: ExecutionContext) -> bool:
        return self.stream_policy(ctx) != "buffer"

    # ---- the model calls ----------------------------------------------------------------

    async def call_model(self, ctx: ExecutionContext, role: str,
                         tools: list[dict[str, Any]] | None,
                         max_tokens: int | None) -> LLMResponse:
        if not self.streams(ctx):
            return await super().call_model(ctx, role, tools, max_tokens)
        return await self._stream(ctx, role, tools, max_tokens)

    async def call_directed(self, ctx: ExecutionContext, role: str,
                            max_tokens: int | None) -> LLMResponse:
        # Structured output is produced whole (the server's grammar, or a JSON retry).
        if not self.streams(ctx) or self.options.response_format is not None:
            return await super().call_directed(ctx, role, max_tokens)
        return await self._stream(ctx, role, self.options.tools, max_tokens)

    async def _stream(self, ctx: ExecutionContext, role: str,
                      tools: list[dict[str, Any]] | None, max_tokens: int | None) -> LLMResponse:
        o = self.options
        gate = None
        if self.stream_policy(ctx) == "window":
            gate = WindowGate(ctx.query, self.settings.window_chars,
                              self.settings.window_overlap_chars)
        final: LLMResponse | None = None
        held = _ToolCallHold(active=bool(tools))

        def send(text: str) -> None:
            text = gate.feed(text) if gate is not None else text
            if text:
                self.channel.put("content", text)

        # aclosing: a failed window or a cancelled request closes the backend's stream too.
        async with aclosing(self.d.client.stream(
                role, ctx.conversation, tools=tools, max_tokens=max_tokens,
                temperature=o.temperature, extra_body=o.extra_body)) as events:
            async for event in events:
                if event.type == "content":
                    if text := held.feed(event.text):
                        send(text)
                elif event.type in ("reasoning", "note"):
                    # A note ("loading X, ~9 s") travels as reasoning, never as the answer.
                    self.channel.put("reasoning", event.text)
                elif event.type == "done":
                    final = event.response
                elif event.type == "error":
                    raise LLMError(event.error)
        if final is None:
            raise LLMError(f"the stream of role {role} ended without an answer")
        if not final.tool_calls and (text := held.release()):
            send(text)  # it was an answer after all
        if gate is not None and (rest := gate.flush()):
            self.channel.put("content", rest)
        return final

    async def llm_call(self, ctx: ExecutionContext) -> Outcome:
        try:
            return await super().llm_call(ctx)
        except WindowFailed as exc:
            ctx.llm_calls += 1
            ctx.validation = "unvalidated"
            ctx.validation_failures = exc.failures
            ctx.failure = exc
            ctx.error = f"window check '{exc.check}' failed: {exc}"
            return TaskState.FAILED, ctx.error + "; the stream stopped before that window was sent"

    # ---- tool rounds show as notes --------------------------------------------------------

    async def tool_execution(self, ctx: ExecutionContext) -> Outcome:
        if self.streams(ctx) and ctx.pending_tool_calls:
            self.channel.put("reasoning", tool_note([c.name for c in ctx.pending_tool_calls]))
        return await super().tool_execution(ctx)

    async def _prefetch_facts(self, ctx: ExecutionContext) -> None:
        if self.streams(ctx):
            self.channel.put("reasoning", tool_note(["cpu", "memory", "processes", "disk"]))
        await super()._prefetch_facts(ctx)

    # ---- validation: no retry once the client has read the answer ---------------------------

    async def validation(self, ctx: ExecutionContext) -> Outcome:
        self.validation_retries = 0 if self.channel.content_sent else 1
        return await super().validation(ctx)


def streaming_run(base: Orchestrator, mode: Mode, channel: Channel, *,
                  requested: StreamPolicy | None = None,
                  options: RequestOptions | None = None,
                  admit: Admit | None = None) -> AutoRun:
    """A run of `base` whose answer streams into `channel`; `admit` defaults to admitting
    everything (the terminal: `localroute ask --stream`, one request, no gates to share)."""
    settings = base.deps.modes.validation.streaming

    def make(deps: Deps, opts: RequestOptions, adm: Admit) -> StreamingSteps:
        return StreamingSteps(deps, opts, adm, channel=channel, settings=settings,
                              requested=requested)

    return auto_run(base, options or RequestOptions(), mode, admit or (lambda _: None), make)
