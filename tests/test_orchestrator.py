"""Every path through the state machine, with the real llama.cpp server wherever a model is
called."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from localroute.config.modes import Mode, ModesConfig, load_modes
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.machine import EDGES, Orchestrator, mermaid
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.routing.classifier import RouteClassifier
from localroute.tools.base import NoArgs, Tool, ToolContext, ToolResult
from tests.conftest import make_profile, server_role
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.servers import LlamaServer, free_port

S = TaskState


@pytest.fixture(scope="module")
def classifier() -> RouteClassifier:
    return RouteClassifier.load()


def modes(**changes: dict[str, object]) -> ModesConfig:
    base = load_modes()
    update = {k: getattr(base, k).model_copy(update=v) for k, v in changes.items()}
    return base.model_copy(update=update)


def stack(url: str, **per_role: dict[str, object]) -> dict[str, dict[str, object]]:
    roles = {name: server_role(url, max_tokens=24) for name in (
        "router", "reasoning", "coding", "coding_large_context", "summarization")}
    roles["validation"] = {"shares_instance_with": "router", "max_tokens": 48}
    for name, extra in per_role.items():
        roles[name] = {**roles[name], **extra}
    return roles


async def run(orch: Orchestrator, query: str, **kw: object) -> ExecutionContext:
    ctx = ExecutionContext(messages=[{"role": "user", "content": query}], **kw)  # type: ignore[arg-type]
    try:
        return await orch.run(ctx)
    finally:
        await orch.deps.client.aclose()


def states(ctx: ExecutionContext) -> list[str]:
    return [s.state.value for s in ctx.steps] + [ctx.state.value]


async def test_tool_only_needs_no_model_server(classifier: RouteClassifier) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    orch = build_orchestrator(make_profile(stack(dead)), classifier=classifier)
    ctx = await run(orch, "how much disk space is free?")
    assert states(ctx) == ["INIT", "ROUTING_DECISION", "TOOL_ONLY_EXECUTION", "SYNTHESIS",
                           "COMPLETED"]
    assert ctx.routing is not None and ctx.routing.tool_call is not None
    assert ctx.routing.tool_call.name == "disk" and ctx.llm_calls == 0
    assert ctx.reply and "free" in ctx.reply.lower()


async def test_router_path(llama_server: LlamaServer, classifier: RouteClassifier) -> None:
    orch = build_orchestrator(make_profile(stack(llama_server.base_url)), classifier=classifier)
    ctx = await run(orch, "what is 2+2", allow_router_model=False)
    assert ctx.state == S.COMPLETED, ctx.error
    assert ctx.routing is not None and ctx.routing.route == "router" and ctx.role == "router"
    assert states(ctx)[-3:] == ["LLM_CALL", "SYNTHESIS", "COMPLETED"]
    assert ctx.validation == "skipped" and ctx.reply and ctx.llm_calls == 1


async def test_reasoning_with_tool_calls_is_bounded_and_refuses_repeats(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    forced = {"tool_choice": {"type": "function", "function": {"name": "cpu"}}}
    roles = stack(llama_server.base_url,
                  reasoning={"supports_tools": True, "extra_body": forced, "max_tokens": 32})
    orch = build_orchestrator(make_profile(roles), classifier=classifier,
                              modes=modes(validation={"use_model": False}))
    ctx = await run(orch, "why is my machine slow right now?", channel="system_health")
    assert ctx.state == S.COMPLETED, ctx.error
    assert ctx.role == "reasoning" and ctx.routing is not None
    assert ctx.routing.decided_by == "channel"
    assert [r.tool for r in ctx.tool_results] == ["cpu"]  # run once, then refused
    executions = [s.detail for s in ctx.steps if s.state == S.TOOL_EXECUTION]
    assert len(executions) == 3 and "refused (repeat)" in executions[1]
    assert ctx.tool_iterations == 3 and ctx.llm_calls >= 4
    tool_messages = [m for m in ctx.conversation if m["role"] == "tool"]
    assert "logical_cores" in json.loads(tool_messages[0]["content"])


async def test_coding_with_a_large_context(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    code = "def add(a, b):\n    return a + b\n" * 20
    orch = build_orchestrator(make_profile(stack(llama_server.base_url)), classifier=classifier,
                              modes=modes(routing={"large_context_tokens": 100},
                                          validation={"use_model": False}))
    ctx = await run(orch, f"Add type hints to this code:\n```python\n{code}```", channel="code")
    assert ctx.selection is not None and ctx.selection.role == "coding_large_context"
    assert ctx.complexity is not None and ctx.complexity.estimated_context_tokens > 100
    assert ctx.state == S.COMPLETED and ctx.response is not None
    assert ctx.response.role == "coding_large_context"


CANNED = json.dumps({
    "id": "x", "object": "chat.completion", "created": 0, "model": "smollm2",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "<tool_call>{\"name\": \"cpu\"}</tool_call>"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
})


@pytest.fixture
def proxy(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as p:
        yield p


async def test_validation_fails_then_the_retry_passes(
    proxy: FaultProxy, classifier: RouteClassifier
) -> None:
    proxy.set_fault(Fault(kind="replace", body=CANNED, times=1, path_contains="chat"))
    roles = stack(proxy.base_url, coding={"max_tokens": 200})
    orch = build_orchestrator(make_profile(roles), classifier=classifier,
                              modes=modes(validation={"use_model": False}))
    ctx = await run(orch, "What does `x = 1` do in Python? Answer in one short sentence.",
                    channel="code")
    assert ctx.state == S.COMPLETED, ctx.error
    assert ctx.validation == "passed_after_retry", ctx.steps
    assert "leaked markup" in ctx.validation_failures[0]
    assert states(ctx).count("LLM_CALL") == 2 and "<tool_call>" not in (ctx.reply or "")


async def test_validation_failing_twice_is_delivered_flagged(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    orch = build_orchestrator(make_profile(stack(llama_server.base_url)), classifier=classifier,
                              modes=modes(validation={"use_model": False}))
    orch.deps.modes.modes[Mode.NORMAL] = orch.deps.modes.modes[Mode.NORMAL].model_copy(
        update={"max_tokens": {"coding": 2}})
    ctx = await run(orch, "Write a Python function that reverses a string.", channel="code")
    assert ctx.state == S.COMPLETED and ctx.validation == "unvalidated"
    assert "token limit" in ctx.validation_failures[0]
    assert states(ctx).count("VALIDATION") == 2 and ctx.reply is not None


async def test_validation_model_verdict_is_recorded(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    roles = stack(llama_server.base_url, coding={"max_tokens": 120})
    orch = build_orchestrator(make_profile(roles), classifier=classifier)
    ctx = await run(orch, "What does `x = 1` do in Python? Answer in one short sentence.",
                    channel="code")
    assert ctx.state == S.COMPLETED, ctx.error
    judged = [s.detail for s in ctx.steps if s.state == S.VALIDATION]
    assert judged and all("validation model: passed=" in d or "failed" in d for d in judged)
    assert ctx.validation in {"passed", "passed_after_retry", "unvalidated"}


async def test_router_model_garbage_is_recorded_and_classifier_stands(
    proxy: FaultProxy, classifier: RouteClassifier
) -> None:
    proxy.set_fault(Fault(kind="replace", path_contains="chat", body=CANNED.replace(
        '<tool_call>{\\"name\\": \\"cpu\\"}</tool_call>', "certainly! here you go")))
    orch = build_orchestrator(make_profile(stack(proxy.base_url)), classifier=classifier,
                              modes=modes(routing={"escalation_threshold": 1.0}))
    ctx = await run(orch, "tell me something nice about otters")
    decision = ctx.routing
    assert decision is not None and decision.escalated
    assert decision.decided_by == "classifier"
    assert decision.escalation_error and "LLMInvalidResponse" in decision.escalation_error
    assert any("router model not used" in n for n in ctx.notes)
    assert ctx.state == S.COMPLETED and ctx.reply == "certainly! here you go"


async def test_lockdown_refuses_inference_but_answers_tools(classifier: RouteClassifier) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    orch = build_orchestrator(make_profile(stack(dead)), classifier=classifier)
    tool = await run(orch, "what's the uptime?", mode=Mode.LOCKDOWN)
    assert tool.state == S.COMPLETED and tool.llm_calls == 0
    orch = build_orchestrator(make_profile(stack(dead)), classifier=classifier)
    refused = await run(orch, "Write a haiku about autumn", mode=Mode.LOCKDOWN)
    assert refused.state == S.FAILED
    assert refused.error and "LOCKDOWN refuses model inference" in refused.error


async def test_degraded_downgrades_coding_to_router(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    orch = build_orchestrator(make_profile(stack(llama_server.base_url)), classifier=classifier)
    ctx = await run(orch, "Write a bash one-liner to count lines in all .py files",
                    mode=Mode.DEGRADED, channel="code")
    assert ctx.selection is not None and ctx.selection.downgraded_from == "coding"
    assert ctx.role == "router" and ctx.state == S.COMPLETED
    assert any("downgraded from coding by mode DEGRADED" in s.detail for s in ctx.steps)


async def test_a_raising_step_ends_failed_with_its_reason(classifier: RouteClassifier) -> None:
    orch = build_orchestrator(make_profile(stack("http://127.0.0.1:9/v1")), classifier=classifier)

    async def boom(ctx: ExecutionContext) -> tuple[TaskState, str]:
        raise RuntimeError("disk on fire")

    orch.table[S.ROUTING_DECISION] = boom
    ctx = await run(orch, "hello")
    assert ctx.state == S.FAILED
    assert ctx.error == "ROUTING_DECISION raised RuntimeError: disk on fire"
    assert states(ctx) == ["INIT", "ROUTING_DECISION", "FAILED"]


def _returning(state: TaskState):  # type: ignore[no-untyped-def]
    async def step(ctx: ExecutionContext) -> tuple[TaskState, str]:
        return state, f"-> {state.value}"

    return step


async def test_an_illegal_transition_fails(classifier: RouteClassifier) -> None:
    orch = build_orchestrator(make_profile(stack("http://127.0.0.1:9/v1")), classifier=classifier)
    orch.table[S.ROUTING_DECISION] = _returning(S.COMPLETED)
    ctx = await run(orch, "hello")
    assert ctx.state == S.FAILED and ctx.error is not None
    assert ctx.error.startswith("illegal transition ROUTING_DECISION -> COMPLETED")


async def test_the_step_limit_ends_an_endless_tool_loop(classifier: RouteClassifier) -> None:
    orch = build_orchestrator(make_profile(stack("http://127.0.0.1:9/v1")), classifier=classifier)
    orch.table[S.ROUTING_DECISION] = _returning(S.MODEL_SELECTION)
    orch.table[S.MODEL_SELECTION] = _returning(S.LLM_CALL)
    orch.table[S.LLM_CALL] = _returning(S.TOOL_EXECUTION)
    orch.table[S.TOOL_EXECUTION] = _returning(S.LLM_CALL)
    orch.step_limit = 7
    ctx = await run(orch, "hello")
    assert ctx.state == S.FAILED and len(ctx.steps) == 8
    assert ctx.error == "step limit 7 reached in LLM_CALL"


def test_mermaid_is_generated_from_the_table() -> None:
    diagram = mermaid()
    for state, targets in EDGES.items():
        for target in targets:
            assert f"{state.value} --> {target.value}" in diagram
    assert diagram.count("-->") == sum(len(t) for t in EDGES.values()) + 3


class InventoryTool(Tool[NoArgs]):
    """A read-only tool with a long, fixed output (a pure unit: it talks to nothing)."""

    name = "inventory"
    description = "The machine's installed packages."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        packages = {f"package-{i}": f"{i}.0.{i % 7}" for i in range(300)}
        return self.result({"packages": packages}, f"{len(packages)} packages installed")


async def test_large_tool_output_is_condensed_by_the_summarization_role(
    llama_server: LlamaServer, classifier: RouteClassifier
) -> None:
    forced = {"tool_choice": {"type": "function", "function": {"name": "inventory"}}}
    roles = stack(llama_server.base_url,
                  reasoning={"supports_tools": True, "extra_body": forced, "max_tokens": 32},
                  # Prefilling ~1,900 tokens takes seconds alone, minutes on a loaded machine.
                  summarization={"max_tokens": 40, "default_timeout": 600})
    # Validation is skipped for this route so that the model calls are exactly the three below
    # (a validation retry would add one, depending on what the model happens to write).
    orch = build_orchestrator(
        make_profile(roles), classifier=classifier,
        modes=modes(validation={"use_model": False, "skip_routes": ["tool", "router",
                                                                      "reasoning"]},
                    tool_loop={"condense_above_chars": 500, "max_iterations": 1}))
    orch.deps.registry.register(InventoryTool())
    ctx = await run(orch, "why is my machine slow right now?", channel="system_health")
    assert ctx.state == S.COMPLETED, ctx.error
    assert [r.tool for r in ctx.tool_results] == ["inventory"]
    raw = ctx.tool_results[0].for_model()
    # 300 packages are ~7,600 characters of JSON, which SmolLM2's tokenizer makes ~4,600 tokens
    # (digits and punctuation are ~1.6 characters a token): more than the 2,048-token context,
    # so the condensing prompt must be cut to fit before the summarization role can answer.
    assert len(raw) > 7000
    assert not any("condensing" in n for n in ctx.notes), ctx.notes
    assert any("output cut to" in n for n in ctx.notes), ctx.notes
    (tool_message,) = [m for m in ctx.conversation if m["role"] == "tool"]
    assert tool_message["content"] != raw and len(tool_message["content"]) < len(raw)
    assert not tool_message["content"].endswith("[truncated]")
    assert ctx.llm_calls == 3  # the tool call, the condensing call, the final answer


async def test_a_cancelled_run_still_ends_failed_with_its_reason(
        llama_server: LlamaServer, classifier: RouteClassifier) -> None:
    import asyncio

    seen: list[tuple[str, str]] = []
    with FaultProxy(llama_server.url) as proxy:
        proxy.set_fault(Fault(kind="delay", seconds=30))  # the model call hangs
        orch = build_orchestrator(make_profile(stack(proxy.base_url)), classifier=classifier,
                                  on_step=lambda _, r: seen.append((r.state.value,
                                                                    r.next_state.value)))
        ctx = ExecutionContext(messages=[{"role": "user", "content": "what is 2+2"}],
                               allow_router_model=False)
        task = asyncio.ensure_future(orch.run(ctx))
        while proxy.in_flight == 0:  # the model call has reached the backend
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await orch.deps.client.aclose()
    assert ctx.state == S.FAILED and seen[-1] == ("LLM_CALL", "FAILED")
    assert ctx.error and "cancelled in LLM_CALL" in ctx.error
