"""The telemetry event schema: every event name and the fields each one carries.

This is the only module that names events. Each builder returns an `EventRow` (the envelope the
store keeps in its columns plus the event's own fields in `data`); emitters pass rows on and never
make their own. Rows are plain dicts (TypedDicts, checked by mypy) because they are built on the
request path, where a validating model per event would cost more than the rest of telemetry.
"""

from __future__ import annotations

import random
import time
from enum import StrEnum
from typing import Any, TypedDict


class EventName(StrEnum):
    STATE_TRANSITION = "state.transition"
    ROUTING_DECISION = "routing.decision"
    ROLE_SELECTION = "routing.role_selection"
    MODEL_CALL = "model.call"
    TOOL_CALL = "tool.call"
    VALIDATION_VERDICT = "validation.verdict"
    MODE_CHANGE = "mode.change"
    MODE_OVERRIDE = "mode.override"
    MODE_BLOCKED = "mode.blocked"
    GOVERNANCE_RULE = "governance.rule"
    GOVERNANCE_EFFECTOR = "governance.effector"
    GOVERNANCE_REFUSAL = "governance.refusal"
    # Logged (structlog) but not stored: a sensor that fails fails on every sample.
    SENSOR_ERROR = "governance.sensor_error"
    RESIDENCY_LOAD = "residency.load"
    RESIDENCY_EVICTION = "residency.eviction"
    REQUEST_OUTCOME = "request.outcome"
    FEEDBACK = "request.feedback"
    BENCHMARK_RESULT = "benchmark.result"


EVENT_NAMES: tuple[str, ...] = tuple(e.value for e in EventName)


class EventRow(TypedDict):
    ts: float  # seconds since the epoch
    event: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    role: str | None
    route: str | None
    duration_ms: float | None
    ok: bool | None
    data: dict[str, Any]


# Ids name spans, they guard nothing: the Mersenne Twister is enough and cheaper than secrets.
def new_span_id() -> str:
    return f"{random.getrandbits(64):016x}"


def new_trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


def _row(event: EventName, trace_id: str, parent: str | None, data: dict[str, Any], *,
         span_id: str | None = None, role: str | None = None, route: str | None = None,
         duration_ms: float | None = None, ok: bool | None = None) -> EventRow:
    return {"ts": time.time(), "event": event.value, "trace_id": trace_id,
            "span_id": span_id or new_span_id(), "parent_span_id": parent, "role": role,
            "route": route, "duration_ms": duration_ms, "ok": ok, "data": data}


def state_transition(trace_id: str, span_id: str, parent: str, *, state: str, next_state: str,
                     started_ms: float, elapsed_ms: float, detail: str,
                     role: str | None, route: str | None) -> EventRow:
    """One step of the orchestrator's state machine (a StepRecord)."""
    return _row(EventName.STATE_TRANSITION, trace_id, parent,
                {"state": state, "next_state": next_state, "started_ms": round(started_ms, 3),
                 "detail": detail}, span_id=span_id, role=role, route=route,
                duration_ms=elapsed_ms, ok=next_state != "FAILED")


def routing_decision(trace_id: str, parent: str | None, *, route: str, decided_by: str,
                     confidence: float, latency_ms: float, escalated: bool,
                     escalation_error: str | None, tool: str | None, reason: str) -> EventRow:
    """Stage 1's verdict (`decided_by` is `cache` on a routing-cache hit)."""
    return _row(EventName.ROUTING_DECISION, trace_id, parent,
                {"decided_by": decided_by, "confidence": confidence, "escalated": escalated,
                 "escalation_error": escalation_error, "tool": tool, "reason": reason},
                route=route, duration_ms=latency_ms, ok=escalation_error is None)


def role_selection(trace_id: str, parent: str | None, *, route: str, role: str,
                   static_role: str, task_type: str, decided_by: str, reason: str,
                   downgraded_from: str | None, reasoning_depth: int,
                   context_tokens: int, substituted_for: str | None = None) -> EventRow:
    """Stage 2: which role serves the request; `decided_by` is `rules` or `policy`;
    `substituted_for` the role that was not resident when a warm substitute answered."""
    return _row(EventName.ROLE_SELECTION, trace_id, parent,
                {"static_role": static_role, "task_type": task_type, "decided_by": decided_by,
                 "reason": reason, "downgraded_from": downgraded_from,
                 "substituted_for": substituted_for,
                 "reasoning_depth": reasoning_depth, "context_tokens": context_tokens},
                role=role, route=route)


