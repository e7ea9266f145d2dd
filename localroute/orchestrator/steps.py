"""The step functions: each reads the context, does one stage's work, names the next state."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from localroute.bounded_text import stage1_view
from localroute.client.llm_client import LLMClient
from localroute.client.messages import estimate_tokens
from localroute.config.modes import ModePolicy, ModesConfig
from localroute.config.schema import ResolvedProfile
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.routing.cascade import Stage1Router
from localroute.routing.complexity import apply_mode, assess, select_role
from localroute.routing.policy import RolePolicy, task_type
from localroute.routing.residency_aware import warm_substitute
from localroute.tools.base import ToolContext, ToolResult
from localroute.tools.registry import ToolRegistry
from localroute.types import LLMContextOverflow, LLMError, LLMResponse
from localroute.validation.checks import check_answer
from localroute.validation.judge import judge

Outcome = tuple[TaskState, str]

# Questions about this machine's state get the system tools (or their output, for a role that
# cannot call tools). Read on the query's bounded view, with a bounded gap between the symptom
# and the machine: `.*` would scan the rest of the line again from every "slow".
_ABOUT_MACHINE = re.compile(
    r"\b(my|this) (machine|computer|mac|laptop|system|box)\b|\bright now\b|\b(slow|sluggish|"
    r"lagging|overheating|fans?)\b.{0,160}\b(machine|computer|mac|laptop|system)\b",
    re.IGNORECASE,
)
PREFETCH_TOOLS = ("cpu", "memory", "processes", "disk")
CONDENSE_INPUT_CHARS = 20_000  # the most tool output ever sent to be condensed
CONDENSE_PROMPT_TOKENS = 64  # the instruction and the question around the output
CONDENSE_MARGIN = 0.9  # tokens per character vary along the text: keep a tenth in hand


def _condense_prompt(query: str, text: str) -> str:
    return ("Condense this tool output to the facts needed to answer the question "
            f"'{query[:300]}':\n\n{text}")


@dataclass
class Deps:
    profile: ResolvedProfile
    client: LLMClient
    router: Stage1Router
    registry: ToolRegistry
    tool_ctx: ToolContext
    modes: ModesConfig
    policy: RolePolicy | None = None  # performance-based routing, when enabled


class Steps:
    # Answers that fail validation are asked for again this many times, then flagged. A
    # streamed answer has already been read, so the server's streaming steps set 0.
    validation_retries = 1

    def __init__(self, deps: Deps) -> None:
        self.d = deps

    def policy(self, ctx: ExecutionContext) -> ModePolicy:
        return self.d.modes.policy(ctx.mode)

    # ---- INIT and stage 1 ---------------------------------------------------------------

    async def init(self, ctx: ExecutionContext) -> Outcome:
        if not ctx.query.strip():
            ctx.error = "the request has no user message with text; send at least one"
            return TaskState.FAILED, ctx.error
        ctx.conversation = [dict(m) for m in ctx.messages]
        return TaskState.ROUTING_DECISION, f"mode {ctx.mode.value}"

    async def routing_decision(self, ctx: ExecutionContext) -> Outcome:
        allow_model = ctx.allow_router_model and "router" in self.policy(ctx).allowed_roles
        decision = await self.d.router.decide(ctx.query, ctx.channel, allow_model=allow_model)
        ctx.routing = decision
        detail = (f"route={decision.route} by {decision.decided_by} "
                  f"(confidence {decision.confidence:.2f}): {decision.reason}")
        if decision.escalation_error:  # it failed, was too slow, or every router slot was busy
            ctx.notes.append(f"router model not used: {decision.escalation_error}")
            detail += f"; router model not used: {decision.escalation_error}"
        if decision.route == "tool" and decision.tool_call is not None:
            return TaskState.TOOL_ONLY_EXECUTION, detail
        return TaskState.MODEL_SELECTION, detail

    async def tool_only(self, ctx: ExecutionContext) -> Outcome:
        assert ctx.routing is not None and ctx.routing.tool_call is not None
        call = ctx.routing.tool_call
        result = await self.d.registry.invoke(call.name, call.arguments, self.d.tool_ctx,
                                              ctx.mode.value)
        ctx.tool_results.append(result)
        ctx.reply = result.text if result.ok else f"The {call.name} tool failed: {result.error}"
        ctx.validation = "skipped"
        status = "ok" if result.ok else f"failed: {result.error}"
        return TaskState.SYNTHESIS, f"tool {call.name}({json.dumps(call.arguments)}) {status}"

    # ---- stage 2 ------------------------------------------------------------------------

    async def model_selection(self, ctx: ExecutionContext) -> Outcome:
        assert ctx.routing is not None
        policy = self.policy(ctx)
        if not policy.allows_inference:
            ctx.error = (f"mode {ctx.mode.value} refuses model inference; only read-only tool "
                         "questions are answered (e.g. 'how much disk is free?')")
            return TaskState.FAILED, ctx.error
        settings = self.d.modes.routing
        ctx.complexity = assess(ctx.query, ctx.routing, estimate_tokens(ctx.messages))
        wanted = select_role(ctx.routing, ctx.complexity,
                             depth_threshold=settings.reasoning_depth_threshold,
                             large_context_tokens=settings.large_context_tokens)
        chosen = apply_mode(wanted, policy.allowed_roles, set(self.d.profile.roles))
        if chosen is None:
            ctx.error = (f"no role for '{wanted.role}' is allowed in mode {ctx.mode.value} "
                         f"(allowed: {', '.join(policy.allowed_roles) or 'none'})")
            return TaskState.FAILED, ctx.error
        ctx.static_role = chosen.role
        ctx.task_type = task_type(ctx.routing.route, ctx.complexity.reasoning_depth)
        if self.d.policy is not None:
            learned = self.d.policy.choose(
                ctx.routing.route, ctx.task_type, chosen, allowed=policy.allowed_roles,
                roles=self.d.profile.roles,
                context_tokens=ctx.complexity.estimated_context_tokens)
            chosen, ctx.role_decided_by = learned.selection, learned.decided_by
        c = ctx.complexity
        detail = (f"role {chosen.role}: {chosen.reason} (depth {c.reasoning_depth}, code "
                  f"{c.code_generation_required}, ~{c.estimated_context_tokens} tokens)")
        if chosen.downgraded_from:
            detail += f"; downgraded from {chosen.downgraded_from} by mode {ctx.mode.value}"
        sub = warm_substitute(self.d.profile, chosen.role, self.d.client.residency,
                              policy.allowed_roles, c.estimated_context_tokens)
        if sub is not None:
            chosen = chosen.model_copy(update={"role": sub.chosen, "substituted_for": sub.wanted})
            detail += f"; {sub.describe()}"
            ctx.notes.append(sub.describe())
        ctx.selection, ctx.role = chosen, chosen.role
        return TaskState.LLM_CALL, detail

    # ---- the model and its tools ------------------------------------------------------------

    def _wants_system_tools(self, ctx: ExecutionContext) -> bool:
        return (ctx.channel == "system_health"
                or bool(_ABOUT_MACHINE.search(stage1_view(ctx.query))))

    async def llm_call(self, ctx: ExecutionContext) -> Outcome:
        assert ctx.role is not None
        role = self.d.profile.role(ctx.role)
        loop = self.d.modes.tool_loop
        tools = None
        if self._wants_system_tools(ctx) and ctx.tool_iterations < loop.max_iterations:
            if role.supports_tools:
                tools = self.d.registry.openai_schemas(ctx.mode.value)
            elif not ctx.tool_results:
                await self._prefetch_facts(ctx)
        max_tokens = self.policy(ctx).max_tokens.get(role.name)
        try:
            response = await self.call_model(ctx, role.name, tools, max_tokens)
        except LLMError as exc:
            return self.call_failed(ctx, exc)
        self.took(ctx, response)
        detail = (f"{response.role} ({response.model}) answered in {response.timings.total_s:.2f}"
                  f" s, {response.usage.completion_tokens} tokens, finish {response.finish_reason}")
        for note in response.notes:
            detail += f"; {note}"
        if response.fallbacks:
            detail += "; fallbacks: " + ", ".join(
                f"{f.from_role}->{f.to_role}" for f in response.fallbacks)
        if tools and response.tool_calls:
            ctx.pending_tool_calls = list(response.tool_calls)
            return TaskState.TOOL_EXECUTION, detail + f"; {len(response.tool_calls)} tool calls"
        return self.to_validation(ctx, detail)

    def call_failed(self, ctx: ExecutionContext, exc: LLMError) -> Outcome:
        """LLM_CALL's model call failed for good: FAILED, with the fallbacks it took."""
        ctx.fallbacks.extend(exc.fallbacks)
        ctx.failure = exc
        ctx.error = f"{type(exc).__name__}: {exc}"
        return TaskState.FAILED, ctx.error

    def took(self, ctx: ExecutionContext, response: LLMResponse) -> None:
        """Record an answer of LLM_CALL (the role that gave it may be a fallback)."""
        ctx.llm_calls += 1
        ctx.response = response
        ctx.fallbacks.extend(response.fallbacks)
        ctx.notes.extend(response.notes)
        ctx.role = response.role

    def to_validation(self, ctx: ExecutionContext, detail: str) -> Outcome:
        """VALIDATION next, unless the route skips it."""
        assert ctx.routing is not None
        if ctx.routing.route in self.d.modes.validation.skip_routes:
            ctx.validation = "skipped"
            return TaskState.SYNTHESIS, detail + "; validation skipped for this route"
        return TaskState.VALIDATION, detail

    async def call_model(self, ctx: ExecutionContext, role: str,
                         tools: list[dict[str, Any]] | None,
                         max_tokens: int | None) -> LLMResponse:
        """The answering model call of LLM_CALL; a caller with per-request sampling fields
        (the OpenAI-compatible server) overrides it to add them."""
        return await self.d.client.respond(role, ctx.conversation, tools=tools,
                                           max_tokens=max_tokens)

    async def _prefetch_facts(self, ctx: ExecutionContext) -> None:
        results = [await self.d.registry.invoke(name, {}, self.d.tool_ctx, ctx.mode.value)
                   for name in PREFETCH_TOOLS]
        ctx.tool_results.extend(results)
        facts = "\n\n".join(r.text for r in results if r.ok)
        ctx.conversation.insert(0, {"role": "system",
                                    "content": f"Current readings from this machine:\n{facts}"})

    async def tool_execution(self, ctx: ExecutionContext) -> Outcome:
        calls, ctx.pending_tool_calls = ctx.pending_tool_calls, []
        ctx.conversation.append({
            "role": "assistant", "content": ctx.response.content if ctx.response else "",
            "tool_calls": [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": json.dumps(c.arguments)}} for c in calls],
        })
        done = []
        for call in calls:
            key = (call.name, json.dumps(call.arguments, sort_keys=True))
            if key in ctx.tool_calls_seen:
                content = (f"refused: {call.name} was already called with these arguments; "
                           "use that result")
                done.append(f"{call.name} refused (repeat)")
            else:
                ctx.tool_calls_seen.append(key)
                result = await self.d.registry.invoke(call.name, call.arguments,
                                                      self.d.tool_ctx, ctx.mode.value)
                ctx.tool_results.append(result)
                content = await self._condensed(ctx, result)
                done.append(f"{call.name} {'ok' if result.ok else 'failed'}")
            ctx.conversation.append({"role": "tool", "tool_call_id": call.id, "content": content})
        ctx.tool_iterations += 1
        return TaskState.LLM_CALL, "; ".join(done) + f" (iteration {ctx.tool_iterations})"

    async def _condensed(self, ctx: ExecutionContext, result: ToolResult) -> str:
        text = result.for_model()
        loop = self.d.modes.tool_loop
        if len(text) <= loop.condense_above_chars:
            return text
        if "summarization" not in self.policy(ctx).allowed_roles:
            return text[: loop.condense_above_chars] + " [truncated]"
        shown = text[:CONDENSE_INPUT_CHARS]
        try:
            try:
                summary = await self._condense(ctx, shown)
            except LLMContextOverflow as exc:
                # Dense output (numbers, JSON) runs far under the client's 3 chars/token
                # estimate, so the first try may not fit; the overflow carries the exact count:
                # shrink the text in proportion to what fits, once.
                room = exc.context_length - loop.condense_max_tokens - CONDENSE_PROMPT_TOKENS
                if room <= 0:
                    raise
                shown = shown[: int(len(shown) * room / exc.prompt_tokens * CONDENSE_MARGIN)]
                ctx.notes.append(f"{result.tool} output cut to {len(shown)} of {len(text)} "
                                 "characters to fit the summarization role's context")
                summary = await self._condense(ctx, shown)
        except LLMError as exc:
            ctx.notes.append(f"condensing {result.tool} output failed: {exc}")
            return text[: loop.condense_above_chars] + " [truncated]"
        ctx.llm_calls += 1
        return summary.content

    async def _condense(self, ctx: ExecutionContext, text: str) -> LLMResponse:
        return await self.d.client.respond(
            "summarization", [{"role": "user", "content": _condense_prompt(ctx.query, text)}],
            max_tokens=self.d.modes.tool_loop.condense_max_tokens)

    # ---- stage 3 and the end -----------------------------------------------------------------

    async def validation(self, ctx: ExecutionContext) -> Outcome:
        assert ctx.response is not None
        answer = ctx.response.content
        facts = "\n".join(r.text for r in ctx.tool_results if r.ok)
        failures = check_answer(ctx.query, answer, tool_text=facts,
                                finish_reason=ctx.response.finish_reason)
        judged = "checks only"
        if not failures and self.d.modes.validation.use_model and \
                "validation" in self.policy(ctx).allowed_roles:
            try:
                verdict = await judge(self.d.client, ctx.query, answer, facts)
                ctx.llm_calls += 1
                judged = f"validation model: passed={verdict.passed} ({verdict.confidence:.2f})"
                if not verdict.passed:
                    failures = verdict.failures or ["the validation model rejected the answer"]
            except LLMError as exc:
                ctx.notes.append(f"validation model unavailable: {exc}")
                judged = "validation model unavailable, checks only"
        ctx.validation_attempts += 1
        if not failures:
            ctx.validation = "passed" if ctx.validation_attempts == 1 else "passed_after_retry"
            return TaskState.SYNTHESIS, f"passed ({judged})"
        ctx.validation_failures = failures
        if ctx.validation_attempts <= self.validation_retries:
            ctx.conversation += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "Your answer had these problems: "
                 + "; ".join(failures) + ". Answer the original request again, fixing them."},
            ]
            return TaskState.LLM_CALL, "failed: " + "; ".join(failures) + " -> one retry"
        ctx.validation = "unvalidated"
        again = " again" if ctx.validation_attempts > 1 else ""
        return TaskState.SYNTHESIS, f"failed{again}: " + "; ".join(failures) + " -> flagged"

    async def synthesis(self, ctx: ExecutionContext) -> Outcome:
        if ctx.reply is None:
            assert ctx.response is not None
            ctx.reply = ctx.response.content
        parts: list[Any] = [f"route {ctx.routing.route if ctx.routing else '?'}",
                            f"role {ctx.role or 'none (tool)'}", f"validation {ctx.validation}"]
        return TaskState.COMPLETED, ", ".join(str(p) for p in parts)
