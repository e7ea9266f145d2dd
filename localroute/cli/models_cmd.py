"""`localroute models` and `localroute doctor`: what each role points at, and whether it works."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.table import Table

from localroute.backends.health import RoleStatus, role_statuses
from localroute.backends.loading import auto_evict_risk
from localroute.cli.common import (
    JsonOpt,
    ProfileOpt,
    active_profile,
    out,
    print_json,
    run_async,
    state,
)
from localroute.config.loader import config_origin, describe_origin
from localroute.config.modes import load_modes
from localroute.config.schema import ResolvedProfile
from localroute.governance.state_files import RuntimeStore
from localroute.governance.status import residency_view
from localroute.resources.planner import PlanError
from localroute.resources.residency_plan import footprint, plan_residency


def _yes_no(value: bool | None) -> str:
    return {True: "[green]yes[/green]", False: "[red]no[/red]", None: "[dim]?[/dim]"}[value]


def _residency(active: ResolvedProfile, statuses: list[RoleStatus]) -> dict[str, Any]:
    modes = load_modes()
    live = RuntimeStore().load(max_age_s=3 * modes.homeostasis.interval_s + 5)
    models: list[dict[str, Any]] = []
    for s in statuses:
        role = active.role(s.role)
        try:
            planned = footprint(role) if role.instance == role.name else None
        except PlanError:
            planned = None
        models.append({"role": s.role, "loaded": s.loaded, "planned_bytes": planned})
    view = residency_view(active, live, models)
    for s, m in zip(statuses, models, strict=True):
        s.loaded = m["loaded"]
    return view


def _ago(epoch: float | None, now: float) -> str:
    return "-" if epoch is None else f"{epoch - now:+.0f} s"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_residency(view: dict[str, Any]) -> None:
    table = Table(title=f"residency ({view['source']})")
    for col in ("instance", "residency", "state", "footprint", "resident since", "last used",
                "TTL expiry", "in flight", "queued", "last / mean load"):
        table.add_column(col)
    now = time.time()
    for r in view["instances"]:
        size = r.get("footprint_bytes")
        loads = (f"{r['last_load_s']:.1f} / {r['mean_load_s']:.1f} s"
                 if r.get("last_load_s") is not None else "-")
        table.add_row(", ".join(r["roles"]), r["residency"], r["state"],
                      f"{size / 2**30:.2f} GiB" if size else "-",
                      _ago(r.get("resident_since"), now), _ago(r.get("last_used"), now),
                      _ago(r.get("ttl_expires_at"), now), _count(r.get("in_flight")),
                      _count(r.get("queued")), loads)
    out.print(table)


def models(profile: str | None = ProfileOpt, as_json: bool = JsonOpt) -> None:
    """List every role of the profile: model, backend, endpoint, reachable, loaded, limits, and
    each instance's residency (state, footprint, TTL, in flight, queued, load times)."""

    async def go() -> None:
        active = await active_profile(profile)
        statuses = await role_statuses(active)
        path, origin = config_origin(state.config)
        view = _residency(active, statuses)
        if as_json:
            print_json({"profile": active.name, "config": str(path), "config_origin": origin,
                        "roles": [s.model_dump() for s in statuses], "residency": view})
            return
        table = Table(title=f"profile {active.name}", caption=describe_origin(path, origin))
        for col in (
            "role",
            "model",
            "backend",
            "endpoint",
            "reachable",
            "loaded",
            "memory",
            "context",
            "concurrency",
        ):
            table.add_column(col)
        for s in statuses:
            shared = f" (shares {s.shares_instance_with})" if s.shares_instance_with else ""
            table.add_row(
                s.role + shared,
                s.model,
                s.backend,
                s.endpoint or "in-process",
                _yes_no(s.reachable),
                _yes_no(s.loaded),
                f"{s.memory_bytes / 2**30:.2f} GiB" if s.memory_bytes else "-",
                str(s.context),
                str(s.concurrency),
            )
        out.print(table)
        _print_residency(view)

    run_async(go())


def doctor(profile: str | None = ProfileOpt, as_json: bool = JsonOpt) -> None:
    """Check every role's backend and say how to fix each problem; exit 1 if a role is unusable."""

    async def go() -> int:
        active = await active_profile(profile)
        statuses = await role_statuses(active)
        broken = [s for s in statuses if s.problem]
        warnings = auto_evict_risk(active.roles.values(), {s.role: s.loaded for s in statuses})
        path, origin = config_origin(state.config)
        # A profile whose pinned set does not fit (or whose on-demand roles never could) is
        # refused at start: the same check, reported here with its numbers.
        residency = plan_residency(active).problems
        if as_json:
            print_json(
                {
                    "profile": active.name,
                    "config": str(path),
                    "config_origin": origin,
                    "ok": not broken and not residency,
                    "roles": [s.model_dump() for s in statuses],
                    "residency_problems": residency,
                    "warnings": warnings,
                }
            )
            return 1 if broken or residency else 0
        out.print(f"{describe_origin(path, origin)}; profile '{active.name}'", highlight=False)
        for problem in residency:
            out.print(f"[red]✗[/red] residency: {problem}", highlight=False)
        for w in warnings:
            out.print(f"[yellow]![/yellow] {w}", highlight=False)
        for s in statuses:
            if s.problem:
                out.print(f"[red]✗[/red] {s.role}: {s.problem}\n    fix: {s.fix}", highlight=False)
            else:
                out.print(
                    f"[green]✓[/green] {s.role}: {s.model} on {s.backend} "
                    f"({s.endpoint or 'in-process'})",
                    highlight=False,
                )
        if broken:
            out.print(
                f"[red]{len(broken)} of {len(statuses)} roles of profile "
                f"'{active.name}' are unusable[/red]"
            )
        return 1 if broken or residency else 0

    code = run_async(go())
    raise typer.Exit(code)
