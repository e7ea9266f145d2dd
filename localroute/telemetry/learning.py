"""Closing the loop: the routing policy's observations from the store, and replaying recorded
requests through the learned policy next to the static rules."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from localroute.config.modes import Mode, ModesConfig
from localroute.config.schema import ResolvedRole
from localroute.config.telemetry import PolicySettings
from localroute.routing.decision import RoleSelection
from localroute.routing.policy import Observation, RolePolicy
from localroute.telemetry.events import EventName
from localroute.telemetry.store import EventStore

E = EventName


def observations(store: EventStore, since: float) -> list[Observation]:
    """Each finished request (success overridden by a person's feedback) and each graded
    benchmark item, oldest first."""
    rows = store.select(names=[E.REQUEST_OUTCOME, E.FEEDBACK, E.BENCHMARK_RESULT], since=since)
    said = {r["trace_id"]: r["data"]["verdict"] == "good" for r in rows
            if r["event"] == E.FEEDBACK}
    out: list[Observation] = []
    for r in rows:
        d = r["data"]
        if r["event"] == E.REQUEST_OUTCOME and d.get("task_type") and d.get("selected_role"):
            success = said.get(r["trace_id"], bool(r["ok"]))
            out.append(Observation(d["task_type"], d["selected_role"], success,
                                   (r["duration_ms"] or 0.0) / 1000))
        elif r["event"] == E.BENCHMARK_RESULT and r["role"]:
            out.append(Observation(d["task_type"], r["role"], bool(r["ok"]),
                                   (r["duration_ms"] or 0.0) / 1000))
    return out


def load_policy(store: EventStore, settings: PolicySettings,
                now: float | None = None) -> RolePolicy:
    since = (now if now is not None else time.time()) - settings.history_days * 86400
    return RolePolicy(settings).load(observations(store, since))


def replay(store: EventStore, settings: PolicySettings, modes: ModesConfig,
           roles: Mapping[str, ResolvedRole], window_s: float,
           now: float | None = None) -> dict[str, Any]:
    """What the learned policy would have chosen for each recorded request of the window,
    against the static rules, with each side's expected success and p50 latency."""
    now = now if now is not None else time.time()
    policy = load_policy(store, settings, now)
    requests = [r for r in store.select(names=[E.REQUEST_OUTCOME], since=now - window_s)
                if r["data"].get("task_type") and r["data"].get("static_role")]
    changes: Counter[tuple[str, str, str]] = Counter()
    static_success: list[float] = []
    learned_success: list[float] = []
    static_p50: list[float] = []
    learned_p50: list[float] = []
    for r in requests:
        d = r["data"]
        try:
            allowed = modes.policy(Mode(d["mode"])).allowed_roles
        except (ValueError, KeyError):
            allowed = ()
        static = RoleSelection(role=d["static_role"], reason="static rules")
        choice = policy.choose(r["route"] or "", d["task_type"], static, allowed=allowed,
                               roles=roles, explore=False)
        learned = choice.selection.role
        for side, out, lat in ((static.role, static_success, static_p50),
                               (learned, learned_success, learned_p50)):
            mean, p50 = choice.expected.get(side, (0.5, 0.0))
            out.append(mean)
            lat.append(p50)
        if learned != static.role:
            changes[(d["task_type"], static.role, learned)] += 1
    n = len(requests)

    def avg(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "window_s": window_s,
        "requests": n,
        "changed": sum(changes.values()),
        "changes": [{"task_type": t, "static": s, "learned": lrn, "requests": c}
                    for (t, s, lrn), c in changes.most_common()],
        "static": {"expected_success": avg(static_success), "expected_p50_s": avg(static_p50)},
        "learned": {"expected_success": avg(learned_success),
                    "expected_p50_s": avg(learned_p50)},
        "arms": {f"{task}|{role}": {"successes": a.successes, "n": a.n,
                                    "p50_s": round(a.p50_s, 3)}
                 for (task, role), a in sorted(policy.arms.items()) if a.n},
    }
