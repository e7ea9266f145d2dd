"""The stage-1 routing cache: keys, TTL, size bound, what it refuses to keep, and invalidation
when the config or the classifier artifact changes."""

from __future__ import annotations

import pytest

from localroute.config.modes import ModesConfig, load_modes
from localroute.config.schema import ResolvedProfile
from localroute.config.telemetry import CacheSettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.routing.cache import RoutingCache, normalise_query, shared_cache
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.routing.decision import RoutingDecision, ToolInvocation
from tests.conftest import make_profile, server_role
from tests.support.servers import free_port

# Decided by the classifier (no rule matches), answered by a tool with no model.
QUERY = "how much disk space is free?"


@pytest.fixture(scope="module")
def classifier() -> RouteClassifier:
    return RouteClassifier.load()


def decision(by: str = "classifier", **kw: object) -> RoutingDecision:
    return RoutingDecision(route="reasoning", confidence=0.8, decided_by=by,  # type: ignore[arg-type]
                           reason="test", **kw)  # type: ignore[arg-type]


def test_keys_are_normalised() -> None:
    assert normalise_query("  How   much DISK is free?!  ") == "how much disk is free"
    cache = RoutingCache()
    cache.put("Why is the sky blue?", None, True, decision())
    hit = cache.get("why is the sky   blue", None, True)
    assert hit is not None and hit.decided_by == "cache"
    assert hit.reason.startswith("cache hit (first decided by classifier)")
    assert cache.get("why is the sky blue", "code", True) is None  # channel is part of the key
    assert cache.get("why is the sky blue", None, False) is None


def test_ttl_and_size_bound() -> None:
    now = [100.0]
    cache = RoutingCache(CacheSettings(ttl_s=10, max_entries=3), clock=lambda: now[0])
    for q in ("a", "b", "c"):
        cache.put(q, None, True, decision())
    assert cache.get("a", None, True) is not None  # "a" is now the most recent
    cache.put("d", None, True, decision())
    assert len(cache) == 3 and cache.get("b", None, True) is None  # least recent went
    now[0] += 10.5
    assert cache.get("a", None, True) is None and cache.get("d", None, True) is None
    assert cache.stats()["hits"] == 1


def test_cheap_and_failed_decisions_are_not_kept() -> None:
    cache = RoutingCache()
    assert not cache.put("x", None, True, decision("rules"))
    assert not cache.put("y", None, True, decision("channel"))
    assert not cache.put("z", None, True, decision(escalation_error="LLMTimeout: slow"))
    assert cache.put("w", None, True, decision("router_model"))
    assert len(cache) == 1


async def test_a_hit_reads_tool_arguments_from_the_live_query(
    classifier: RouteClassifier,
) -> None:
    cache = RoutingCache()
    router = Stage1Router(classifier, load_modes().routing, cache=cache)
    cache.put("read the file /tmp/notes.txt", None, True, RoutingDecision(
        route="tool", confidence=0.9, decided_by="classifier", reason="test",
        tool_call=ToolInvocation(name="read_file", arguments={"path": "/tmp/notes.txt"})))
    hit = await router.decide("Read the file /tmp/Notes.TXT")
    assert hit.decided_by == "cache" and hit.tool_call is not None
    assert hit.tool_call.arguments == {"path": "/tmp/Notes.TXT"}


def stack() -> ResolvedProfile:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return make_profile({r: server_role(dead) for r in ("router", "reasoning", "coding")})


async def route_once(profile: ResolvedProfile, modes: ModesConfig,
                     classifier: RouteClassifier) -> ExecutionContext:
    config = TelemetryConfig.model_validate({"telemetry": {"enabled": False}})
    orch = build_orchestrator(profile, modes=modes, classifier=classifier,
                              telemetry_config=config)
    assert orch.deps.router.cache is shared_cache(config.routing_cache)
    try:
        ctx = await orch.run(ExecutionContext(messages=[{"role": "user", "content": QUERY}]))
    finally:
        await orch.deps.client.aclose()
    assert ctx.state.value == "COMPLETED" and ctx.tool_results[0].tool == "disk"
    return ctx


async def test_config_and_artifact_changes_invalidate(
    classifier: RouteClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, modes = stack(), load_modes()
    first = await route_once(profile, modes, classifier)
    assert first.routing is not None and first.routing.decided_by in ("classifier", "cache")
    again = await route_once(profile, modes, classifier)
    assert again.routing is not None and again.routing.decided_by == "cache"
    assert again.tool_results[0].ok  # the tool still ran: results are never cached

    changed = modes.model_copy(update={"routing": modes.routing.model_copy(
        update={"escalation_threshold": 0.5})})
    after_config = await route_once(profile, changed, classifier)
    assert after_config.routing is not None and after_config.routing.decided_by == "classifier"
    assert (await route_once(profile, changed, classifier)).routing.decided_by == "cache"  # type: ignore[union-attr]

    monkeypatch.setattr(classifier, "artifact_id", lambda: "retrained-artifact")
    after_artifact = await route_once(profile, changed, classifier)
    assert after_artifact.routing is not None
    assert after_artifact.routing.decided_by == "classifier"

    other_profile = make_profile({r: server_role(f"http://127.0.0.1:{free_port()}/v1")
                                  for r in ("router", "coding")})
    after_profile = await route_once(other_profile, changed, classifier)
    assert after_profile.routing is not None
    assert after_profile.routing.decided_by == "classifier"
