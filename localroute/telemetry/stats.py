"""`localroute stats`: the figures of a time window, including the ADR's success metrics.

Definitions (docs/telemetry.md repeats them):
- task success rate: completed requests whose answer was not flagged unvalidated, with a
  person's feedback overriding (bad -> failure, good -> success), over all requests.
- direct tool execution rate (tool-bypass rate): requests answered by a tool with no model.
- routing overhead: time in ROUTING_DECISION + MODEL_SELECTION per request, for requests that
  did not ask the router model (whose time is model time; those are reported separately).
- validation catch rate: of the answers known to be bad (validation failed at least once, or a
  person marked it bad), the share that validation caught.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from localroute.telemetry.events import EventName
from localroute.telemetry.store import EventStore

E = EventName
STATS_EVENTS = (E.REQUEST_OUTCOME, E.ROUTING_DECISION, E.ROLE_SELECTION, E.MODEL_CALL,
                E.VALIDATION_VERDICT, E.FEEDBACK, E.TOOL_CALL)


def percentiles(values: Iterable[float]) -> dict[str, float | int] | None:
    data = [v for v in values if v is not None]
    if not data:
        return None
    p50, p95, p99 = np.percentile(np.asarray(data, dtype=float), [50, 95, 99])
    return {"n": len(data), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3)}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute_stats(store: EventStore, window_s: float, now: float | None = None) -> dict[str, Any]:
    now = now if now is not None else time.time()
    return stats_of_rows(store.select(names=STATS_EVENTS, since=now - window_s), window_s, now)


def stats_of_rows(rows: list[dict[str, Any]], window_s: float, now: float) -> dict[str, Any]:
    """The figures of `rows` (STATS_EVENTS of the window ending at `now`, oldest first): what
    `compute_stats` reports, for callers that read the rows once and cut them up (the
    dashboard's charts over time)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by[row["event"]].append(row)
    verdict = {r["trace_id"]: r["data"]["verdict"] for r in by[E.FEEDBACK]}  # latest wins
    outcomes = by[E.REQUEST_OUTCOME]
    routing = by[E.ROUTING_DECISION]
    escalated = {r["trace_id"] for r in routing if r["data"]["escalated"]}
    successes = sum(1 for r in outcomes if _success(r, verdict))
    direct = sum(1 for r in outcomes if r["route"] == "tool" and not r["data"]["llm_calls"])
    overhead = [_routing_ms(r) for r in outcomes if r["trace_id"] not in escalated]
    with_model = [_routing_ms(r) for r in outcomes if r["trace_id"] in escalated]
    validation = _validation(by[E.VALIDATION_VERDICT], outcomes, verdict)
    cache_hits = sum(1 for r in routing if r["data"]["decided_by"] == "cache")
    return {
        "window": {"seconds": window_s, "since": now - window_s, "until": now},
        "requests": len(outcomes),
        "completed": sum(1 for r in outcomes if r["data"]["state"] == "COMPLETED"),
        "failed": sum(1 for r in outcomes if r["data"]["state"] == "FAILED"),
        "success_rate": _rate(successes, len(outcomes)),
        "adr": {
            "routing_overhead_ms": percentiles(overhead),
            "direct_tool_execution_rate": _rate(direct, len(outcomes)),
            "validation_catch_rate": validation.pop("catch_rate"),
            "task_success_rate": _rate(successes, len(outcomes)),
        },
        "routing_overhead_with_router_model_ms": percentiles(with_model),
        "tool_bypass_rate": _rate(direct, len(outcomes)),
        "router_model_escalation_rate": _rate(len(escalated), len(routing)),
        "decided_by": dict(Counter(r["data"]["decided_by"] for r in routing)),
        "routes": dict(Counter(r["route"] for r in outcomes)),
        "latency_ms": {
            "by_route": _grouped(outcomes, lambda r: r["route"] or "none"),
            "by_role": _grouped([r for r in by[E.MODEL_CALL] if r["ok"]], lambda r: r["role"]),
        },
        "model_calls": _model_calls(by[E.MODEL_CALL]),
        "tokens_by_role": _tokens(by[E.MODEL_CALL]),
        "validation": validation,
        "fallbacks": _fallbacks(by[E.MODEL_CALL]),
        "cache": {"hits": cache_hits, "lookups": len(routing),
                  "hit_rate": _rate(cache_hits, len(routing))},
        "policy": _policy(by[E.ROLE_SELECTION]),
        "tools": dict(Counter(r["data"]["tool"] for r in by[E.TOOL_CALL])),
        "feedback": dict(Counter(verdict.values())),
    }


def _success(row: dict[str, Any], verdict: dict[str, str]) -> bool:
    said = verdict.get(row["trace_id"])
    return bool(row["ok"]) if said is None else said == "good"


def _routing_ms(row: dict[str, Any]) -> float:
    timings = row["data"]["timings_ms"]
    return float(timings.get("ROUTING_DECISION", 0.0) + timings.get("MODEL_SELECTION", 0.0))


def _grouped(rows: list[dict[str, Any]], key: Any) -> dict[str, Any]:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r["duration_ms"])
    return {k: percentiles(v) for k, v in sorted(groups.items())}


