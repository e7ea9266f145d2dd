"""How fast the dashboard's data endpoints answer with 100,000 events in the telemetry store.

Fills a temporary SQLite store with N events (default 100,000: requests of every route with
their routing decision, role selection, model call and validation verdict, some feedback, mode
changes, loads and evictions, spread over the last six days), starts a real `localroute serve`
on it (its one role points at a closed port: no model is needed), and times each endpoint the
page polls over HTTP, R times each after the first call. Prints the first call (which computes a
window's figures) and p50/max of the rest. Goal: < 100 ms per poll.

    python benchmarks/dashboard_queries.py [N] [R]
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.telemetry import events as ev
from localroute.telemetry.events import EventRow
from localroute.telemetry.store import EventStore
from tests.support.servers import free_port, wait_for_http

ROUTES = [("tool", None), ("router", "router"), ("reasoning", "reasoning"), ("coding", "coding")]
DECIDERS = ["rules", "classifier", "router_model", "cache"]


def request_events(now: float) -> list[EventRow]:
    """One request's events (5, or 4 for a tool answer with its tool call)."""
    trace, root = ev.new_trace_id(), ev.new_span_id()
    route, role = random.choice(ROUTES)
    decided = "rules" if route == "tool" else random.choice(DECIDERS)
    rows = [ev.routing_decision(trace, root, route=route, decided_by=decided, confidence=0.9,
                                latency_ms=1.2, escalated=decided == "router_model",
                                escalation_error=None, tool="disk_usage" if role is None else None,
                                reason="bench")]
    if role is None:
        rows.append(ev.tool_call(trace, root, tool="disk_usage", ok=True, elapsed_ms=4.0,
                                 error=None, direct=True))
    else:
        rows.append(ev.role_selection(trace, root, route=route, role=role, static_role=role,
                                      task_type=route, decided_by="rules", reason="bench",
                                      downgraded_from=None, reasoning_depth=1,
                                      context_tokens=120))
        rows.append(ev.model_call(trace, root, role=role, model="m", backend="llamacpp",
                                  ok=True, total_s=random.uniform(0.2, 3), queue_wait_s=0.01,
                                  ttft_s=0.1, prompt_tokens=120, completion_tokens=80,
                                  tokens_per_s=random.uniform(20, 60), finish_reason="stop",
                                  attempts=1, fallbacks=[], error=None, requested_role=role))
        if route != "router":
            rows.append(ev.validation_verdict(trace, root, role=role, route=route,
                                              passed=random.random() > 0.1, attempt=1,
                                              failures=[], detail="", elapsed_ms=2.0))
    rows.append(ev.request_outcome(
        trace, root, state="COMPLETED", success=True, mode="NORMAL", route=route, role=role,
        selected_role=role, static_role=role, task_type=route, decided_by=decided,
        validation="passed", llm_calls=0 if role is None else 1,
        tools_used=[] if role else ["disk_usage"], fallbacks=0, error=None,
        total_ms=random.uniform(5, 3000), timings_ms={"ROUTING_DECISION": 1.0},
        query="how much disk space is free on this machine right now?", channel=None,
        answer="Disk at /: 76.5 GiB free of 252.0 GiB."))
    ts = now - random.uniform(0, 6 * 86400)
    for r in rows:
        r["ts"] = ts
    return rows


def fill(store: EventStore, total: int) -> None:
    now = time.time()
    batch: list[EventRow] = []
    written = 0
    while written < total:
        rows = request_events(now)
        if random.random() < 0.02:
            rows.append(ev.feedback(rows[-1]["trace_id"], verdict=random.choice(["good", "bad"]),
                                    note=None))
        if random.random() < 0.005:
            rows.append(ev.residency_load(instance="coding", model="m", cause="request", ok=True,
                                          seconds=3.0, error=None, evicted=[], adopted=False,
                                          footprint_bytes=1 << 30))
            rows.append(ev.residency_eviction(instance="coding", model="m", cause="idle_ttl",
                                              ok=True, error=None, for_instance=None,
                                              idle_s=600.0, expected_cost_s=None,
                                              footprint_bytes=1 << 30))
            rows[-2]["ts"] = now - random.uniform(0, 6 * 86400)
            rows[-1]["ts"] = rows[-2]["ts"] + 600
        batch.extend(rows)
        written += len(rows)
        if len(batch) >= 5000:
            store.insert(batch)
            batch = []
    store.insert(batch)


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        store = EventStore(f"sqlite:///{state / 'telemetry.db'}")
        started = time.perf_counter()
        fill(store, total)
        print(f"store: {store.count()} events written in {time.perf_counter() - started:.1f} s")
        trace = store.select(names=["request.outcome"], limit=1, newest_first=True)[0]["trace_id"]
        store.close()
        config = Path(tmp) / "models.yaml"
        config.write_text(f"""version: 1
auto_profiles: [bench]
profiles:
  bench:
    roles:
      router: {{backend: llamacpp, id: m, endpoint: "http://127.0.0.1:{free_port()}/v1"}}
""")
        port = free_port()
        env = {**os.environ, "LOCALROUTE_STATE_DIR": str(state)}
        proc = subprocess.Popen([sys.executable, "-m", "localroute", "--config", str(config),
                                 "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(base + "/health", proc, 120, "localroute serve")  # type: ignore[arg-type]
            paths = ["/ui/api/now", *(f"/ui/api/{kind}?window={w}" for w in ("hour", "day", "week")
                                      for kind in ("overview", "residency")),
                     f"/ui/api/trace/{trace}", "/ui/api/evaluations"]
            print(f"{'endpoint':36} {'first ms':>9} {'p50 ms':>8} {'max ms':>8}")
            worst = 0.0
            with httpx.Client(timeout=300) as client:
                for path in paths:
                    times = []
                    for _ in range(repeats + 1):
                        t0 = time.perf_counter()
                        client.get(base + path).raise_for_status()
                        times.append((time.perf_counter() - t0) * 1000)
                    rest = np.asarray(times[1:])
                    worst = max(worst, float(rest.max()))
                    print(f"{path[:36]:36} {times[0]:9.1f} {np.percentile(rest, 50):8.1f} "
                          f"{rest.max():8.1f}")
            print(f"slowest poll after the first: {worst:.1f} ms (goal < 100 ms)")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    main()
