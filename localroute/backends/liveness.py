"""Which backends are down, for the governor's `backends_down` sensor, at no cost to requests.

Each distinct backend (server endpoint, managed instance, embedded model) of the pool the
requests use is judged once per probe interval: by its own traffic when that says something (a
request in flight, or one finished within the interval: `activity.py`), else by its cheapest
liveness check, over the backend's long-lived HTTP client (`OpenAICompatBackend.liveness`). So a
probe never lands on a server busy with a request (on llama-cpp-python's server started with its
defaults, it would end a running stream), and never builds a client, TLS context or pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from localroute.backends.base import Backend
from localroute.backends.pool import BackendPool
from localroute.config.schema import ResolvedProfile, ResolvedRole

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Health:
    backend: str  # kind and URL
    alive: bool
    reason: str  # why: "probed", the traffic's verdict, or the failure
    probed: bool


async def _judge(backend: Backend, busy: Callable[[], bool], within_s: float,
                 timeout: float) -> Health:
    name = f"{backend.kind} at {backend.url}"
    if busy():
        return Health(name, True, "a request holds one of its slots: not probed", probed=False)
    verdict = backend.activity.verdict(within_s)
    if verdict is not None:
        return Health(name, verdict.alive, verdict.reason, probed=False)
    try:
        problem = await asyncio.wait_for(backend.liveness(timeout), timeout + 0.5)
    except TimeoutError:
        problem = f"no answer within {timeout:g} s"
    if problem is not None and busy():
        # A request began while the probe was out: a one-slot server answers nothing else
        # while it generates, and one that died fails that request and is counted next time.
        return Health(name, True, f"busy since the probe ({problem}): not counted",
                      probed=True)
    return Health(name, problem is None, problem or "answered its liveness check", probed=True)


async def backend_health(pool: BackendPool, profile: ResolvedProfile, within_s: float,
                         busy: Callable[[ResolvedRole], bool] | None = None,
                         timeout: float = PROBE_TIMEOUT_S) -> list[Health]:
    """One judgement per distinct backend of `profile`, all probes at once. `busy(role)` says
    whether a call for the role holds a slot of its gate (the client's gates): such a backend
    is taken, as good as a request in flight."""
    backends: dict[int, tuple[Backend, list[ResolvedRole]]] = {}
    for role in profile.roles.values():
        try:
            backend = pool.for_role(role)
        except ValueError:  # no endpoint: the config check reports it, not a probe
            continue
        backends.setdefault(id(backend), (backend, []))[1].append(role)

    def taken(roles: list[ResolvedRole]) -> Callable[[], bool]:
        return lambda: busy is not None and any(busy(r) for r in roles)

    return list(await asyncio.gather(*(_judge(b, taken(roles), within_s, timeout)
                                       for b, roles in backends.values())))
