"""Stage 1 cascade (channel, rules, classifier, escalation) and stage 2 selection rules."""

from __future__ import annotations

import pytest

from localroute.config.modes import load_modes
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.routing.complexity import apply_mode, assess, select_role
from localroute.routing.decision import Complexity, RoleSelection, RoutingDecision

ALL = ("router", "validation", "reasoning", "reasoning_heavy", "coding", "coding_large_context",
       "summarization")


@pytest.fixture(scope="module")
def router() -> Stage1Router:
    return Stage1Router(RouteClassifier.load(), load_modes().routing)


def decision(route: str, **kw: object) -> RoutingDecision:
    return RoutingDecision(route=route, confidence=0.9, decided_by="classifier", reason="t", **kw)  # type: ignore[arg-type]


def test_code_channel_wins_over_content(router: Stage1Router) -> None:
    d = router.decide_fast("how much disk space is free?", channel="code")
    assert (d.route, d.decided_by) == ("coding", "channel")


def test_system_health_channel_picks_tool_or_reasoning(router: Stage1Router) -> None:
    tool = router.decide_fast("how much memory is free?", channel="system_health")
    assert tool.route == "tool" and tool.tool_call is not None
    assert tool.tool_call.name == "memory"
    why = router.decide_fast("why is my laptop so slow today?", channel="system_health")
    assert (why.route, why.decided_by) == ("reasoning", "channel")


def test_unknown_channel_is_named(router: Stage1Router) -> None:
    with pytest.raises(ValueError, match="unknown channel 'voice'; known channels: code"):
        router.decide_fast("hi", channel="voice")


def test_rules_fill_tool_arguments(router: Stage1Router) -> None:
    d = router.decide_fast("ls -la /tmp")
    assert d.decided_by == "rules" and d.route == "tool"
    assert d.tool_call is not None and d.tool_call.name == "list_directory"
    assert d.tool_call.arguments.get("path") == "/tmp"


def test_classifier_decision_explains_itself(router: Stage1Router) -> None:
    d = router.decide_fast("Write a limerick about a cat who codes")
    assert d.decided_by == "classifier" and d.route == "router"
    assert d.reason.startswith("classifier: router ")
    assert d.latency_ms > 0


async def test_no_escalation_without_a_client(router: Stage1Router) -> None:
    strict = Stage1Router(router.classifier, load_modes().routing.model_copy(
        update={"escalation_threshold": 1.0}))
    d = await strict.decide("tell me about otters")
    assert not d.escalated and d.decided_by == "classifier"


@pytest.mark.parametrize(
    ("route", "complexity", "role"),
    [
        ("summarization", Complexity(reasoning_depth=3, code_generation_required=False,
                                     estimated_context_tokens=5000), "summarization"),
        ("coding", Complexity(reasoning_depth=5, code_generation_required=True,
                              estimated_context_tokens=500), "coding"),
        ("coding", Complexity(reasoning_depth=5, code_generation_required=True,
                              estimated_context_tokens=25_000), "coding_large_context"),
        ("reasoning", Complexity(reasoning_depth=8, code_generation_required=False,
                                 estimated_context_tokens=100), "reasoning"),
        ("reasoning", Complexity(reasoning_depth=7, code_generation_required=False,
                                 estimated_context_tokens=100), "router"),
        ("router", Complexity(reasoning_depth=9, code_generation_required=False,
                              estimated_context_tokens=100), "reasoning"),
        ("router", Complexity(reasoning_depth=2, code_generation_required=True,
                              estimated_context_tokens=100), "coding"),
    ],
)
def test_adr_selection_rules(route: str, complexity: Complexity, role: str) -> None:
    assert select_role(decision(route), complexity).role == role


def test_assess_reads_depth_from_the_router_model_when_asked() -> None:
    c = assess("hello", decision("router", reasoning_depth=9), 10)
    assert c.reasoning_depth == 9
    c = assess("Prove that the sum of two odd numbers is even, step by step.",
               decision("reasoning"), 20)
    assert c.reasoning_depth >= 8 and not c.code_generation_required


def test_mode_downgrades_along_the_line_of_work() -> None:
    wanted = RoleSelection(role="coding_large_context", reason="big")
    got = apply_mode(wanted, ("router", "coding"), set(ALL))
    assert got is not None and (got.role, got.downgraded_from) == ("coding", "coding_large_context")
    got = apply_mode(RoleSelection(role="summarization", reason="s"), ("router",), set(ALL))
    assert got is not None and got.role == "router"
    assert apply_mode(RoleSelection(role="reasoning", reason="r"), (), set(ALL)) is None
    # A role the profile does not define is skipped like a forbidden one.
    got = apply_mode(RoleSelection(role="reasoning", reason="r"), ALL, {"router"})
    assert got is not None and got.role == "router"
