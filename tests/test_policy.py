"""The learned routing policy: a simulated environment where one role's success rate drops, the
documented shift bound, the minimum observations, and the governance modes."""

from __future__ import annotations

import random

import pytest

from localroute.config.modes import Mode, load_modes
from localroute.config.schema import ResolvedProfile
from localroute.config.telemetry import PolicySettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.routing.classifier import RouteClassifier
from localroute.routing.decision import RoleSelection
from localroute.routing.policy import RolePolicy, complexity_band, task_type
from tests.conftest import make_profile, server_role
from tests.support.servers import free_port

TASK = "reasoning/high"
ROLES = ("router", "validation", "reasoning", "reasoning_heavy", "coding",
         "coding_large_context", "summarization")


def profile() -> ResolvedProfile:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return make_profile({r: server_role(dead) for r in ROLES})


def static() -> RoleSelection:
    return RoleSelection(role="reasoning", reason="reasoning depth 9 > 7")


def test_task_types_are_route_and_band() -> None:
    assert [complexity_band(d) for d in (0, 3, 4, 6, 7, 10)] == \
        ["low", "low", "medium", "medium", "high", "high"]
    assert task_type("coding", 5) == "coding/medium"


@pytest.mark.parametrize("seed", range(5))
def test_the_policy_leaves_a_role_whose_success_drops_within_the_window(seed: int) -> None:
    settings = PolicySettings(enabled=True)
    rng = random.Random(seed)
    policy = RolePolicy(settings, rng=random.Random(seed + 100))
    roles = profile().roles
    truth = {"reasoning": 0.9, "reasoning_heavy": 0.75, "router": 0.3}
    for role, p in truth.items():  # history: every role measured enough to be a candidate
        for _ in range(settings.window):
            policy.observe(TASK, role, rng.random() < p, 2.0)

    def step() -> str:
        role = policy.choose("reasoning", TASK, static(), allowed=ROLES, roles=roles).selection.role
        policy.observe(TASK, role, rng.random() < truth[role], 2.0)
        return role

    before = [step() for _ in range(100)]
    assert before.count("reasoning") >= 80  # the better role is the usual choice
    truth["reasoning"] = 0.2  # its success rate drops
    post_drop_reasoning = 0
    recent: list[str] = []
    while True:
        role = step()
        recent = [*recent[-9:], role]
        post_drop_reasoning += role == "reasoning"
        if len(recent) == 10 and recent.count("reasoning") <= 1:
            break
        assert post_drop_reasoning <= settings.window, "no shift within `window` observations"
    assert post_drop_reasoning <= settings.window
    after = [step() for _ in range(50)]
    assert after.count("reasoning_heavy") >= 35


def test_too_few_observations_keep_the_static_rules() -> None:
    settings = PolicySettings(enabled=True, min_observations=20)
    policy = RolePolicy(settings, rng=random.Random(1))
    for _ in range(19):
        policy.observe(TASK, "reasoning", False, 9.0)
        policy.observe(TASK, "reasoning_heavy", True, 1.0)
    choice = policy.choose("reasoning", TASK, static(), allowed=ROLES, roles=profile().roles)
    assert choice.selection.role == "reasoning" and choice.decided_by == "rules"
    assert "19/20 observations" in choice.explanation
    policy.observe(TASK, "reasoning", False, 9.0)
    policy.observe(TASK, "reasoning_heavy", True, 1.0)
    choice = policy.choose("reasoning", TASK, static(), allowed=ROLES, roles=profile().roles)
    assert choice.selection.role == "reasoning_heavy" and choice.decided_by == "policy"
    assert choice.explanation.startswith(
        "policy for reasoning/high: reasoning_heavy chosen: 20/20 successes, p50 1.0 s")
    assert "reasoning 0/20, p50 9.0 s" in choice.explanation


def test_latency_penalty_prefers_the_faster_of_equals() -> None:
    policy = RolePolicy(PolicySettings(enabled=True, latency_penalty_per_s=0.05),
                        rng=random.Random(3))
    for i in range(50):
        policy.observe(TASK, "reasoning", i % 10 != 0, 12.0)
        policy.observe(TASK, "reasoning_heavy", i % 10 != 0, 2.0)
    picks = [policy.choose("reasoning", TASK, static(), allowed=ROLES,
                           roles=profile().roles).selection.role for _ in range(200)]
    assert picks.count("reasoning_heavy") > 180


@pytest.mark.parametrize("mode", list(Mode))
def test_the_policy_never_picks_a_role_the_mode_forbids(mode: Mode) -> None:
    modes = load_modes()
    allowed = modes.policy(mode).allowed_roles
    policy = RolePolicy(PolicySettings(enabled=True, min_observations=5), rng=random.Random(7))
    rng = random.Random(11)
    routes = ("router", "reasoning", "coding", "summarization")
    for route in routes:
        for role in ROLES:  # forbidden roles look best of all
            for _ in range(30):
                good = role not in allowed or rng.random() < 0.3
                policy.observe(f"{route}/high", role, good, 0.5)
    roles = profile().roles
    for _ in range(300):
        route = rng.choice(routes)
        base = rng.choice([r for r in ROLES if r in allowed] or ["router"])
        if base not in allowed:
            continue
        chosen = policy.choose(route, f"{route}/high", RoleSelection(role=base, reason="rule"),
                               allowed=allowed, roles=roles).selection.role
        assert chosen in allowed, f"{chosen} chosen in {mode.value}"


async def test_the_orchestrator_applies_and_explains_the_policy_within_the_mode() -> None:
    classifier = RouteClassifier.load()
    config = TelemetryConfig.model_validate({"telemetry": {"enabled": False},
                                             "routing_policy": {"enabled": True}})
    query = "why is my machine slow right now?"

    async def selected(mode: Mode) -> ExecutionContext:
        orch = build_orchestrator(profile(), classifier=classifier, telemetry_config=config)
        assert orch.deps.policy is not None
        for _ in range(30):
            orch.deps.policy.observe(TASK, "reasoning", False, 8.0)
            orch.deps.policy.observe(TASK, "reasoning_heavy", True, 3.0)
        ctx = ExecutionContext(messages=[{"role": "user", "content": query}], mode=mode,
                               channel="system_health")
        try:
            return await orch.run(ctx)
        finally:
            await orch.deps.client.aclose()

    normal = await selected(Mode.NORMAL)
    assert normal.selection is not None and normal.selection.role == "reasoning_heavy"
    assert normal.static_role == "reasoning" and normal.role_decided_by == "policy"
    detail = next(s.detail for s in normal.steps if s.state.value == "MODEL_SELECTION")
    assert "reasoning_heavy chosen: 30/30 successes" in detail
    alert = await selected(Mode.ALERT)  # ALERT forbids reasoning_heavy
    assert alert.selection is not None and alert.selection.role == "reasoning"
