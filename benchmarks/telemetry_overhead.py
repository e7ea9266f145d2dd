"""What telemetry adds to a request, and how fast the store takes events.

1. Overhead: N tool-only requests ("what time is it?": no model, so the orchestrator's own
   work dominates) through two orchestrators, one recording into a temporary SQLite store and
   one with telemetry off, interleaved; prints p50/p99 of each and the added share.
   Goal: < 5% added.
2. Sustained write rate: M events emitted as fast as possible into SQLite through the writer
   thread, then flushed; prints events per second end to end.

    python benchmarks/telemetry_overhead.py [N] [M]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.config.telemetry import CacheSettings, StoreSettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.machine import Orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.routing.classifier import RouteClassifier
from localroute.telemetry.emitter import Telemetry
from tests.conftest import make_profile, server_role

QUERY = "what time is it?"


async def _once(orch: Orchestrator) -> float:
    ctx = ExecutionContext(messages=[{"role": "user", "content": QUERY}])
    started = time.perf_counter()
    await orch.run(ctx)
    return (time.perf_counter() - started) * 1000


async def overhead(n: int, folder: Path) -> None:
    profile = make_profile({"router": server_role("http://127.0.0.1:9/v1")})
    classifier = RouteClassifier.load()
    on_settings = StoreSettings(url=f"sqlite:///{folder / 'bench.db'}")
    telemetry = Telemetry(on_settings)
    # The routing cache is off in both so each request pays for the classifier alike.
    off = build_orchestrator(profile, classifier=classifier, telemetry_config=TelemetryConfig(
        telemetry=StoreSettings(enabled=False), routing_cache=CacheSettings(enabled=False)))
    on = build_orchestrator(profile, classifier=classifier, telemetry=telemetry,
                            telemetry_config=TelemetryConfig(telemetry=on_settings,
                                                             routing_cache=CacheSettings(enabled=False)))
    for _ in range(20):
        await _once(off)
        await _once(on)
    with_t: list[float] = []
    without: list[float] = []
    for _ in range(n):
        without.append(await _once(off))
        with_t.append(await _once(on))
    telemetry.flush()
    a, b = np.percentile(with_t, [50, 99]), np.percentile(without, [50, 99])
    print(f"requests: {n} each, tool-only ('{QUERY}')")
    print(f"telemetry off: p50 {b[0]:.3f} ms  p99 {b[1]:.3f} ms")
    print(f"telemetry on:  p50 {a[0]:.3f} ms  p99 {a[1]:.3f} ms")
    print(f"added p50: {a[0] - b[0]:+.3f} ms ({(a[0] / b[0] - 1) * 100:+.1f}%)  goal < 5%")
    print(f"events stored: {telemetry.store.count()}")
    telemetry.close()


def write_rate(m: int, folder: Path) -> None:
    telemetry = Telemetry(StoreSettings(url=f"sqlite:///{folder / 'rate.db'}"))
    started = time.perf_counter()
    for i in range(m):
        telemetry.mode_change("NORMAL", "ALERT", f"bench {i}")
    emitted = time.perf_counter() - started
    telemetry.flush(timeout=600)
    total = time.perf_counter() - started
    assert telemetry.store.count() == m
    print(f"write rate: {m} events emitted in {emitted:.2f} s "
          f"({emitted / m * 1e6:.1f} us each on the caller), stored in {total:.2f} s = "
          f"{m / total:,.0f} events/s sustained into SQLite (WAL)")
    telemetry.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(overhead(n, Path(tmp)))
        write_rate(m, Path(tmp))


if __name__ == "__main__":
    main()
