"""What `build_orchestrator` attaches from telemetry.yaml: the recorder (with the OpenTelemetry
exporter as its sink when an OTLP endpoint is configured), the client's call hook, the
`telemetry` tool's summary, the routing cache and the learned policy."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localroute.client.llm_client import LLMClient
from localroute.config.modes import ModesConfig
from localroute.config.schema import ResolvedProfile
from localroute.config.telemetry import TelemetryConfig, load_telemetry_config
from localroute.residency.tickets import ResidencyEvent
from localroute.routing.cache import RoutingCache, routing_fingerprint, shared_cache
from localroute.routing.classifier import RouteClassifier
from localroute.routing.policy import RolePolicy
from localroute.telemetry import events as ev
from localroute.telemetry.emitter import Telemetry
from localroute.telemetry.learning import load_policy
from localroute.telemetry.otel import otel_sink
from localroute.telemetry.recorder import Recorder
from localroute.telemetry.stats import summary
from localroute.tools.base import ToolContext

Hook = Callable[[Any, Any], None]  # the orchestrator's StepHook (it sits above this module)


@dataclass
class Instrumentation:
    telemetry: Telemetry | None
    cache: RoutingCache | None
    policy: RolePolicy | None
    recorder: Recorder | None

    def hook(self, user: Hook | None) -> Hook | None:
        """The recorder's on_step, chained before a caller's own hook."""
        recorder = self.recorder
        if recorder is None:
            return user
        if user is None:
            return recorder.on_step

        def both(ctx: Any, record: Any) -> None:
            recorder.on_step(ctx, record)
            user(ctx, record)

        return both


_unreachable: set[str] = set()


def shared_telemetry(config: TelemetryConfig | None = None) -> Telemetry | None:
    """The process-wide recorder of telemetry.yaml's store, or None when recording is off or
    the store cannot be reached (said once per store, and requests still run without it)."""
    config = config or load_telemetry_config()
    if not config.telemetry.enabled:
        return None
    url = config.telemetry.resolved_url()
    if url in _unreachable:
        return None
    try:
        return Telemetry.shared(config.telemetry)
    except ConnectionError as exc:
        _unreachable.add(url)
        print(f"localroute: telemetry is off for this run: {exc}", file=sys.stderr)
        return None


def residency_hook(telemetry: Telemetry) -> Callable[[ResidencyEvent], None]:
    """The residency manager's event hook: each load and eviction one stored event."""

    def emit(e: ResidencyEvent) -> None:
        if e.kind == "load":
            telemetry.emit(ev.residency_load(
                instance=e.instance, model=e.model, cause=e.cause, ok=e.ok, seconds=e.seconds,
                error=e.error, evicted=list(e.evicted), adopted=e.adopted,
                footprint_bytes=e.footprint_bytes))
        else:
            telemetry.emit(ev.residency_eviction(
                instance=e.instance, model=e.model, cause=e.cause, ok=e.ok, error=e.error,
                for_instance=e.for_instance, idle_s=e.idle_s, expected_cost_s=e.expected_cost_s,
                footprint_bytes=e.footprint_bytes))

    return emit


def instrument(
    profile: ResolvedProfile,
    modes: ModesConfig,
    classifier: RouteClassifier,
    client: LLMClient,
    tool_ctx: ToolContext,
    *,
    config: TelemetryConfig | None = None,
    telemetry: Telemetry | None = None,
) -> Instrumentation:
    config = config or load_telemetry_config()
    if telemetry is None:
        telemetry = shared_telemetry(config)
    cache = None
    if config.routing_cache.enabled:
        cache = shared_cache(config.routing_cache)
        cache.bind(routing_fingerprint(profile, modes, classifier.artifact_id()))
    policy = None
    if config.routing_policy.enabled:
        policy = (load_policy(telemetry.store, config.routing_policy) if telemetry
                  else RolePolicy(config.routing_policy))
    # OpenTelemetry export follows its own endpoint setting, with or without the store.
    sink = otel_sink(config.telemetry)
    recorder = None
    if telemetry is not None or policy is not None or sink is not None:
        recorder = Recorder(telemetry, learners=[policy.observe] if policy else [],
                            sinks=[sink] if sink else [])
    if recorder is not None and (telemetry is not None or sink is not None):
        client.on_call = recorder.on_model_call
    if telemetry is not None:
        client.residency.on_event = residency_hook(telemetry)
        store = telemetry.store

        async def telemetry_summary() -> dict[str, Any]:
            await asyncio.to_thread(telemetry.flush)
            return await asyncio.to_thread(summary, store)

        tool_ctx.telemetry_summary = telemetry_summary
    return Instrumentation(telemetry, cache, policy, recorder)