def model_call(trace_id: str, parent: str | None, *, role: str, model: str | None,
               backend: str | None, ok: bool, total_s: float, queue_wait_s: float | None,
               ttft_s: float | None, prompt_tokens: int, completion_tokens: int,
               tokens_per_s: float | None, finish_reason: str | None, attempts: int,
               fallbacks: list[dict[str, str]], error: str | None,
               requested_role: str) -> EventRow:
    """One call of `LLMClient.respond`; `role` served it, `requested_role` was asked."""
    return _row(EventName.MODEL_CALL, trace_id, parent,
                {"model": model, "backend": backend, "queue_wait_s": queue_wait_s,
                 "ttft_s": ttft_s, "prompt_tokens": prompt_tokens,
                 "completion_tokens": completion_tokens, "tokens_per_s": tokens_per_s,
                 "finish_reason": finish_reason, "attempts": attempts,
                 "retries": max(0, attempts - 1), "fallbacks": fallbacks, "error": error,
                 "requested_role": requested_role},
                role=role, duration_ms=total_s * 1000, ok=ok)


def tool_call(trace_id: str, parent: str | None, *, tool: str, ok: bool, elapsed_ms: float,
              error: str | None, direct: bool) -> EventRow:
    """A tool run; `direct` when it answered the request with no model (tool-only path)."""
    return _row(EventName.TOOL_CALL, trace_id, parent,
                {"tool": tool, "error": error, "direct": direct},
                duration_ms=elapsed_ms, ok=ok)


def validation_verdict(trace_id: str, parent: str | None, *, role: str | None, route: str | None,
                       passed: bool, attempt: int, failures: list[str], detail: str,
                       elapsed_ms: float) -> EventRow:
    """Stage 3's verdict on one answer (attempt 2 is the corrective retry)."""
    return _row(EventName.VALIDATION_VERDICT, trace_id, parent,
                {"attempt": attempt, "failures": failures, "detail": detail},
                role=role, route=route, duration_ms=elapsed_ms, ok=passed)


Readings = dict[str, float | None]


def mode_change(*, old: str, new: str, reason: str, manual: bool = False,
                readings: Readings | None = None, trace_id: str | None = None) -> EventRow:
    """The governance mode changed (not tied to a request unless `trace_id` is given);
    `readings` are the sensor values that caused it, `manual` when a person set it."""
    return _row(EventName.MODE_CHANGE, trace_id or new_trace_id(), None,
                {"from": old, "to": new, "reason": reason, "manual": manual,
                 "readings": readings or {}})


def mode_override(*, action: str, mode: str, target: str | None,
                  reason: str | None) -> EventRow:
    """A manual override was set (`target`, `reason`) or cleared; `mode` is the mode then."""
    if action not in ("set", "cleared"):
        raise ValueError(f"mode override action '{action}' is not allowed; use set or cleared")
    return _row(EventName.MODE_OVERRIDE, new_trace_id(), None,
                {"action": action, "mode": mode, "target": target, "reason": reason})


def mode_blocked(*, mode: str, wanted: str, reason: str, readings: Readings) -> EventRow:
    """The sensors want another mode but no allowed edge leads there (yet)."""
    return _row(EventName.MODE_BLOCKED, new_trace_id(), None,
                {"mode": mode, "wanted": wanted, "reason": reason, "readings": readings},
                ok=False)


def governance_rule(*, rule: str, change: str, sensor: str, value: float | None, cause: str,
                    mode: str, readings: Readings) -> EventRow:
    """A homeostasis rule `triggered` (its threshold held for its duration) or `cleared`."""
    if change not in ("triggered", "cleared"):
        raise ValueError(f"rule change '{change}' is not allowed; use triggered or cleared")
    return _row(EventName.GOVERNANCE_RULE, new_trace_id(), None,
                {"rule": rule, "change": change, "sensor": sensor, "value": value,
                 "cause": cause, "mode": mode, "readings": readings})


