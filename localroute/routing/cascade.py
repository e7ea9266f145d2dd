"""Stage 1: channel -> rules -> classifier -> (only when unsure) the router model."""

from __future__ import annotations

import re
import time
from typing import Literal

from localroute.client.llm_client import LLMClient
from localroute.config.modes import RoutingSettings
from localroute.routing.cache import RoutingCache
from localroute.routing.classifier import RouteClassifier
from localroute.routing.decision import RoutingDecision, ToolInvocation
from localroute.routing.router_model import ask_router_model
from localroute.routing.rules import apply_rules
from localroute.routing.types import Route, ToolHint
from localroute.tools.arguments import arguments_from_query
from localroute.types import LLMError

Channel = Literal["code", "system_health"]
CHANNELS: tuple[str, ...] = ("code", "system_health")
# On the system-health channel these ask for a diagnosis (reasoning over tool output), not for
# one tool's reading.
_DIAGNOSIS = re.compile(
    r"\bwhy\b|\bdiagnos|\bwhat(?:'s| is) (?:wrong|causing|eating|using)|\bslow|\bsluggish|"
    r"\blag|\bhot\b|\bfans?\b|\bshould i\b",
    re.IGNORECASE,
)


def _tool(hint: ToolHint | None, query: str) -> ToolInvocation | None:
    return ToolInvocation(name=hint, arguments=arguments_from_query(hint, query)) if hint else None


class Stage1Router:
    def __init__(
        self,
        classifier: RouteClassifier,
        settings: RoutingSettings,
        client: LLMClient | None = None,
        cache: RoutingCache | None = None,
    ) -> None:
        self.classifier = classifier
        self.settings = settings
        self.client = client
        self.cache = cache

    def decide_fast(self, query: str, channel: str | None = None) -> RoutingDecision:
        """Stage 1 without any model call: channel, rules, classifier."""
        started = time.perf_counter()
        decision = self._fast(query, channel)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    def _fast(self, query: str, channel: str | None) -> RoutingDecision:
        if channel is not None and channel not in CHANNELS:
            raise ValueError(f"unknown channel '{channel}'; known channels: {', '.join(CHANNELS)}")
        if channel == "code":
            return RoutingDecision(route="coding", confidence=1.0, decided_by="channel",
                                   reason="channel 'code'")
        hit = apply_rules(query)
        if hit is not None and (channel is None or hit.route == "tool"):
            return RoutingDecision(route=hit.route, tool_call=_tool(hit.tool_hint, query),
                                   confidence=1.0, decided_by="rules", reason=f"rule {hit.reason}")
        prediction = self.classifier.predict(query)
        if channel == "system_health":
            # A system-health channel is answered by a tool, or reasoned about with tools.
            if prediction.route == "tool" and not _DIAGNOSIS.search(query):
                health = prediction.tool_hint or self.classifier.predict_tool_hint(query)
                return RoutingDecision(route="tool", tool_call=_tool(health, query),
                                       confidence=prediction.confidence, decided_by="channel",
                                       reason="channel 'system_health', a tool answers it")
            return RoutingDecision(route="reasoning", confidence=1.0, decided_by="channel",
                                   reason="channel 'system_health', needs reasoning over tools")
        route: Route = prediction.route
        hint: ToolHint | None = None
        if route == "tool":
            hint = prediction.tool_hint or self.classifier.predict_tool_hint(query)
        top = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])[:2]
        shown = ", ".join(f"{r} {p:.2f}" for r, p in top)
        return RoutingDecision(route=route, tool_call=_tool(hint, query),
                               confidence=prediction.confidence, decided_by="classifier",
                               reason=f"classifier: {shown}")

    async def decide(
        self, query: str, channel: str | None = None, *, allow_model: bool = True
    ) -> RoutingDecision:
        started = time.perf_counter()
        decision = self.cache.get(query, channel, allow_model) if self.cache else None
        if decision is not None:
            if decision.tool_call is not None:  # arguments come from this query, not the cache
                decision.tool_call = ToolInvocation(name=decision.tool_call.name, arguments=(
                    arguments_from_query(decision.tool_call.name, query)))
            decision.latency_ms = (time.perf_counter() - started) * 1000
            return decision
        decision = self._fast(query, channel)
        unsure = (decision.decided_by == "classifier"
                  and decision.confidence < self.settings.escalation_threshold)
        if unsure and allow_model and self.client is not None:
            decision = await self._escalate(query, decision)
        if self.cache is not None:
            self.cache.put(query, channel, allow_model, decision)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    async def _escalate(self, query: str, fallback: RoutingDecision) -> RoutingDecision:
        assert self.client is not None
        try:
            verdict = await ask_router_model(
                self.client, query, timeout=self.settings.router_model_timeout,
                max_tokens=self.settings.router_model_max_tokens,
            )
        except LLMError as exc:
            # Recorded, and the classifier's answer stands.
            return fallback.model_copy(update={
                "escalated": True,
                "escalation_error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                "reason": fallback.reason + "; router model failed, classifier answer kept",
            })
        hint = verdict.tool if verdict.route == "tool" else None
        if verdict.route == "tool" and hint is None:
            hint = self.classifier.predict_tool_hint(query)
        return RoutingDecision(
            route=verdict.route, tool_call=_tool(hint, query), confidence=verdict.confidence,
            decided_by="router_model", escalated=True, reasoning_depth=verdict.reasoning_depth,
            reason=f"router model (classifier was unsure: {fallback.reason})",
        )
