"""`model: auto`: the orchestrator, adapted per request to what an OpenAI client can ask for.

A client may send its own tools, a response format, a temperature, max_tokens and fields like
`tool_choice`. The orchestrator knows none of these, so each request gets a light orchestrator
over the shared parts (client, router, tools): its mode policy carries the request's token cap,
and its LLM_CALL step -- when the request directs the model -- calls the chosen role with the
client's tools and format and hands tool calls back to the client instead of running them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from localroute.client.llm_client import LLMClient
from localroute.config.modes import Mode, ModesConfig
from localroute.orchestrator.machine import Orchestrator, StepHook, step_table
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.orchestrator.steps import Deps, Outcome, Steps
from localroute.types import LLMError


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
        return bool(self.tools or self.response_format or self.passthrough
                    or self.temperature is not None)


def scoped_client(base: LLMClient, extra: dict[str, Any]) -> LLMClient:
    """A client whose roles also send `extra` (tool_choice, stop...), sharing the base client's
    backends and gates: LLMClient takes request fields only from role config, so a per-request
    view of the profile is how they reach the server without a second set of slots."""
    if not extra:
        return base
    roles = {name: role.model_copy(update={"extra_body": {**role.extra_body, **extra}})
             for name, role in base.profile.roles.items()}
    client = LLMClient(base.profile.model_copy(update={"roles": roles}), pool=base.pool)
    client.gates = base.gates
    return client


def capped_modes(modes: ModesConfig, mode: Mode, roles: list[str], limit: int) -> ModesConfig:
    """The modes with `mode`'s per-role token caps lowered to the request's max_tokens."""
    policy = modes.policy(mode)
    caps = {r: min(limit, policy.max_tokens.get(r, limit)) for r in roles}
    return modes.model_copy(
        update={"modes": {**modes.modes, mode: policy.model_copy(update={"max_tokens": caps})}})


class ServerSteps(Steps):
    def __init__(self, deps: Deps, options: RequestOptions, client: LLMClient) -> None:
        super().__init__(deps)
        self.options = options
        self.client = client
        self.failure: LLMError | None = None

    async def llm_call(self, ctx: ExecutionContext) -> Outcome:
        if not self.options.directed:
            return await super().llm_call(ctx)
        assert ctx.role is not None and ctx.routing is not None
        o = self.options
        role = self.d.profile.role(ctx.role)
        try:
            response = await self.client.respond(
                role.name, ctx.conversation, tools=o.tools, response_format=o.response_format,
                max_tokens=self.policy(ctx).max_tokens.get(role.name), temperature=o.temperature)
        except LLMError as exc:
            self.failure = exc
            ctx.fallbacks.extend(exc.fallbacks)
            ctx.error = f"{type(exc).__name__}: {exc}"
            return TaskState.FAILED, ctx.error
        ctx.llm_calls += 1
        ctx.response = response
        ctx.fallbacks.extend(response.fallbacks)
        ctx.role = response.role
        detail = (f"{response.role} ({response.model}) answered with the client's "
                  f"{len(o.tools or [])} tools, {len(response.tool_calls)} tool calls")
        if response.tool_calls or o.response_format is not None:
            # Tool calls go back to the client, which runs them; structured output is held to
            # its schema by the server's grammar. Neither is a prose answer to judge.
            ctx.validation = "skipped"
            return TaskState.SYNTHESIS, detail + "; validation skipped (client-directed)"
        if ctx.routing.route in self.d.modes.validation.skip_routes:
            ctx.validation = "skipped"
            return TaskState.SYNTHESIS, detail + "; validation skipped for this route"
        return TaskState.VALIDATION, detail


@dataclass
class AutoRun:
    """One `auto` request's orchestrator and steps."""

    orchestrator: Orchestrator
    steps: ServerSteps


def auto_run(base: Orchestrator, options: RequestOptions, mode: Mode,
             hook: StepHook | None) -> AutoRun:
    deps = base.deps
    if options.max_tokens is not None:
        deps = replace(deps, modes=capped_modes(deps.modes, mode, list(deps.profile.roles),
                                                options.max_tokens))
    steps = ServerSteps(deps, options, scoped_client(deps.client, options.passthrough))
    orchestrator = Orchestrator(deps, step_limit=base.step_limit, on_step=hook,
                                table=step_table(steps))
    return AutoRun(orchestrator, steps)