def _validation(verdicts: list[dict[str, Any]], outcomes: list[dict[str, Any]],
                feedback: dict[str, str]) -> dict[str, Any]:
    failed = [v for v in verdicts if not v["ok"]]
    validated = {v["trace_id"] for v in verdicts}
    caught = {v["trace_id"] for v in failed}
    retried = {v["trace_id"] for v in verdicts if v["data"]["attempt"] > 1}
    missed = {t for t, said in feedback.items() if said == "bad" and t in validated} - caught
    known_bad = len(caught) + len(missed)
    flagged = sum(1 for r in outcomes if r["data"]["validation"] == "unvalidated")
    return {"verdicts": len(verdicts), "failure_rate": _rate(len(failed), len(verdicts)),
            "retry_rate": _rate(len(retried), len(validated)), "flagged_unvalidated": flagged,
            "catch_rate": _rate(len(caught), known_bad)}


def _model_calls(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["role"]].append(r)
    for role, calls in sorted(groups.items()):
        good = [c["data"] for c in calls if c["ok"]]
        out[role] = {
            "calls": len(calls), "failures": len(calls) - len(good),
            "retries": sum(c["data"]["retries"] for c in calls),
            "queue_wait_s": percentiles(d["queue_wait_s"] for d in good),
            "ttft_s": percentiles(d["ttft_s"] for d in good),
            "tokens_per_s": percentiles(d["tokens_per_s"] for d in good),
            "finish_reasons": dict(Counter(str(d["finish_reason"]) for d in good)),
        }
    return out


def _tokens(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"prompt": 0, "completion": 0})
    for r in rows:
        out[r["role"]]["prompt"] += r["data"]["prompt_tokens"]
        out[r["role"]]["completion"] += r["data"]["completion_tokens"]
    return dict(out)


def _fallbacks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = Counter(f"{f['from_role']}->{f['to_role']}" for r in rows
                    for f in r["data"]["fallbacks"])
    return {"total": sum(pairs.values()), "by_pair": dict(pairs)}


def _policy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    learned = [r for r in rows if r["data"]["decided_by"] == "policy"]
    departed = [r for r in learned if r["role"] != r["data"]["static_role"]]
    return {"selections": len(rows), "by_policy": len(learned), "departures": len(departed)}


def summary(store: EventStore, window_s: float = 86400.0) -> dict[str, Any]:
    """The short form the `telemetry` tool answers with."""
    full = compute_stats(store, window_s)
    if not full["requests"]:
        return {}
    return {
        "window_hours": round(window_s / 3600, 2),
        "requests": full["requests"],
        "failed": full["failed"],
        "task_success_rate": full["adr"]["task_success_rate"],
        "direct_tool_execution_rate": full["adr"]["direct_tool_execution_rate"],
        "routes": full["routes"],
        "latency_ms_p50_by_route": {k: v["p50"] for k, v in full["latency_ms"]["by_route"].items()
                                    if v},
        "fallbacks": full["fallbacks"]["total"],
        "validation_failure_rate": full["validation"]["failure_rate"],
        "cache_hit_rate": full["cache"]["hit_rate"],
    }
