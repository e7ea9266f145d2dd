"""Residency policies on one day's workload: localroute's against plain LRU and one-at-a-time.

The workload (benchmarks/residency_workload.py, seeded) is a stated model of a working day: four
clients at once (a chat client that also asks for titles and tags, reasoning sessions in
bursts, a coding agent whose every step calls the large-context coder and the router together,
background router calls). The router takes most requests, the reasoning model comes in bursts,
the large-context coder rarely. The memory budget holds two of the three models. Each policy
runs the same trace:

- localroute: the residency scheduler as configured in the m4max profile: the router pinned,
  reasoning and coding_large_context on demand with their `idle_ttl` (1800 s, 900 s),
  `min_residency` 60 s, victims by lowest expected cost (load time x probability of being
  needed again), requests grouped by model with the 30 s overtaking bound. Among these three
  roles no substitutes are configured (reasoning's is reasoning_heavy, outside this budget), so
  the substitutions column counts 0 by construction;
- lru: every model on demand, evict the least recently used at once, no TTL (llama.cpp's router
  mode with --models-max 2, which cuts the evicted model's requests: here they are drained, and
  the `drained` column counts the requests it would have cut);
- single: one model at a time, no TTL (LM Studio's JIT auto-evict);
- (simulation only) localroute without the idle TTLs, to show what they cost in loads, and
  localroute with the router on demand (LRU's freedom: any two models), to separate what
  pinning the router does from what the eviction and grouping policy does.

Days differ a lot, so the simulation sums ten seeded days (`--days`), each from a cold start.
Beside the policies it prints the offline optimum (Belady's MIN, two models resident) on the
arrival order: no policy that serves requests in arrival order loads less.

**Simulation** (default): the m4max profile's footprints for router (Qwen3-4B, 13.08 GiB),
reasoning (DeepSeek-R1-Distill-Qwen-14B, 26.98 GiB) and coding_large_context (Qwen3-Coder-30B,
42.80 GiB), planned by `localroute plan`; load time = footprint / 4 GiB/s (a stated
SSD-to-unified-memory bandwidth) + 1 s; unload 1 s; generation times as in the workload; slots
as configured (router 4, reasoning 2, coder 1); budget 72 GiB (any two fit, not three; beside
the pinned router only one of the other two). Virtual time, the real scheduler
(`localroute.residency.scheduler.Scheduler`), an event loop of its own.

**Real** (`--real`): managed llama.cpp servers of the two test models under the real residency
manager and client (SmolLM2-135M at 512 tokens as the router, Gemma 3 270M as the reasoning
model, SmolLM2 at 4096 tokens as the coder), a budget that holds two of them, a shorter day
(`--real-hours`, the same clients at the same rates) replayed at `--scale` of its time, with
the profile's time settings (min_residency, overtaking bound, usage horizon, idle TTLs) scaled
alike. Every request is a real call of work x scale x 40 tokens/s (at least 4 tokens). Loads
are real and not scaled. Duplicate loads are two live server processes for one instance at any
sample (every 50 ms); a request is cut when it ends in an error or without a finish reason.

    python benchmarks/residency.py [--seed 0] [--days 10] [--min-residency S] [--log] [--json]
    python benchmarks/residency.py --real [--real-hours 3] [--scale 0.04]

Goal: at least 2x fewer loads than LRU on the same trace, 0 duplicate loads, 0 requests cut.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import sys
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from residency_real import real_run
from residency_workload import NAMES, ROLES, Request, Stats, contention_trace, day_trace, m4max, pct

from localroute.residency.scheduler import (
    Fail,
    Grant,
    InstanceSpec,
    Load,
    Policy,
    Scheduler,
    Unload,
)
from localroute.resources.planner import GIB
from localroute.resources.residency_plan import plan_residency

BANDWIDTH = 4 * GIB  # bytes/s from SSD into unified memory (stated, not measured)
LOAD_OVERHEAD_S, UNLOAD_S = 1.0, 1.0
SIM_BUDGET = 72 * GIB  # router+coder 55.9, reasoning+coder 69.8, all three 82.9 GiB
POLICIES = (Policy.cost, Policy.lru, Policy.single)
# Simulation only: what the configured TTLs cost in loads, and what pinning the router does
# (with the router on demand, localroute has LRU's freedom: any two models).
VARIANTS = {"localroute, no idle_ttl": {"ttl": False},
            "localroute, router on demand": {"pin": False}}


def m4max_specs(policy: Policy, ttl: bool,
                pin: bool) -> tuple[list[InstanceSpec], dict[str, int]]:
    """localroute: the roles' residency and idle_ttl as configured; the baselines know neither
    (every model on demand, kept until evicted)."""
    profile = m4max()
    plan = plan_residency(profile)
    sizes = {r: {**plan.pinned, **plan.on_demand}[r] for r in ROLES}
    slots = {r: profile.role(r).max_concurrency for r in ROLES}
    ours = policy == Policy.cost
    specs = [InstanceSpec(r, profile.role(r).id, sizes[r],
                          pinned=ours and pin and not profile.role(r).on_demand,
                          idle_ttl=profile.role(r).idle_ttl if ours and ttl else None,
                          load_estimate_s=sizes[r] / BANDWIDTH + LOAD_OVERHEAD_S) for r in ROLES]
    return specs, slots


def simulate(policy: Policy, name: str, days: list[list[Request]],
             min_residency: float | None = None, log: bool = False, ttl: bool = True,
             pin: bool = True,
             label: str | None = None) -> Stats:
    """Each day from a cold start (nothing loaded); counts summed, latencies pooled."""
    totals: dict[str, float] = {}
    latencies: list[float] = []
    per_day = []
    for trace in days:
        counts, lat = simulate_day(policy, trace, min_residency, log, ttl, pin)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        latencies += lat
        per_day.append(int(counts["loads"]))
    if log:
        print(f"{label or NAMES[policy]} {name}: loads per day {per_day}; load wait s "
              + ", ".join(f"{k[5:]} {v:.0f}" for k, v in totals.items() if k[:5] == "wait "))
    return Stats("simulation", name, label or NAMES[policy], sum(len(d) for d in days),
                 int(totals["loads"]), int(totals["evictions"]), round(totals["wait"], 1),
                 round(pct(latencies, 0.5), 2), round(pct(latencies, 0.95), 2),
                 int(totals["dup"]), int(totals["drained"]), int(totals["cut"]),
                 int(totals["failed"]), 0)


def simulate_day(policy: Policy, trace: list[Request], min_residency: float | None,
                 log: bool, ttl: bool, pin: bool) -> tuple[dict[str, float], list[float]]:
    specs, slots = m4max_specs(policy, ttl, pin)
    profile = m4max()  # its min_residency and residency settings, as shipped
    residency = profile.min_residency if min_residency is None else min_residency
    sched = Scheduler(specs, budget=SIM_BUDGET, min_residency=residency,
                      max_overtake_s=profile.residency.max_overtake_s,
                      queue_timeout_s=profile.residency.queue_timeout_s,
                      horizon_s=profile.residency.usage_horizon_s, policy=policy)
    load_s = {s.name: s.footprint / BANDWIDTH + LOAD_OVERHEAD_S for s in specs}
    events: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(at: float, kind: str, payload: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, payload))

    by_id = {r.id: r for r in trace}
    for r in trace:
        push(r.at, "arrive", r.id)
    running = dict.fromkeys(ROLES, 0)
    gate: dict[str, deque[int]] = {r: deque() for r in ROLES}
    granted: dict[int, float] = {}
    finished: dict[int, float] = {}
    live = dict.fromkeys(ROLES, False)
    stats = {"loads": 0, "evictions": 0, "dup": 0, "cut": 0, "failed": 0, "drained": 0}
    draining = dict.fromkeys(ROLES, False)
    wake_at: float | None = None

    def start_service(inst: str, now: float) -> None:
        while gate[inst] and running[inst] < slots[inst]:
            rid = gate[inst].popleft()
            running[inst] += 1
            push(now + by_id[rid].work, "done", rid)

    def apply(actions: list[Any], now: float) -> None:
        for a in actions:
            if isinstance(a, Grant):
                granted[a.waiter] = now
                gate[a.instance].append(a.waiter)
                start_service(a.instance, now)
            elif isinstance(a, Load):
                if log:
                    print(f"  {now:8.1f} load {a.instance} ({a.cause}) after {a.after_unloads}")
                stats["loads"] += 1
                stats["dup"] += live[a.instance]  # a second copy of a live model
                live[a.instance] = True
                push(now + load_s[a.instance], "loaded", a.instance)
            elif isinstance(a, Unload):
                if log:
                    print(f"  {now:8.1f} unload {a.instance} ({a.cause})")
                stats["evictions"] += 1
                stats["cut"] += running[a.instance] + len(gate[a.instance])
                push(now + UNLOAD_S, "unloaded", a.instance)
            elif isinstance(a, Fail):
                stats["failed"] += 1
        for inst in ROLES:  # a busy victim: drained here, cut by llama.cpp's router mode
            now_draining = sched.instances[inst].draining
            if now_draining and not draining[inst]:
                stats["drained"] += running[inst] + len(gate[inst])
            draining[inst] = now_draining

    apply([a for s in specs for a in sched.preload(s.name, 0.0)], 0.0)  # serve starts
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            sched.arrive(payload, by_id[payload].role, now)
        elif kind == "done":
            inst = by_id[payload].role
            running[inst] -= 1
            finished[payload] = now
            sched.release(inst, now)
            start_service(inst, now)
        elif kind == "loaded":
            sched.load_done(payload, now, load_s[payload])
        elif kind == "unloaded":
            live[payload] = False
            sched.unload_done(payload, now)
        apply(sched.step(now), now)
        wake = sched.next_wakeup(now)
        if wake is not None and (wake_at is None or wake < wake_at or wake_at <= now):
            wake_at = wake
            push(wake, "tick", None)
    stats["failed"] += len(trace) - len(finished)
    wait = {f"wait {role}": sum(granted[r.id] - r.at for r in trace
                                if r.id in granted and r.role == role) for role in ROLES}
    latencies = [finished[r.id] - r.at for r in trace if r.id in finished]
    return {**stats, **wait, "wait": sum(wait.values())}, latencies


def belady(trace: list[Request], capacity: int = 2) -> int:
    """Loads of the offline optimum (Belady's MIN: evict the model needed again furthest in the
    future) on the trace's arrival order with `capacity` models resident (72 GiB holds any two
    of the three), from a cold start. It ignores load times, slots and calls in flight, so no
    policy that serves requests in arrival order loads less; a policy that reorders them
    (grouping, within max_overtake_s) can."""
    roles = [r.role for r in trace]
    resident: set[str] = set()
    loads = 0
    for i, role in enumerate(roles):
        if role in resident:
            continue
        loads += 1
        if len(resident) >= capacity:
            later = {m: next((j for j in range(i + 1, len(roles)) if roles[j] == m), len(roles))
                     for m in resident}
            resident.remove(max(later, key=later.__getitem__))
        resident.add(role)
    return loads


def table(rows: list[Stats]) -> str:
    head = ("mode", "trace", "policy", "requests", "loads", "evictions", "load wait s",
            "p50 s", "p95 s", "dup loads", "drained", "cut", "failed", "substituted")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for s in rows:
        lines.append(" | ".join(str(v) for v in asdict(s).values()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="the first day's seed")
    parser.add_argument("--days", type=int, default=10,
                        help="simulated days (seeds seed .. seed+days-1), summed")
    parser.add_argument("--real", action="store_true", help="also run the real managed servers")
    parser.add_argument("--scale", type=float, default=0.04, help="real run: x trace time")
    parser.add_argument("--real-hours", type=float, default=3.0,
                        help="real run: the length of its (shorter) day, seed --seed")
    parser.add_argument("--min-residency", type=float, default=None,
                        help="simulation: override the m4max profile's min_residency (s)")
    parser.add_argument("--log", action="store_true", help="simulation: every load and unload")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    traces = {"day": [day_trace(args.seed + d) for d in range(args.days)],
              "contention": [contention_trace(args.seed)]}
    if args.real:
        traces["real day"] = [day_trace(args.seed, args.real_hours * 3600)]
    counts = {name: {r: sum(1 for t in ts for x in t if x.role == r) for r in ROLES}
              for name, ts in traces.items()}
    rows = []
    for name, ts in traces.items():
        if name != "real day":
            rows += [simulate(p, name, ts, args.min_residency, args.log) for p in POLICIES]
            rows += [simulate(Policy.cost, name, ts, args.min_residency, args.log,
                              label=label, **flags) for label, flags in VARIANTS.items()]
    optimum = {name: sum(belady(t) for t in ts) for name, ts in traces.items()}
    if args.real:
        rows += [asyncio.run(real_run(p, "real day", traces["real day"][0], args.scale))
                 for p in POLICIES]
    if args.json:
        print(json.dumps({"traces": counts, "offline_optimum_loads": optimum,
                          "rows": [asdict(r) for r in rows]}, indent=2))
        return
    for name, c in counts.items():
        print(f"trace {name}: {len(traces[name])} x, {sum(c.values())} requests {c}")
    print(table(rows))
    for mode, name in (("simulation", "day"), ("simulation", "contention"), ("real", "real day")):
        got = {r.policy: r for r in rows if r.mode == mode and r.trace == name}
        if got:
            ours, lru = got["localroute"], got["lru"]
            print(f"{mode} {name}: LRU loads / localroute loads = "
                  f"{lru.loads / max(ours.loads, 1):.2f} (goal >= 2); duplicates "
                  f"{ours.duplicate_loads}, cut {ours.cut}; offline optimum in arrival order "
                  f"{optimum[name]} loads: serving requests in arrival order, no policy needs "
                  f"fewer than LRU / {lru.loads / max(optimum[name], 1):.2f}")


if __name__ == "__main__":
    main()
