"""One status snapshot: mode, sensor readings, loaded models and their memory, gates, recent
requests. A running governor (`localroute serve`) publishes its live state (mode, readings, gates
with in-flight and queued calls, recent requests) to the runtime file; without one, the snapshot
says so and shows the configured limits and the telemetry store's recent requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from localroute.backends.health import role_statuses
from localroute.config.modes import ModesConfig
from localroute.config.schema import ResolvedProfile
from localroute.governance.sensors import SystemSensors
from localroute.governance.state_files import OverrideStore, RuntimeStore
from localroute.residency.view import offline_rows
from localroute.resources.planner import PlanError
from localroute.resources.residency_plan import footprint

CPU_PRIME_S = 0.25  # psutil's CPU figure needs two samples: the first one only starts the count

RecentSource = Callable[[], list[dict[str, Any]]]


def _mode(modes: ModesConfig, runtime: dict[str, Any] | None,
          overrides: OverrideStore) -> dict[str, Any]:
    if runtime is not None:
        return {"mode": runtime["mode"], "source": f"running governor (pid {runtime.get('pid')})",
                "cause": runtime.get("cause"), "override": runtime.get("override")}
    override = overrides.load()
    if override is not None:
        return {"mode": override.mode.value, "source": "manual override (no running governor)",
                "cause": override.reason,
                "override": {"mode": override.mode.value, "reason": override.reason,
                             "set_at": override.set_at}}
    return {"mode": modes.default_mode.value, "source": "default (no running governor)",
            "cause": None, "override": None}


async def _sensors(runtime: dict[str, Any] | None) -> dict[str, float | None]:
    if runtime is not None and runtime.get("sensors"):
        return dict(runtime["sensors"])
    sensors = SystemSensors()
    await asyncio.sleep(CPU_PRIME_S)
    return sensors()


async def _models(profile: ResolvedProfile) -> list[dict[str, Any]]:
    statuses = await role_statuses(profile)
    out = []
    for s in statuses:
        role = profile.role(s.role)
        planned: int | None = None
        if role.instance == role.name:
            try:
                planned = footprint(role)
            except PlanError:
                planned = None
        out.append({"role": s.role, "model": s.model, "backend": s.backend,
                    "reachable": s.reachable, "loaded": s.loaded, "memory_bytes": s.memory_bytes,
                    "planned_bytes": planned, "shares_instance_with": s.shares_instance_with,
                    "problem": s.problem})
    return out


def residency_view(profile: ResolvedProfile, live: dict[str, Any] | None,
                   models: list[dict[str, Any]]) -> dict[str, Any]:
    """The serving process's residency snapshot for this profile, else what the configuration
    and the servers' listings say. A live snapshot also fixes each role's `loaded` in `models`
    (a managed server belongs to the serving process: this one cannot see it)."""
    snap = (live or {}).get("residency")
    if isinstance(snap, dict) and snap.get("profile") == profile.name:
        states = {i["instance"]: i["state"] for i in snap.get("instances", [])}
        for m in models:
            state = states.get(profile.role(m["role"]).instance)
            if state is not None:
                m["loaded"] = state == "ready"
        return {**snap, "source": "running server"}
    footprints = {m["role"]: m["planned_bytes"] for m in models if m["planned_bytes"]}
    loaded = {m["role"]: m["loaded"] for m in models}
    return {"profile": profile.name, "source": "configuration (no running server)",
            "instances": offline_rows(profile, footprints, loaded)}


def _gates(profile: ResolvedProfile, runtime: dict[str, Any] | None) -> dict[str, Any]:
    if runtime is not None and runtime.get("gate_state"):
        return dict(runtime["gate_state"])
    # Configured limits only: in-flight and queued counts live in the serving process.
    return {r.name: {"capacity": r.max_concurrency, "in_flight": None, "waiting": None}
            for r in profile.roles.values() if r.instance == r.name}


async def collect_status(
    profile: ResolvedProfile,
    modes: ModesConfig,
    *,
    runtime: RuntimeStore | None = None,
    overrides: OverrideStore | None = None,
    recent: RecentSource | None = None,
) -> dict[str, Any]:
    runtime = runtime or RuntimeStore()
    overrides = overrides or OverrideStore()
    live = runtime.load(max_age_s=3 * modes.homeostasis.interval_s + 5)
    sensors, models = await asyncio.gather(_sensors(live), _models(profile))
    recent_requests: list[dict[str, Any]] | str
    if live is not None and isinstance(live.get("recent_requests"), list):
        # The serving process's own list: every request it answered or refused, direct roles
        # included, with no store to read.
        recent_requests = list(live["recent_requests"])
    elif recent is None:
        recent_requests = "telemetry not available"
    else:
        try:
            recent_requests = recent()
        except Exception as exc:  # status must render even when the store does not open
            recent_requests = f"telemetry unavailable: {exc}"
    return {
        "at": time.time(),
        "profile": profile.name,
        **_mode(modes, live, overrides),
        "sensors": sensors,
        "rules": (live or {}).get("rules", []),
        "residency": residency_view(profile, live, models),
        "models": models,
        "gates": _gates(profile, live),
        "events": (live or {}).get("events", []),
        "recent_requests": recent_requests,
    }
