"""The figures of a time window and the same figures per slice of it, for the charts.

Both come from `telemetry.stats.stats_of_rows`, the function behind `localroute stats`: the
headline figures of a window are exactly what `stats --last` prints for it, and each point of a
chart is that function applied to the rows of one slice. The rows are read once per window.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from localroute.telemetry.stats import STATS_EVENTS, stats_of_rows
from localroute.telemetry.store import EventStore

# The windows the page offers: seconds, and the slice each chart point covers.
WINDOWS: dict[str, tuple[float, float]] = {
    "hour": (3600.0, 60.0),
    "day": (86400.0, 1800.0),
    "week": (7 * 86400.0, 7200.0),
}


def window_seconds(name: str) -> tuple[float, float]:
    try:
        return WINDOWS[name]
    except KeyError:
        raise ValueError(f"window '{name}' is not offered; use one of: "
                         + ", ".join(WINDOWS)) from None


def _p(group: dict[str, Any] | None, key: str) -> float | None:
    return None if not group else group.get(key)


def overview(store: EventStore, window: str, now: float | None = None) -> dict[str, Any]:
    """The `stats` figures of the window, and per slice: routes, decided_by, escalation rate,
    roles that answered, p50/p95 per role, time to first token, tokens/s, validation failures
    and retries, feedback."""
    span, step = window_seconds(window)
    now = now if now is not None else time.time()
    since = now - span
    rows = store.select(names=STATS_EVENTS, since=since)
    slices: dict[int, list[dict[str, Any]]] = defaultdict(list)
    count = int(span // step)
    for row in rows:
        slices[min(count - 1, int((row["ts"] - since) // step))].append(row)
    series: dict[str, Any] = {"t": [], "requests": [], "routes": defaultdict(list),
                              "decided_by": defaultdict(list), "roles": defaultdict(list),
                              "escalation_rate": [], "p50_ms": defaultdict(list),
                              "p95_ms": defaultdict(list), "ttft_ms": defaultdict(list),
                              "tokens_per_s": defaultdict(list), "validation_failed": [],
                              "retries": [], "feedback_good": [], "feedback_bad": []}
    keys = _keys(rows)
    for i in range(count):
        part = slices.get(i, [])
        end = since + (i + 1) * step
        figures = stats_of_rows(part, step, end)
        series["t"].append(round(since + i * step + step / 2, 3))
        series["requests"].append(figures["requests"])
        for route in keys["routes"]:
            series["routes"][route].append(figures["routes"].get(route, 0))
        for who in keys["decided_by"]:
            series["decided_by"][who].append(figures["decided_by"].get(who, 0))
        series["escalation_rate"].append(figures["router_model_escalation_rate"])
        calls = figures["model_calls"]
        by_role = figures["latency_ms"]["by_role"]
        for role in keys["roles"]:
            mine = calls.get(role, {})
            series["roles"][role].append(mine.get("calls", 0) - mine.get("failures", 0))
            series["p50_ms"][role].append(_p(by_role.get(role), "p50"))
            series["p95_ms"][role].append(_p(by_role.get(role), "p95"))
            ttft = _p(mine.get("ttft_s"), "p50")
            series["ttft_ms"][role].append(None if ttft is None else round(ttft * 1000, 1))
            series["tokens_per_s"][role].append(_p(mine.get("tokens_per_s"), "p50"))
        validation = figures["validation"]
        failed = validation["failure_rate"]
        series["validation_failed"].append(
            0 if failed is None else round(failed * validation["verdicts"]))
        series["retries"].append(sum(c.get("retries", 0) for c in calls.values()))
        series["feedback_good"].append(figures["feedback"].get("good", 0))
        series["feedback_bad"].append(figures["feedback"].get("bad", 0))
    return {"window": window, "seconds": span, "step_s": step,
            "stats": stats_of_rows(rows, span, now), "series": series}


def _keys(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every route, decider and answering role of the window: each gets a series (with zeros
    where a slice has none), so the stacked charts keep one colour per name."""
    routes: set[str] = set()
    deciders: set[str] = set()
    roles: set[str] = set()
    for r in rows:
        if r["event"] == "request.outcome":
            routes.add(str(r["route"]))
        elif r["event"] == "routing.decision":
            deciders.add(str(r["data"]["decided_by"]))
        elif r["event"] == "model.call" and r["role"]:
            roles.add(str(r["role"]))
    return {"routes": sorted(routes), "decided_by": sorted(deciders), "roles": sorted(roles)}
