"""The panels that read few events: now (mode, memory, gates, last requests), the residency
timeline, and one request's trace. Each reads the store through indexed selects only."""

from __future__ import annotations

import time
from typing import Any

from localroute.telemetry.events import EventName
from localroute.telemetry.queries import summarise, trace_tree
from localroute.telemetry.store import EventStore

RECENT = 25
TIMELINE_EVENTS = 2000  # loads and evictions shown at most (a week of churn is far fewer)


def recent_requests(store: EventStore, limit: int = RECENT) -> list[dict[str, Any]]:
    """The newest finished requests, newest first (the `request.outcome` events)."""
    rows = store.select(names=[EventName.REQUEST_OUTCOME], limit=limit, newest_first=True)
    return [{"ts": r["ts"], "trace_id": r["trace_id"], "route": r["route"], "role": r["role"],
             "ok": r["ok"], "duration_ms": r["duration_ms"], "state": r["data"]["state"],
             "decided_by": r["data"]["decided_by"], "validation": r["data"]["validation"],
             "query": r["data"].get("query")} for r in rows]


def last_mode_change(store: EventStore) -> dict[str, Any] | None:
    """The last mode change with the sensor readings that caused it."""
    rows = store.select(names=[EventName.MODE_CHANGE], limit=1, newest_first=True)
    if not rows:
        return None
    d = rows[0]["data"]
    return {"ts": rows[0]["ts"], "from": d["from"], "to": d["to"], "reason": d["reason"],
            "manual": d.get("manual", False), "readings": d.get("readings", {})}


def now_panel(snapshot: dict[str, Any], store: EventStore | None) -> dict[str, Any]:
    """The governor's snapshot (mode, cause, sensors, gates, residency) with what the store
    adds: the readings behind the last mode change and the last requests."""
    residency = snapshot.get("residency") or {}
    return {
        "mode": snapshot.get("mode"), "since": snapshot.get("since"),
        "cause": snapshot.get("cause"), "override": snapshot.get("override"),
        "sensors": snapshot.get("sensors", {}),
        "rules": [r for r in snapshot.get("rules", []) if r.get("active")],
        "last_change": last_mode_change(store) if store is not None else None,
        "memory": {"budget_bytes": residency.get("budget_bytes"),
                   "pinned_bytes": residency.get("pinned_bytes"),
                   "on_demand_held_bytes": residency.get("on_demand_held_bytes"),
                   "instances": [{k: i.get(k) for k in (
                       "instance", "model", "residency", "state", "footprint_bytes", "managed",
                       "in_flight", "queued", "ttl_expires_at")}
                       for i in residency.get("instances", [])]},
        "gates": snapshot.get("gate_state", {}),
        "recent": recent_requests(store) if store is not None else
        [{**r, "query": None} for r in reversed(snapshot.get("recent_requests", []))],
    }


def residency_timeline(store: EventStore, seconds: float,
                       now: float | None = None) -> dict[str, Any]:
    """Which model was resident when: one bar per stay, from its load (minus the load time)
    to its eviction or now, and every load and eviction with its cause."""
    now = now if now is not None else time.time()
    rows = store.select(names=[EventName.RESIDENCY_LOAD, EventName.RESIDENCY_EVICTION],
                        since=now - seconds, limit=TIMELINE_EVENTS)
    stays: list[dict[str, Any]] = []
    open_stay: dict[str, dict[str, Any]] = {}
    marks: list[dict[str, Any]] = []
    for r in rows:
        d = r["data"]
        load = r["event"] == EventName.RESIDENCY_LOAD
        marks.append({"ts": r["ts"], "kind": "load" if load else "eviction",
                      "instance": d["instance"], "model": d["model"], "cause": d["cause"],
                      "ok": r["ok"], "summary": summarise(r)})
        if load and r["ok"]:
            took = (r["duration_ms"] or 0.0) / 1000
            open_stay[d["instance"]] = {"instance": d["instance"], "model": d["model"],
                                        "start": r["ts"] - took, "loaded": r["ts"],
                                        "end": None, "load_cause": d["cause"],
                                        "eviction_cause": None}
            stays.append(open_stay[d["instance"]])
        elif not load:
            stay = open_stay.pop(d["instance"], None)
            if stay is None:  # loaded before the window: the stay starts at its edge
                stay = {"instance": d["instance"], "model": d["model"],
                        "start": now - seconds, "loaded": None, "end": None,
                        "load_cause": None, "eviction_cause": None}
                stays.append(stay)
            stay["end"], stay["eviction_cause"] = r["ts"], d["cause"]
    return {"now": now, "since": now - seconds, "stays": stays, "marks": marks}


def request_view(store: EventStore, trace_id: str) -> dict[str, Any]:
    """One request as the page shows it: the tree `telemetry trace` prints, the states as a
    waterfall in order, the routing decision, tool calls, validation verdicts, feedback, the
    query and the answer."""
    tree = trace_tree(store, trace_id)
    flat: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        flat.append(node)
        for child in node["children"]:
            walk(child)

    walk(tree["root"])
    root = tree["root"]

    def only(name: str) -> list[dict[str, Any]]:
        return [{k: n.get(k) for k in ("offset_ms", "duration_ms", "ok", "role", "route",
                                       "summary", "data")} for n in flat if n["event"] == name]

    states = [{"state": n["data"]["state"], "next_state": n["data"]["next_state"],
               "offset_ms": n["data"].get("started_ms", n["offset_ms"]),
               "duration_ms": n["duration_ms"] or 0.0,
               "ok": n["ok"], "detail": n["data"].get("detail")}
              for n in flat if n["event"] == EventName.STATE_TRANSITION]
    states.sort(key=lambda s: s["offset_ms"])
    data = root.get("data") or {}
    return {"trace_id": tree["trace_id"], "outcome": {
                "event": root["event"], "ok": root.get("ok"), "route": root.get("route"),
                "role": root.get("role"), "duration_ms": root.get("duration_ms"),
                "summary": root.get("summary"), "state": data.get("state"),
                "validation": data.get("validation"), "error": data.get("error"),
                "mode": data.get("mode")},
            "query": data.get("query"), "answer": data.get("answer"),
            "states": states, "routing": only(EventName.ROUTING_DECISION),
            "role_selection": only(EventName.ROLE_SELECTION),
            "model_calls": only(EventName.MODEL_CALL), "tools": only(EventName.TOOL_CALL),
            "validation": only(EventName.VALIDATION_VERDICT),
            "feedback": only(EventName.FEEDBACK)}
