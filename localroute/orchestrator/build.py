"""Assembling an orchestrator for a profile: client, stage-1 router, tools, modes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localroute.backends.health import role_statuses
from localroute.client.llm_client import LLMClient
from localroute.config.modes import ModesConfig, load_modes
from localroute.config.schema import ResolvedProfile
from localroute.config.telemetry import TelemetryConfig
from localroute.orchestrator.machine import Orchestrator, StepHook
from localroute.orchestrator.steps import Deps
from localroute.routing.cascade import Stage1Router
from localroute.routing.classifier import RouteClassifier
from localroute.telemetry.emitter import Telemetry
from localroute.telemetry.wiring import instrument
from localroute.tools.base import ToolContext
from localroute.tools.files import FILE_TOOLS
from localroute.tools.protected import Protection
from localroute.tools.registry import default_registry
from localroute.tools.roots import NO_ROOTS_HELP


def build_orchestrator(
    profile: ResolvedProfile,
    *,
    modes: ModesConfig | None = None,
    client: LLMClient | None = None,
    classifier: RouteClassifier | None = None,
    roots: Sequence[Path] = (),
    no_roots_reason: str = NO_ROOTS_HELP,
    on_step: StepHook | None = None,
    telemetry: Telemetry | None = None,
    telemetry_config: TelemetryConfig | None = None,
) -> Orchestrator:
    """`telemetry_config` defaults to telemetry.yaml (recording on, cache on, policy off);
    `telemetry` replaces the process-wide recorder of its store.

    `roots` are the checked file roots (tools/roots.py: `choose_roots`). With none, the file
    tools are not offered to models, and a tool-only file question is answered with
    `no_roots_reason`, which says how to configure roots."""
    modes = modes or load_modes()
    client = client or LLMClient(profile)

    async def list_models() -> list[dict[str, Any]]:
        statuses = await role_statuses(profile, client.pool,
                                       fresh_s=modes.homeostasis.health_interval_s)
        return [s.model_dump() for s in statuses]

    tool_ctx = ToolContext(roots=list(roots), protection=Protection(modes.tools.deny),
                           list_models=list_models)
    registry = default_registry()
    if not tool_ctx.roots:
        for name in FILE_TOOLS:
            registry.withhold(name, no_roots_reason)
    classifier = classifier or RouteClassifier.load()
    kit = instrument(profile, modes, classifier, client, tool_ctx, config=telemetry_config,
                     telemetry=telemetry)
    router = Stage1Router(classifier, modes.routing, client, cache=kit.cache)
    deps = Deps(profile=profile, client=client, router=router, registry=registry,
                tool_ctx=tool_ctx, modes=modes, policy=kit.policy)
    return Orchestrator(deps, on_step=kit.hook(on_step))
