"""Stage 1: channel -> rules -> classifier -> (only when unsure) the router model.

In `decide`, the CPU part (cache lookup, rules, classifier, argument filler) runs off the event
loop with a deadline (routing/offload.py), and the router model is asked only when a router slot
is free, within a deadline that includes any wait for the slot: a busy router or a late answer
leaves the classifier's answer standing, with the reason in `escalation_error`.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Literal

from localroute.bounded_text import stage1_view
from localroute.client.llm_client import LLMClient
from localroute.config.modes import RoutingSettings
from localroute.routing.cache import RoutingCache
from localroute.routing.classifier import RouteClassifier
from localroute.routing.decision import RoutingDecision, ToolInvocation
from localroute.routing.offload import Stage1Timeout, run_stage1
from localroute.routing.router_model import ROUTER_ROLE, ask_router_model
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
        self._asking = 0  # escalations between the busy check and their answer

    def decide_fast(self, query: str, channel: str | None = None) -> RoutingDecision:
        """Stage 1 without any model call: channel, rules, classifier."""
        started = time.perf_counter()
        decision = self._fast(query, channel)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    def _fast(self, query: str, channel: str | None) -> RoutingDecision:
        query = stage1_view(query)
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
        try:
            decision, cached = await run_stage1(
                lambda: self._cached_or_fast(query, channel, allow_model),
                self.settings.stage1_timeout)
        except Stage1Timeout as exc:
            decision, cached = _deadline_answer(query, exc), True  # neither escalated nor kept
        if not cached:
            unsure = (decision.decided_by == "classifier"
                      and decision.confidence < self.settings.escalation_threshold)
            if unsure and allow_model and self.client is not None:
                decision = await self._escalate(query, decision)
            if self.cache is not None:
                self.cache.put(query, channel, allow_model, decision)
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision

    def _cached_or_fast(self, query: str, channel: str | None,
                        allow_model: bool) -> tuple[RoutingDecision, bool]:
        """The cached decision (True) or a fresh one without any model (False)."""
        decision = self.cache.get(query, channel, allow_model) if self.cache else None
        if decision is None:
            return self._fast(query, channel), False
        if decision.tool_call is not None:  # arguments come from this query, not the cache
            decision.tool_call = ToolInvocation(name=decision.tool_call.name, arguments=(
                arguments_from_query(decision.tool_call.name, query)))
        return decision, True

    async def _escalate(self, query: str, fallback: RoutingDecision) -> RoutingDecision:
        assert self.client is not None
        role = self.client.profile.roles.get(ROUTER_ROLE)
        if role is not None:
            gates = self.client.gates.gates_for(role)
            gate = self.client.gates.busy(role)
            room = min(g.capacity for g in gates)
            if gate is not None or self._asking >= room:
                # Waiting for a slot would queue behind the calls the router serves already
                # (the direct clients' among them) and hold this request; the classifier's
                # answer is nearly as good, and free. `_asking` counts escalations still on
                # their way to the gate, which its own counts do not show yet.
                shown = gate or gates[-1]
                return _kept(fallback, f"router busy: {shown.in_flight} of {shown.capacity} "
                             f"slots of gate '{shown.name}' in use, {shown.waiting} waiting, "
                             f"{self._asking} escalations under way; not asked",
                             "router model busy", escalated=False)
        limit = self.settings.router_model_timeout
        self._asking += 1
        try:
            async with asyncio.timeout(limit):  # the wait for a slot (or a load) included
                verdict = await ask_router_model(
                    self.client, query, timeout=limit,
                    max_tokens=self.settings.router_model_max_tokens,
                )
        except TimeoutError:
            return _kept(fallback, f"no answer within {limit:g} s (routing.router_model_timeout, "
                         "the wait for a router slot included)", "router model too slow")
        except LLMError as exc:
            return _kept(fallback, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                         "router model failed")
        finally:
            self._asking -= 1
        hint = verdict.tool if verdict.route == "tool" else None
        if verdict.route == "tool" and hint is None:
            hint = self.classifier.predict_tool_hint(query)
        return RoutingDecision(
            route=verdict.route, tool_call=_tool(hint, query), confidence=verdict.confidence,
            decided_by="router_model", escalated=True, reasoning_depth=verdict.reasoning_depth,
            reason=f"router model (classifier was unsure: {fallback.reason})",
        )


def _kept(fallback: RoutingDecision, why: str, short: str, *,
          escalated: bool = True) -> RoutingDecision:
    """The classifier's answer stands; `why` is recorded as the escalation error."""
    return fallback.model_copy(update={
        "escalated": escalated,
        "escalation_error": why,
        "reason": f"{fallback.reason}; {short}, classifier answer kept",
    })


def _deadline_answer(query: str, exc: Stage1Timeout) -> RoutingDecision:
    return RoutingDecision(
        route="router", confidence=0.0, decided_by="deadline",
        reason=f"{exc} ({len(query)} characters; routing.stage1_timeout); the default route "
        "'router' stands")
