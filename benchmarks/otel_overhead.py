"""What OpenTelemetry export adds to a request.

N tool-only requests ("what time is it?": no model, so the orchestrator's own work dominates and
the added share is the largest it can be) through two orchestrators with the event store off, one
exporting every request as a trace to an OTLP/HTTP receiver on loopback (tests/support/otlp.py)
and one not, interleaved; prints p50/p99 of each, the added time, and the spans the receiver got.
Then M events: what queueing one costs the request, and what making its span costs the thread
that drains the queue.

    python benchmarks/otel_overhead.py [N] [M]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.config.telemetry import CacheSettings, OtelSettings, StoreSettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.machine import Orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.routing.classifier import RouteClassifier
from localroute.telemetry import events as ev
from localroute.telemetry.otel import shared_exporter
from tests.conftest import make_profile, server_role
from tests.support.otlp import OtlpReceiver

QUERY = "what time is it?"


async def _once(orch: Orchestrator) -> float:
    ctx = ExecutionContext(messages=[{"role": "user", "content": QUERY}])
    started = time.perf_counter()
    await orch.run(ctx)
    return (time.perf_counter() - started) * 1000


async def overhead(n: int, receiver: OtlpReceiver) -> StoreSettings:
    profile = make_profile({"router": server_role("http://127.0.0.1:9/v1")})
    classifier = RouteClassifier.load()
    no_cache = CacheSettings(enabled=False)  # each request pays for the classifier alike
    off = build_orchestrator(profile, classifier=classifier, telemetry_config=TelemetryConfig(
        telemetry=StoreSettings(enabled=False), routing_cache=no_cache))
    exporting = StoreSettings(enabled=False, otel=OtelSettings(endpoint=receiver.endpoint))
    on = build_orchestrator(profile, classifier=classifier, telemetry_config=TelemetryConfig(
        telemetry=exporting, routing_cache=no_cache))
    for _ in range(20):
        await _once(off)
        await _once(on)
    with_o: list[float] = []
    without: list[float] = []
    for _ in range(n):
        without.append(await _once(off))
        with_o.append(await _once(on))
    exporter = shared_exporter(exporting)
    assert exporter is not None
    exporter.flush()
    a, b = np.percentile(with_o, [50, 99]), np.percentile(without, [50, 99])
    print(f"requests: {n} each, tool-only ('{QUERY}'), event store off in both")
    print(f"export off: p50 {b[0]:.3f} ms  p99 {b[1]:.3f} ms")
    print(f"export on:  p50 {a[0]:.3f} ms  p99 {a[1]:.3f} ms")
    print(f"added p50: {a[0] - b[0]:+.3f} ms ({(a[0] / b[0] - 1) * 100:+.1f}%)")
    traces = {s.trace_id for s in receiver.spans}
    print(f"received: {len(receiver.spans)} spans in {len(traces)} traces "
          f"({receiver.requests} OTLP requests)")
    return exporting


def per_span(m: int, exporting: StoreSettings) -> None:
    exporter = shared_exporter(exporting)
    assert exporter is not None
    trace, root = ev.new_trace_id(), ev.new_span_id()
    rows = [ev.tool_call(trace, root, tool="time", ok=True, elapsed_ms=0.1, error=None,
                         direct=True) for _ in range(m)]
    started = time.perf_counter()
    for row in rows:
        exporter.put(row)  # what the recorder does on the request path
    queued = time.perf_counter() - started
    exporter.flush()
    started = time.perf_counter()
    for row in rows:
        exporter.export(row)  # what the drain thread does for each
    made = time.perf_counter() - started
    exporter.flush()
    print(f"per event on the request path: {queued / m * 1e6:.2f} us; per span made by the "
          f"drain thread: {made / m * 1e6:.1f} us ({m} events)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 2000  # within the BSP queue (2048)
    receiver = OtlpReceiver()
    try:
        exporting = asyncio.run(overhead(n, receiver))
        per_span(m, exporting)
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
