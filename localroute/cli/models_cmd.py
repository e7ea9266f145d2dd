"""`localroute models` and `localroute doctor`: what each role points at, and whether it works."""

from __future__ import annotations

import typer
from rich.table import Table

from localroute.backends.health import role_statuses
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


def _yes_no(value: bool | None) -> str:
    return {True: "[green]yes[/green]", False: "[red]no[/red]", None: "[dim]?[/dim]"}[value]


def models(profile: str | None = ProfileOpt, as_json: bool = JsonOpt) -> None:
    """List every role of the profile: model, backend, endpoint, reachable, loaded, limits."""

    async def go() -> None:
        active = await active_profile(profile)
        statuses = await role_statuses(active)
        path, origin = config_origin(state.config)
        if as_json:
            print_json({"profile": active.name, "config": str(path), "config_origin": origin,
                        "roles": [s.model_dump() for s in statuses]})
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

    run_async(go())


def doctor(profile: str | None = ProfileOpt, as_json: bool = JsonOpt) -> None:
    """Check every role's backend and say how to fix each problem; exit 1 if a role is unusable."""

    async def go() -> int:
        active = await active_profile(profile)
        statuses = await role_statuses(active)
        broken = [s for s in statuses if s.problem]
        warnings = auto_evict_risk(active.roles.values(), {s.role: s.loaded for s in statuses})
        path, origin = config_origin(state.config)
        if as_json:
            print_json(
                {
                    "profile": active.name,
                    "config": str(path),
                    "config_origin": origin,
                    "ok": not broken,
                    "roles": [s.model_dump() for s in statuses],
                    "warnings": warnings,
                }
            )
            return 1 if broken else 0
        out.print(f"{describe_origin(path, origin)}; profile '{active.name}'", highlight=False)
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
        return 1 if broken else 0

    code = run_async(go())
    raise typer.Exit(code)
