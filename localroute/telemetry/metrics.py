"""Prometheus metrics of the server: what was asked, how it was routed, how long it took.

One registry per server instance (not prometheus_client's global one), so several apps in one
process -- tests, benchmarks -- never share or collide on counters. Gate gauges are read from
the client's gates at scrape time, so they can never be stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Request latency spans tool-only answers (~1 ms) to reasoning runs of a minute or more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)

GateSnapshot = Callable[[], dict[str, dict[str, int]]]


class _GateCollector(Collector):
    def __init__(self, snapshot: GateSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gates = self._snapshot()
        families = {
            "in_flight": GaugeMetricFamily("localroute_gate_in_flight",
                                           "Model calls holding a slot of the gate",
                                           labels=["gate"]),
            "waiting": GaugeMetricFamily("localroute_gate_queue_depth",
                                         "Model calls waiting for a slot of the gate",
                                         labels=["gate"]),
            "capacity": GaugeMetricFamily("localroute_gate_capacity",
                                          "Slots of the gate (max_concurrency)", labels=["gate"]),
        }
        for name, values in sorted(gates.items()):
            for key, family in families.items():
                family.add_metric([name], float(values.get(key, 0)))
        yield from families.values()


class ServerMetrics:
    """The server's metric definitions and their text rendering."""

    def __init__(self, gates: GateSnapshot) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("localroute_requests", "Chat completion requests answered",
                                ["route", "role", "status"], registry=r)
        self.latency = Histogram("localroute_request_latency_seconds",
                                 "Time to answer a chat completion request",
                                 ["route", "role"], buckets=LATENCY_BUCKETS, registry=r)
        self.bypass = Counter("localroute_tool_only",
                              "Requests answered by a tool without any model (bypass)",
                              registry=r)
        self.escalations = Counter("localroute_router_escalations",
                                   "Requests whose route was asked of the router model",
                                   registry=r)
        self.validation_failures = Counter("localroute_validation_failures",
                                           "Answers that failed a validation round", registry=r)
        self.rejections = Counter("localroute_rejections",
                                  "Requests refused before any model call", ["reason"], registry=r)
        r.register(_GateCollector(gates))

    def observe(self, route: str, role: str, status: int, seconds: float) -> None:
        self.requests.labels(route, role, str(status)).inc()
        self.latency.labels(route, role).observe(seconds)

    def record_pipeline(self, *, bypass: bool, escalated: bool, failed_rounds: int) -> None:
        if bypass:
            self.bypass.inc()
        if escalated:
            self.escalations.inc()
        if failed_rounds:
            self.validation_failures.inc(failed_rounds)

    def reject(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
