"""`model: auto`: the orchestrator, adapted per request to what an OpenAI client can ask for.

A client may send its own tools, a response format, a temperature, max_tokens and fields like
`tool_choice`. The orchestrator knows none of these, so each request gets a light orchestrator
over the shared parts (client, router, tools, the telemetry hook): its mode policy carries the
request's token cap, its model call carries the request's temperature and extra fields, and --
when the client brings its own tools or a format -- its LLM_CALL step calls the chosen role with
them and hands tool calls back to the client instead of running them. The request is admitted
(governance mode, then gate room) when the pipeline first needs a model; a tool-only answer needs
neither, and is admitted against the limit of tool-only answers running at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from localroute.config.modes import Mode, ModesConfig
from localroute.orchestrator.machine import Orchestrator, step_table
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.orchestrator.steps import Deps, Outcome, Steps
from localroute.server.errors import APIError
from localroute.types import LLMError, LLMResponse

# Admits the request for ctx.role or raises APIError (503 mode refusal, 429 overload).
Admit = Callable[[ExecutionContext], None]


@dataclass
class RequestOptions:
    """What the OpenAI request asks of the model, beyond its messages."""

    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    passthrough: dict[str, Any] = field(default_factory=dict)

    @property
    def directed(self) -> bool:
        """The client steers the answer: it runs its own tools, or it wants a format."""
        return bool(self.tools or self.response_format)

    @property
    def extra_body(self) -> dict[str, Any] | None:
        return self.passthrough or None


def capped_modes(modes: ModesConfig, mode: Mode, roles: list[str], limit: int) -> ModesConfig:
    """The modes with `mode`'s per-role token caps lowered to the request's max_tokens."""
    policy = modes.policy(mode)
    caps = {r: min(limit, policy.max_tokens.get(r, limit)) for r in roles}
    return modes.model_copy(
        update={"modes": {**modes.modes, mode: policy.model_copy(update={"max_tokens": caps})}})


class ServerSteps(Steps):
    def __init__(self, deps: Deps, options: RequestOptions, admit: Admit) -> None:
        super().__init__(deps)
        self.options = options
        self.admit = admit
        self.admitted = False
        self.refusal: APIError | None = None

    async def call_model(self, ctx: ExecutionContext, role: str,
                         tools: list[dict[str, Any]] | None,
                         max_tokens: int | None) -> LLMResponse:
        o = self.options
        return await self.d.client.respond(role, ctx.conversation, tools=tools,
                                           max_tokens=max_tokens, temperature=o.temperature,
                                           extra_body=o.extra_body)

    async def call_directed(self, ctx: ExecutionContext, role: str,
                            max_tokens: int | None) -> LLMResponse:
        """The model call of a client-directed request: the client's tools and format."""
        o = self.options
        return await self.d.client.respond(
            role, ctx.conversation, tools=o.tools, response_format=o.response_format,
            max_tokens=max_tokens, temperature=o.temperature, extra_body=o.extra_body)

    def refused(self, ctx: ExecutionContext) -> Outcome | None:
        """Admits the request once (LLM_CALL runs again after a tool round or a failed
        validation); the FAILED outcome when it is refused."""
        if not self.admitted:
            try:
                self.admit(ctx)
            except APIError as exc:
                self.refusal = exc
                ctx.error = exc.message
                return TaskState.FAILED, f"refused ({exc.status}): {exc.message}"
            self.admitted = True
        return None

    async def tool_only(self, ctx: ExecutionContext) -> Outcome:
        return self.refused(ctx) or await super().tool_only(ctx)

    async def llm_call(self, ctx: ExecutionContext) -> Outcome:
        refusal = self.refused(ctx)
        if refusal is not None:
            return refusal
        if not self.options.directed:
            return await super().llm_call(ctx)
        assert ctx.role is not None and ctx.routing is not None
        o = self.options
        role = self.d.profile.role(ctx.role)
        try:
            response = await self.call_directed(ctx, role.name,
                                                self.policy(ctx).max_tokens.get(role.name))
        except LLMError as exc:
            return self.call_failed(ctx, exc)
        self.took(ctx, response)
        detail = (f"{response.role} ({response.model}) answered with the client's "
                  f"{len(o.tools or [])} tools, {len(response.tool_calls)} tool calls")
        if response.tool_calls or o.response_format is not None:
            # Tool calls go back to the client, which runs them; structured output is held to
            # its schema by the server's grammar. Neither is a prose answer to judge.
            ctx.validation = "skipped"
            return TaskState.SYNTHESIS, detail + "; validation skipped (client-directed)"
        return self.to_validation(ctx, detail)


@dataclass
class AutoRun:
    """One `auto` request's orchestrator and steps."""

    orchestrator: Orchestrator
    steps: ServerSteps


# Builds the steps of one request: ServerSteps, or the streaming steps (server/auto_stream.py).
MakeSteps = Callable[[Deps, RequestOptions, Admit], ServerSteps]


def auto_run(base: Orchestrator, options: RequestOptions, mode: Mode, admit: Admit,
             make_steps: MakeSteps | None = None) -> AutoRun:
    deps = base.deps
    if options.max_tokens is not None:
        deps = replace(deps, modes=capped_modes(deps.modes, mode, list(deps.profile.roles),
                                                options.max_tokens))
    steps = (make_steps or ServerSteps)(deps, options, admit)
    # The base orchestrator's hook is telemetry's recorder: every request is recorded.
    orchestrator = Orchestrator(deps, step_limit=base.step_limit, on_step=base.on_step,
                                table=step_table(steps))
    return AutoRun(orchestrator, steps)
