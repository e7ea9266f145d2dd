"""The residency benchmark's workload: a stated model of one working day, seeded.

One developer's machine, 09:00-17:00 (8 h), three roles (router, reasoning,
coding_large_context), four clients that run independently and at the same time. The
parameters below were fixed from this description before any policy ran on the trace; they are
not fitted to a result.

1. **Chat** (Open WebUI): a conversation starts on average every 15 min (Poisson). It has
   1 + Geometric(mean 2) turns, 30-120 s apart (reading and typing). Each turn is one request
   to the router. On the first turn Open WebUI also asks for a title and tags at the same moment:
   two more router requests, concurrent with the answer.
2. **Reasoning sessions** (someone works through a hard problem): a session starts on average
   every 60 min (Poisson) and holds 5-12 requests to the reasoning model, 15-60 s apart (reading
   a long answer, asking the follow-up). These are the bursts.
3. **Coding agent** (large context): a task starts on average every 2 h (Poisson) and takes 4-8
   steps. Each step is one request to coding_large_context, and one router request at the same
   moment (the agent's cheap side call: summarising a tool's output, choosing the next tool).
   Steps follow 10-40 s apart (tool execution, tests).
4. **Background** (IDE and scripts: commit messages, classification): router requests, on
   average one every 10 min (Poisson).

Arrivals are open loop (the same trace for every policy: a client does not wait for its previous
answer), so requests queue behind loads exactly as they arrive. Each request's generation time
(work) is the role's typical time x U(0.5, 1.5): router 1.5 s, reasoning 20 s, coder 40 s
(stated, not measured: a 4B, a 14B and a 30B-A3B model at 8 bit on an M4 Max).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from localroute.config.loader import load_config, resolve_profile
from localroute.config.schema import ResolvedProfile
from localroute.residency.scheduler import Policy

ROLES = ("router", "reasoning", "coding_large_context")
SERVICE_S = {"router": 1.5, "reasoning": 20.0, "coding_large_context": 40.0}
NAMES = {Policy.cost: "localroute", Policy.lru: "lru", Policy.single: "single"}
DAY_S = 8 * 3600.0
CHAT_EVERY_S, REASONING_EVERY_S, AGENT_EVERY_S, BACKGROUND_EVERY_S = 900.0, 3600.0, 7200.0, 600.0


@dataclass
class Request:
    id: int
    role: str
    at: float  # seconds from the start of the day
    work: float  # generation seconds (simulation); the real run scales it into tokens
    client: str


def _poisson(rng: random.Random, every: float, span: float) -> list[float]:
    out, t = [], rng.expovariate(1 / every)
    while t < span:
        out.append(t)
        t += rng.expovariate(1 / every)
    return out


def day_trace(seed: int, span: float = DAY_S) -> list[Request]:
    """The day described in the module docstring, over `span` seconds (the real run replays a
    shorter day: the same clients at the same rates)."""
    rng = random.Random(seed)
    raw: list[tuple[float, str, str]] = []
    for start in _poisson(rng, CHAT_EVERY_S, span):
        at, turns = start, 1
        while rng.random() < 2 / 3:  # geometric: mean 2 more turns
            turns += 1
        for turn in range(turns):
            raw.append((at, "router", "chat"))
            if turn == 0:
                raw += [(at, "router", "chat-title"), (at, "router", "chat-tags")]
            at += rng.uniform(30, 120)
    for start in _poisson(rng, REASONING_EVERY_S, span):
        at = start
        for _ in range(rng.randint(5, 12)):
            raw.append((at, "reasoning", "reasoning-session"))
            at += rng.uniform(15, 60)
    for start in _poisson(rng, AGENT_EVERY_S, span):
        at = start
        for _ in range(rng.randint(4, 8)):
            raw += [(at, "coding_large_context", "agent"), (at, "router", "agent-side")]
            at += rng.uniform(10, 40)
    raw += [(at, "router", "background") for at in _poisson(rng, BACKGROUND_EVERY_S, span)]
    raw.sort(key=lambda r: r[0])
    return [Request(i, role, at, SERVICE_S[role] * rng.uniform(0.5, 1.5), client)
            for i, (at, role, client) in enumerate(raw)]


def contention_trace(seed: int) -> list[Request]:
    """A stress half hour, not a day: someone works with the reasoning model (a request every
    ~45 s) while an agent runs the large-context coder (every ~60 s), over router traffic every
    ~10 s: all three are wanted at once and only two fit."""
    rng = random.Random(seed)
    raw: list[tuple[float, str]] = []
    for role, every in (("router", 10.0), ("reasoning", 45.0), ("coding_large_context", 60.0)):
        at = rng.uniform(0, every)
        while at < 1800:
            raw.append((at, role))
            at += rng.expovariate(1 / every)
    raw.sort()
    return [Request(i, role, at, SERVICE_S[role] * rng.uniform(0.5, 1.5), "stress")
            for i, (at, role) in enumerate(raw)]


@dataclass
class Stats:
    mode: str
    trace: str
    policy: str
    requests: int
    loads: int
    evictions: int  # unloads for memory or idle TTL
    load_wait_s: float  # total time requests waited for their model
    p50_s: float
    p95_s: float
    duplicate_loads: int
    drained: int  # granted (running or at the slots gate) when their model was chosen as a
    # victim: drained here, cut by llama.cpp's router mode
    cut: int
    failed: int
    substitutions: int


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def m4max() -> ResolvedProfile:
    config, source = load_config()
    return resolve_profile(config, "m4max", source, env={})
