"""What the residency manager shows: one row per instance, for `localroute models`, `localroute
status --json`, the server's runtime snapshot and its metrics. Times are seconds since the epoch
(the scheduler counts on a monotonic clock; they are converted here).

Without a running server (no live snapshot) the rows say what the configuration and the servers'
own listings know: residency, footprint, and loaded or not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from localroute.config.schema import ResolvedProfile
from localroute.residency.scheduler import Instance, State

if TYPE_CHECKING:
    from localroute.residency.manager import Residency

STATE_CODES = {State.stopped: 0, State.starting: 1, State.ready: 2, State.stopping: 3,
               State.failed: 4}


def _epoch(t: float | None, now_mono: float, now_wall: float) -> float | None:
    return None if t is None else round(now_wall - (now_mono - t), 3)


def _row(manager: Residency, inst: Instance, now: float, wall: float) -> dict[str, Any]:
    role = manager.owners[inst.name]
    sched = manager.scheduler
    ttl = inst.spec.idle_ttl
    idle_from = inst.last_used if inst.last_used is not None else inst.resident_since
    expires = (idle_from + ttl if ttl is not None and not inst.spec.pinned
               and inst.state == State.ready and idle_from is not None else None)
    wait_sum, wait_n = manager.wait_s.get(inst.name, (0.0, 0))
    times = list(inst.load_times)
    control = manager.controls[inst.name]
    return {
        "instance": inst.name,
        "roles": [r.name for r in manager.profile.roles.values() if r.instance == inst.name],
        "model": inst.spec.model,
        "backend": role.backend.value,
        "managed": role.managed,
        "residency": role.residency.value,
        "state": inst.state.value,
        "draining": inst.draining,
        "footprint_bytes": inst.spec.footprint,
        "resident_since": _epoch(inst.resident_since, now, wall),
        "last_used": _epoch(inst.last_used, now, wall),
        "idle_ttl_s": ttl,
        # Counts from the last completed call and only while nothing is in flight.
        "ttl_expires_at": _epoch(expires, now, wall) if inst.in_flight == 0 else None,
        "in_flight": inst.in_flight,
        "queued": sched.queued(inst.name),
        "loads": inst.loads,
        "evictions": inst.evictions,
        "last_load_s": round(times[-1], 3) if times else None,
        "mean_load_s": round(sum(times) / len(times), 3) if times else None,
        "expected_wait_s": round(sched.expected_wait(inst.name, now), 3),
        "mean_queue_wait_s": round(wait_sum / wait_n, 3) if wait_n else None,
        "pid": getattr(control, "pid", None),
        "url": getattr(control, "url", role.endpoint),
        "error": inst.error,
    }


def snapshot(manager: Residency) -> dict[str, Any]:
    """The live view of a manager: budget, memory held, one row per instance, recent events."""
    now, wall = manager.clock(), time.time()
    sched = manager.scheduler
    return {
        "profile": manager.profile.name,
        "budget_bytes": sched.budget,
        "pinned_bytes": sched.pinned_bytes,
        "on_demand_held_bytes": sched.held(),
        "instances": [_row(manager, i, now, wall) for i in sched.instances.values()],
        "events": [{"kind": e.kind, "instance": e.instance, "cause": e.cause, "ok": e.ok,
                    "seconds": e.seconds, "for": e.for_instance, "at": e.at}
                   for e in manager.events[-20:]],
    }


def offline_rows(profile: ResolvedProfile, footprints: dict[str, int],
                 loaded: dict[str, bool | None]) -> list[dict[str, Any]]:
    """Rows without a running server: what the configuration and the servers' listings say
    (`loaded` maps an instance to its server's answer; a managed server is not running)."""
    rows = []
    for role in profile.roles.values():
        if role.instance != role.name:
            continue
        state = {True: "ready", False: "stopped", None: "unknown"}[loaded.get(role.name)]
        rows.append({
            "instance": role.name,
            "roles": [r.name for r in profile.roles.values() if r.instance == role.name],
            "model": role.id, "backend": role.backend.value, "managed": role.managed,
            "residency": role.residency.value,
            "state": "stopped" if role.managed else state,
            "footprint_bytes": footprints.get(role.name), "idle_ttl_s": role.idle_ttl,
            "resident_since": None, "last_used": None, "ttl_expires_at": None,
            "in_flight": None, "queued": None, "loads": None, "evictions": None,
            "last_load_s": None, "mean_load_s": None,
        })
    return rows


class ResidencyCollector(Collector):
    """Prometheus metrics of a manager, read at scrape time: loads, evictions by cause, load
    seconds, queue wait per model, and each instance's state."""

    def __init__(self, manager: Residency) -> None:
        self.manager = manager

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | SummaryMetricFamily]:
        m = self.manager
        labels = ["instance", "model"]
        loads = CounterMetricFamily("localroute_model_loads", "Model loads by localroute",
                                    labels=labels)
        load_s = SummaryMetricFamily("localroute_model_load_seconds",
                                     "Seconds each model load took", labels=labels)
        waits = SummaryMetricFamily("localroute_model_queue_wait_seconds",
                                    "Seconds requests waited for their model (loads, memory)",
                                    labels=labels)
        state = GaugeMetricFamily("localroute_model_state", "0 stopped, 1 starting, 2 ready, "
                                  "3 stopping, 4 failed", labels=labels)
        evictions = CounterMetricFamily("localroute_model_evictions",
                                        "Models unloaded, by cause", labels=[*labels, "cause"])
        for inst in m.scheduler.instances.values():
            key = [inst.name, inst.spec.model]
            loads.add_metric(key, inst.loads)
            total, count = m.load_s.get(inst.name, (0.0, 0))
            load_s.add_metric(key, count, total)
            total, count = m.wait_s.get(inst.name, (0.0, 0))
            waits.add_metric(key, count, total)
            state.add_metric(key, STATE_CODES[inst.state])
        for (instance, model, cause), n in sorted(m.eviction_counts.items()):
            evictions.add_metric([instance, model, cause], n)
        yield from (loads, load_s, waits, state, evictions)