def governance_effector(*, effector: str, mode: str, cause: str, readings: Readings,
                        detail: dict[str, Any]) -> EventRow:
    """What a mode did to the running stack: `gates` narrowed or restored, `roles` allowed and
    capped, `refusal` limits in force; `detail` holds the effector's own figures."""
    return _row(EventName.GOVERNANCE_EFFECTOR, new_trace_id(), None,
                {**detail, "effector": effector, "mode": mode, "cause": cause,
                 "readings": readings})


def governance_refusal(*, mode: str, reason: str, role: str | None, prompt_tokens: int | None,
                       readings: Readings, trace_id: str | None = None) -> EventRow:
    """A new request the mode did not admit (heavy role, prompt over the mode's limit)."""
    return _row(EventName.GOVERNANCE_REFUSAL, trace_id or new_trace_id(), None,
                {"mode": mode, "reason": reason, "prompt_tokens": prompt_tokens,
                 "readings": readings}, role=role, ok=False)


def residency_load(*, instance: str, model: str, cause: str, ok: bool, seconds: float | None,
                   error: str | None, evicted: list[str], adopted: bool,
                   footprint_bytes: int) -> EventRow:
    """A model load by the residency manager: `cause` request, restart (its server had died)
    or preload; `evicted` the instances unloaded to make room; `adopted` when the server
    already held it (no load happened, `seconds` is null)."""
    return _row(EventName.RESIDENCY_LOAD, new_trace_id(), None,
                {"instance": instance, "model": model, "cause": cause, "error": error,
                 "evicted": evicted, "adopted": adopted, "footprint_bytes": footprint_bytes},
                role=instance, duration_ms=None if seconds is None else seconds * 1000, ok=ok)


def residency_eviction(*, instance: str, model: str, cause: str, ok: bool, error: str | None,
                       for_instance: str | None, idle_s: float | None,
                       expected_cost_s: float | None, footprint_bytes: int) -> EventRow:
    """A model unloaded: `cause` memory (for `for_instance`), idle_ttl, manual, or died (its
    managed server exited behind localroute's back); `expected_cost_s` the load time evicting
    it was expected to cost (load time x probability of being needed again)."""
    return _row(EventName.RESIDENCY_EVICTION, new_trace_id(), None,
                {"instance": instance, "model": model, "cause": cause, "error": error,
                 "for_instance": for_instance, "idle_s": idle_s,
                 "expected_cost_s": expected_cost_s, "footprint_bytes": footprint_bytes},
                role=instance, ok=ok)


def request_outcome(trace_id: str, span_id: str, *, state: str, success: bool, mode: str,
                    route: str | None, role: str | None, selected_role: str | None,
                    static_role: str | None,
                    task_type: str | None, decided_by: str | None, validation: str,
                    llm_calls: int, tools_used: list[str], fallbacks: int, error: str | None,
                    total_ms: float, timings_ms: dict[str, float], query: str | None,
                    channel: str | None, answer: str | None = None) -> EventRow:
    """How a request ended; its span is the root of the trace's tree; `answer` the reply's
    text (cut, like the query; the dashboard's request view shows it)."""
    return _row(EventName.REQUEST_OUTCOME, trace_id, None,
                {"state": state, "mode": mode, "selected_role": selected_role,
                 "static_role": static_role,
                 "task_type": task_type, "decided_by": decided_by, "validation": validation,
                 "llm_calls": llm_calls, "tools_used": tools_used, "fallbacks": fallbacks,
                 "error": error, "timings_ms": timings_ms, "query": query, "channel": channel,
                 "answer": answer},
                span_id=span_id, role=role, route=route, duration_ms=total_ms, ok=success)


def feedback(trace_id: str, *, verdict: str, note: str | None) -> EventRow:
    """A person's verdict on a request's answer (`good` or `bad`)."""
    if verdict not in ("good", "bad"):
        raise ValueError(f"feedback verdict '{verdict}' is not allowed; use good or bad")
    return _row(EventName.FEEDBACK, trace_id, None, {"verdict": verdict, "note": note},
                ok=verdict == "good")


def benchmark_result(*, role: str, task_type: str, success: bool, latency_ms: float,
                     benchmark: str, item: str | None = None) -> EventRow:
    """One graded benchmark item: a success signal for the routing policy."""
    return _row(EventName.BENCHMARK_RESULT, new_trace_id(), None,
                {"task_type": task_type, "benchmark": benchmark, "item": item},
                role=role, duration_ms=latency_ms, ok=success)
