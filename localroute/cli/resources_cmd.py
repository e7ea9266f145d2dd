"""`localroute plan`, `load`, `status` and `mode set|show`: memory, loading, and governance."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from localroute.backends.loading import load_role
from localroute.cli.common import (
    JsonOpt,
    ProfileOpt,
    UsageError,
    active_profile,
    out,
    print_json,
    run_async,
    state,
)
from localroute.config.loader import PROFILE_ENV, load_config, resolve_profile
from localroute.config.modes import Mode, load_modes
from localroute.config.schema import ResolvedProfile
from localroute.governance.homeostasis import Override, forbidden_message
from localroute.governance.state_files import OverrideStore, RuntimeStore
from localroute.governance.status import RecentSource, collect_status
from localroute.resources.planner import GIB, StackPlan, default_budget, plan_profile
from localroute.resources.residency_plan import ResidencyPlan, plan_residency

mode_app = typer.Typer(help="Show or set the governance mode (manual override).",
                       no_args_is_help=True)


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def _plan_profile(explicit: str | None) -> ResolvedProfile:
    """The profile to plan; planning needs no server, so no probing: the first auto profile
    (the reference stack) unless one is named."""
    config, source = load_config(state.config)
    name = explicit or state.profile or os.environ.get(PROFILE_ENV) or config.auto_profiles[0]
    return resolve_profile(config, name, source)


def _budget(profile: ResolvedProfile, budget_gb: float | None) -> StackPlan:
    if budget_gb is not None:
        if budget_gb <= 0:
            raise UsageError(f"--budget must be a positive number of GiB, not {budget_gb:g}")
        return plan_profile(profile, budget_bytes=int(budget_gb * GIB),
                            budget_source=f"--budget {budget_gb:g}")
    budget, why = default_budget(profile)
    return plan_profile(profile, budget_bytes=budget, budget_source=why)


def _parse_variant(text: str, profile: ResolvedProfile) -> tuple[str, str, str | None]:
    role, sep, rest = text.partition("=")
    if not sep or not rest:
        raise UsageError(f"--compare: '{text}' is not ROLE=MODEL or ROLE=MODEL@QUANT, e.g. "
                         "reasoning=qwen/qwen3-next-80b@5bit")
    profile.role(role)  # KeyError names the defined roles
    model, at, quant = rest.rpartition("@") if "@" in rest else (rest, "", "")
    return role, model, (quant if at else None)


def plan(
    variants: list[str] = typer.Argument(None, help="With --compare: ROLE=MODEL[@QUANT] ..."),
    profile: str | None = ProfileOpt,
    budget: float | None = typer.Option(None, "--budget", help="Memory budget in GiB."),
    kv_cache: str = typer.Option("f16", "--kv-cache", help="KV cache type: f16, q8_0, q4_0."),
    compare: bool = typer.Option(False, "--compare", help="Compare role variants."),
    as_json: bool = JsonOpt,
) -> None:
    """Memory per role (weights, KV cache at its context x concurrency) against the budget."""
    active = _plan_profile(profile)
    base = _budget(active, budget)
    if kv_cache != "f16":
        base = plan_profile(active, budget_bytes=base.budget_bytes,
                            budget_source=base.budget_source, kv_cache_type=kv_cache)
    if compare or variants:
        if not variants:
            raise UsageError("--compare needs ROLE=MODEL[@QUANT] arguments, e.g. "
                             "reasoning=qwen/qwen3-next-80b@5bit")
        _compare(active, base, variants, kv_cache, as_json)
        return
    residency = plan_residency(active, budget_bytes=base.budget_bytes,
                               budget_source=base.budget_source)
    if as_json:
        print_json(base.model_dump() | {"residency": residency.model_dump()})
        return
    _print_plan(base)
    _print_residency(residency)


def _print_plan(p: StackPlan) -> None:
    table = Table(title=f"memory plan: profile {p.profile} (GiB; KV {p.kv_cache_type})")
    for col in ("role", "model", "quant", "weights", "KV cache", "ctx x slots", "overhead",
                "total"):
        table.add_column(col, justify="right" if col not in ("role", "model") else "left")
    for r in p.roles:
        m = r.memory
        if m is None:
            note = r.error or f"shares {r.shares_instance_with}"
            table.add_row(r.role, r.model, "", "", "", "", "", f"[dim]{note}[/dim]")
            continue
        table.add_row(r.role, r.model, m.quantization, _gib(m.weight_bytes),
                      _gib(m.kv_bytes + m.state_bytes), f"{m.context_length} x {m.slots}",
                      _gib(m.overhead_bytes), _gib(m.total_bytes))
    out.print(table)
    colour = "green" if p.fits else "red"
    out.print(f"total [{colour}]{_gib(p.total_bytes)} GiB[/{colour}] (weights "
              f"{_gib(p.weights_bytes)}, KV {_gib(p.kv_bytes)}) against a budget of "
              f"{_gib(p.budget_bytes)} GiB ({p.budget_source}): headroom "
              f"{_gib(p.headroom_bytes)} GiB", highlight=False)
    for e in p.errors:
        out.print(f"[red]error:[/red] {e}", highlight=False)
    if not p.fits and not p.errors:
        out.print("the whole stack does not fit at once; largest sets of instances that do:")
        for combo in p.combinations:
            out.print(f"  - {', '.join(combo)}", highlight=False)


def _with_sharing(plan: ResidencyPlan, name: str) -> str:
    riders = plan.sharing.get(name) or []
    return name + (f" (+{', '.join(riders)})" if riders else "")


def _print_residency(r: ResidencyPlan) -> None:
    """Pinned set, on-demand roles and which of them can be resident together."""
    pinned = ", ".join(f"{_with_sharing(r, n)} {_gib(b)}" for n, b in r.pinned.items()) or "none"
    out.print(f"[bold]residency[/bold] (GiB): pinned {pinned}, total {_gib(r.pinned_bytes)}; "
              f"{_gib(max(r.room_bytes, 0))} left for on-demand roles", highlight=False)
    if r.on_demand:
        out.print("on demand: " + ", ".join(f"{_with_sharing(r, n)} {_gib(b)}"
                                            for n, b in r.on_demand.items()), highlight=False)
        out.print("resident together beside the pinned set:")
        for combo in r.together:
            out.print(f"  - {', '.join(combo)}", highlight=False)
    for name, why in r.unsized.items():
        out.print(f"[yellow]not counted:[/yellow] {name}: {why}", highlight=False)
    for problem in r.problems:
        out.print(f"[red]refused at start:[/red] {problem}", highlight=False)
    if r.fits:
        out.print("[green]the plan fits: pinned roles stay loaded, on-demand roles take turns"
                  "[/green]")


def _compare(active: ResolvedProfile, base: StackPlan, variants: list[str], kv_cache: str,
             as_json: bool) -> None:
    rows: list[dict[str, Any]] = []
    for text in variants:
        role_name, model, quant = _parse_variant(text, active)
        role = active.role(role_name)
        if role.instance != role.name:
            raise UsageError(f"--compare: role '{role_name}' shares the instance of "
                             f"'{role.instance}'; compare '{role.instance}' instead")
        swapped = role.model_copy(update={"id": model, "quantization": quant or role.quantization})
        p = plan_profile(active, budget_bytes=base.budget_bytes, budget_source=base.budget_source,
                         kv_cache_type=kv_cache, replace={role_name: swapped})
        if p.errors:
            raise UsageError(p.errors[0])
        m = p.instances()[role_name]
        rows.append({"variant": text, "role": role_name, "model": model,
                     "quantization": m.quantization, "bits_per_weight": m.bits_per_weight,
                     "weights_bytes": m.weight_bytes, "kv_bytes": m.kv_bytes + m.state_bytes,
                     "role_total_bytes": m.total_bytes, "stack_total_bytes": p.total_bytes,
                     "headroom_bytes": p.headroom_bytes, "fits": p.fits})
    if as_json:
        print_json({"profile": active.name, "budget_bytes": base.budget_bytes, "rows": rows})
        return
    table = Table(title=f"compare on profile {active.name} (GiB; budget "
                        f"{_gib(base.budget_bytes)})")
    table.add_column("variant", overflow="fold", min_width=24)
    for col in ("bpw", "weights", "KV cache", "role total", "stack total", "headroom", "fits"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["variant"], f"{r['bits_per_weight']:g}", _gib(r["weights_bytes"]),
                      _gib(r["kv_bytes"]), _gib(r["role_total_bytes"]),
                      _gib(r["stack_total_bytes"]), _gib(r["headroom_bytes"]),
                      "yes" if r["fits"] else "no")
    out.print(table)
    if len(rows) > 1:
        delta = rows[-1]["role_total_bytes"] - rows[0]["role_total_bytes"]
        out.print(f"{rows[0]['variant']} -> {rows[-1]['variant']}: {delta / GIB:+.2f} GiB",
                  highlight=False)


def load(
    profile: str | None = ProfileOpt,
    budget: float | None = typer.Option(None, "--budget", help="Memory budget in GiB."),
    as_json: bool = JsonOpt,
) -> None:
    """Load every pinned role's model explicitly (never auto-evicted), after the planner says the
    pinned set fits."""
    active = _plan_profile(profile)
    p = _budget(active, budget)
    rplan = plan_residency(active, budget_bytes=p.budget_bytes, budget_source=p.budget_source)
    if not rplan.fits:
        raise UsageError(f"{'; '.join(rplan.problems)}; nothing was loaded")

    async def go() -> list[dict[str, Any]]:
        # On-demand instances are loaded by the process that needs them, not here.
        owners = [x for x in active.roles.values() if x.instance == x.name and not x.on_demand]
        return [(await load_role(x)).model_dump() for x in owners]

    results = run_async(go())
    if as_json:
        print_json({"profile": active.name, "planned_bytes": rplan.pinned_bytes,
                    "results": results})
    else:
        for r in results:
            mark = {"loaded": "[green]✓[/green]", "failed": "[red]✗[/red]"}.get(r["status"], "·")
            took = f" in {r['load_time_s']:.1f} s" if r["load_time_s"] else ""
            out.print(f"{mark} {r['role']}: {r['model']} {r['status']}{took} {r['detail']}",
                      highlight=False)
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


def _recent_requests() -> RecentSource | None:
    try:
        from localroute.telemetry.queries import open_store, query_events
    except ImportError:
        return None

    def read() -> list[dict[str, Any]]:
        store = open_store()
        try:
            return query_events(store, event="request.outcome", limit=10)
        finally:
            store.close()

    return read


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _status_view(snap: dict[str, Any]) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row(f"[bold]mode {snap['mode']}[/bold]", snap["source"], snap.get("cause") or "")
    sensors = Table(title="sensors")
    sensors.add_column("sensor")
    sensors.add_column("value", justify="right")
    for k, v in snap["sensors"].items():
        sensors.add_row(k, "-" if v is None else f"{v:.1f}")
    models = Table(title="models (GiB)")
    for col in ("role", "model", "reachable", "loaded", "memory", "planned"):
        models.add_column(col)
    for m in snap["models"]:
        models.add_row(m["role"], m["model"], str(m["reachable"]), str(m["loaded"]),
                       _gib(m["memory_bytes"]), _gib(m["planned_bytes"]))
    residency = Table(title=f"residency ({snap['residency']['source']})")
    for col in ("instance", "residency", "state", "GiB", "in flight", "queued", "TTL in",
                "mean load s"):
        residency.add_column(col)
    now = time.time()
    for r in snap["residency"]["instances"]:
        ttl = r.get("ttl_expires_at")
        residency.add_row(r["instance"], r["residency"], r["state"], _gib(r["footprint_bytes"]),
                          _count(r.get("in_flight")), _count(r.get("queued")),
                          "-" if ttl is None else f"{ttl - now:.0f} s",
                          "-" if r.get("mean_load_s") is None else f"{r['mean_load_s']:.1f}")
    gates = Table(title="gates")
    for col in ("gate", "capacity", "in flight", "queued"):
        gates.add_column(col)
    for name, g in snap["gates"].items():
        gates.add_row(name, str(g.get("capacity")), str(g.get("in_flight", "-")),
                      str(g.get("waiting", "-")))
    parts: list[Any] = [head, sensors, models, residency, gates]
    if isinstance(snap["recent_requests"], list):
        recent = Table(title="recent requests")
        for col in ("time", "role", "route", "ok", "ms"):
            recent.add_column(col)
        for r in snap["recent_requests"]:
            recent.add_row(time.strftime("%H:%M:%S", time.localtime(r.get("ts", 0))),
                           str(r.get("role")), str(r.get("route")), str(r.get("ok")),
                           str(r.get("duration_ms")))
        parts.append(recent)
    return Group(*parts)


def status(
    profile: str | None = ProfileOpt,
    as_json: bool = JsonOpt,
    interval: float = typer.Option(2.0, "--interval", help="Live view refresh, seconds."),
) -> None:
    """Mode, sensors, loaded models and memory, gates and recent requests (live; --json once)."""
    modes = load_modes()
    recent = _recent_requests()

    async def snapshot() -> dict[str, Any]:
        return await collect_status(await active_profile(profile), modes, recent=recent)

    if as_json:
        print_json(run_async(snapshot()))
        return

    async def live() -> None:
        with Live(_status_view(await snapshot()), console=out, refresh_per_second=4) as view:
            while True:
                await asyncio.sleep(interval)
                view.update(_status_view(await snapshot()))

    try:
        run_async(live())
    except KeyboardInterrupt:
        return


@mode_app.command("show")
def mode_show(as_json: bool = JsonOpt) -> None:
    """The current mode, where it comes from, and the manual override if any."""
    modes = load_modes()
    live = RuntimeStore().load(max_age_s=3 * modes.homeostasis.interval_s + 5)
    override = OverrideStore().load()
    data: dict[str, Any] = {
        "mode": live["mode"] if live else (override.mode.value if override else
                                           modes.default_mode.value),
        "running_governor": bool(live),
        "override": None if override is None else
        {"mode": override.mode.value, "reason": override.reason, "set_at": override.set_at},
        "allowed_next": [m.value for m in modes.homeostasis.edges.get(
            Mode(live["mode"]) if live else (override.mode if override else modes.default_mode),
            ())],
    }
    if as_json:
        print_json(data)
        return
    where = "running governor" if live else "no running governor"
    out.print(f"mode {data['mode']} ({where}); allowed next: {', '.join(data['allowed_next'])}",
              highlight=False)
    if override:
        out.print(f"manual override: {override.mode.value} ({override.reason}), set "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(override.set_at))}",
                  highlight=False)


@mode_app.command("set")
def mode_set(
    mode: str = typer.Argument(..., help="NORMAL, ALERT, DEGRADED, LOCKDOWN, RECOVERY or auto."),
    reason: str = typer.Option("", "--reason", help="Why (kept with the override; required)."),
    force: bool = typer.Option(False, "--force", help="Allow an edge the mode graph forbids."),
) -> None:
    """Pin the mode by hand (persisted for every localroute process); `auto` clears it."""
    store = OverrideStore()
    if mode.lower() == "auto":
        cleared = store.clear()
        out.print("manual override cleared: modes follow the sensors again" if cleared
                  else "no manual override was set", highlight=False)
        return
    try:
        target = Mode(mode.upper())
    except ValueError:
        raise UsageError(f"mode '{mode}' is not one of {', '.join(m.value for m in Mode)} "
                         "or auto") from None
    if not reason.strip():
        raise UsageError("mode set: --reason is required (say why the mode is pinned)")
    modes = load_modes()
    live = RuntimeStore().load(max_age_s=3 * modes.homeostasis.interval_s + 5)
    current = store.load()
    now_mode = Mode(live["mode"]) if live else (current.mode if current else modes.default_mode)
    edges = modes.homeostasis.edges
    if target != now_mode and not force and target not in edges.get(now_mode, ()):
        raise UsageError(forbidden_message(modes.homeostasis, now_mode, target))
    store.save(Override(mode=target, reason=reason.strip(), set_at=time.time()))
    out.print(f"mode pinned to {target.value} ({reason.strip()}); `localroute mode set auto` "
              "clears it", highlight=False)
