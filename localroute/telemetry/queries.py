"""Reading the store for people: filtered event lists, one request as a tree, feedback."""

from __future__ import annotations

import re
import time
from typing import Any

import sqlalchemy as sa

from localroute.config.telemetry import TelemetryConfig, load_telemetry_config
from localroute.telemetry import events as ev
from localroute.telemetry.events import EVENT_NAMES, EventName
from localroute.telemetry.store import EventStore, events

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, option: str = "--last") -> float:
    """Seconds in '90s', '15m', '1h', '7d', '2w'. (Five units: a regex is clearer than a
    dependency.)"""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{option}: '{text}' is not a duration; use a number and a unit, "
                         "e.g. 90s, 15m, 1h, 24h, 7d, 2w")
    return float(match.group(1)) * _UNIT_S[match.group(2).lower()]


def open_store(config: TelemetryConfig | None = None) -> EventStore:
    return EventStore((config or load_telemetry_config()).telemetry.resolved_url())


def query_events(store: EventStore, *, event: str | None = None, last: str | None = None,
                 role: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest events first, filtered by name, age and role."""
    if event is not None and event not in EVENT_NAMES:
        raise ValueError(f"--event: unknown event '{event}'; known events: "
                         + ", ".join(EVENT_NAMES))
    since = time.time() - parse_duration(last) if last else None
    return store.select(names=[event] if event else None, since=since, role=role, limit=limit,
                        newest_first=True)


def resolve_trace(store: EventStore, trace_id: str) -> str:
    """The full trace id for an id or a unique prefix of one (at least 6 characters)."""
    wanted = trace_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{6,32}", wanted):
        raise ValueError(f"trace id '{trace_id}' is not valid; give the 32 hex characters from "
                         "`ask --json` (or a unique prefix of at least 6)")
    with store.engine.connect() as conn:
        found = list(conn.execute(sa.select(events.c.trace_id).distinct()
                                  .where(events.c.trace_id.like(wanted + "%")).limit(2))
                     .scalars())
    if not found:
        raise ValueError(f"trace '{trace_id}' is not in the telemetry store {store.safe_url}; "
                         "list recent ones with `localroute telemetry query --event "
                         "request.outcome`")
    if len(found) > 1:
        raise ValueError(f"trace prefix '{trace_id}' matches more than one trace; give more "
                         "characters")
    return str(found[0])


def trace_tree(store: EventStore, trace_id: str) -> dict[str, Any]:
    """The request as a tree: the outcome at the root, its transitions below it, and what
    happened inside each transition below that. Offsets are ms since the first event."""
    full = resolve_trace(store, trace_id)
    rows = store.select(trace_id=full)
    start = min(r["ts"] for r in rows)
    nodes = {r["span_id"]: {**_node(r, start), "children": []} for r in rows}
    roots: list[dict[str, Any]] = []
    for r in rows:
        parent = nodes.get(r["parent_span_id"]) if r["parent_span_id"] else None
        (parent["children"] if parent is not None else roots).append(nodes[r["span_id"]])
    outcome = next((n for n in roots if n["event"] == EventName.REQUEST_OUTCOME), None)
    if outcome is not None:
        # Events with no parent (feedback, calls outside a step) hang under the request.
        outcome["children"] = [*outcome["children"], *(n for n in roots if n is not outcome)]
        for child in outcome["children"]:
            child["children"].sort(key=lambda n: n["offset_ms"])
        outcome["children"].sort(key=lambda n: n["offset_ms"])
        outcome["offset_ms"] = 0.0  # written last, it spans the whole request
        return {"trace_id": full, "root": outcome}
    return {"trace_id": full, "root": {"event": "request (not finished)", "offset_ms": 0.0,
                                       "duration_ms": None, "ok": None, "summary": "",
                                       "data": {}, "children": roots}}


def _node(row: dict[str, Any], start: float) -> dict[str, Any]:
    return {"event": row["event"], "offset_ms": round((row["ts"] - start) * 1000, 3),
            "duration_ms": row["duration_ms"], "ok": row["ok"], "role": row["role"],
            "route": row["route"], "summary": summarise(row), "data": row["data"]}


def summarise(row: dict[str, Any]) -> str:
    """One line a person can read for an event."""
    d, name = row["data"], row["event"]
    if name == EventName.STATE_TRANSITION:
        return f"{d['state']} -> {d['next_state']}: {d['detail']}"
    if name == EventName.ROUTING_DECISION:
        return (f"route {row['route']} by {d['decided_by']} ({d['confidence']:.2f})"
                + (f", tool {d['tool']}" if d.get("tool") else ""))
    if name == EventName.ROLE_SELECTION:
        return f"role {row['role']} ({d['decided_by']}, {d['task_type']}): {d['reason']}"
    if name == EventName.MODEL_CALL:
        if not row["ok"]:
            return f"{row['role']} failed: {d['error']}"
        return (f"{row['role']} ({d['model']} on {d['backend']}) {d['completion_tokens']} "
                f"tokens, finish {d['finish_reason']}, attempts {d['attempts']}"
                + (f", fallbacks {len(d['fallbacks'])}" if d["fallbacks"] else ""))
    if name == EventName.TOOL_CALL:
        return f"{d['tool']} {'ok' if row['ok'] else 'failed: ' + str(d['error'])}" + (
            " (direct)" if d["direct"] else "")
    if name == EventName.VALIDATION_VERDICT:
        return (f"attempt {d['attempt']} " + ("passed" if row["ok"] else
                                              "failed: " + "; ".join(d["failures"])))
    if name == EventName.REQUEST_OUTCOME:
        return (f"{d['state']} route {row['route']} role {row['role'] or 'none (tool)'} "
                f"validation {d['validation']}" + (f" error: {d['error']}" if d["error"] else ""))
    if name == EventName.FEEDBACK:
        return f"feedback {d['verdict']}" + (f": {d['note']}" if d.get("note") else "")
    if name == EventName.MODE_CHANGE:
        return (f"mode {d['from']} -> {d['to']}" + (" (manual)" if d.get("manual") else "")
                + f": {d['reason']}")
    if name == EventName.MODE_OVERRIDE:
        if d["action"] == "cleared":
            return f"manual override cleared (mode {d['mode']})"
        return f"manual override {d['target']}: {d['reason']}"
    if name == EventName.MODE_BLOCKED:
        return f"mode {d['mode']} wants {d['wanted']}: {d['reason']}"
    if name == EventName.GOVERNANCE_RULE:
        return f"rule {d['rule']} {d['change']}: {d['cause']}"
    if name == EventName.GOVERNANCE_EFFECTOR:
        return f"{d['effector']} effector for mode {d['mode']}" + (
            f": {d['cause']}" if d["cause"] else "")
    if name == EventName.GOVERNANCE_REFUSAL:
        return f"refused in mode {d['mode']}: {d['reason']}"
    if name == EventName.RESIDENCY_LOAD:
        took = "already loaded" if d["adopted"] else (
            f"{row['duration_ms'] / 1000:.1f} s" if row["duration_ms"] is not None else "")
        return (f"load {d['instance']} ({d['cause']}) "
                + (took if row["ok"] else f"failed: {d['error']}")
                + (f", after evicting {', '.join(d['evicted'])}" if d["evicted"] else ""))
    if name == EventName.RESIDENCY_EVICTION:
        return (f"evict {d['instance']} ({d['cause']}"
                + (f" for {d['for_instance']}" if d.get("for_instance") else "") + ")"
                + (f": {d['error']}" if d.get("error") else ""))
    return ", ".join(f"{k}={v}" for k, v in d.items())


def record_feedback(store: EventStore, trace_id: str, verdict: str,
                    note: str | None = None) -> str:
    """Store a person's verdict with a recorded request; returns the full trace id."""
    if verdict not in ("good", "bad"):
        raise ValueError(f"feedback: verdict '{verdict}' is not allowed; use good or bad")
    full = resolve_trace(store, trace_id)
    if not store.select(trace_id=full, names=[EventName.REQUEST_OUTCOME], limit=1):
        raise ValueError(f"trace '{full}' has no finished request to give feedback on")
    store.insert([ev.feedback(full, verdict=verdict, note=note)])
    return full
