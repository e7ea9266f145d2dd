"""`localroute telemetry query|trace|prune`, `localroute stats`, `localroute feedback` and
`localroute eval replay`: reading what the system recorded, and telling it what was good."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from localroute.cli.common import (
    JsonOpt,
    ProfileOpt,
    SafeConsole,
    active_profile,
    out,
    print_json,
    printable,
    run_async,
)
from localroute.cli.eval_cmd import eval_app
from localroute.config.modes import load_modes
from localroute.config.telemetry import load_telemetry_config
from localroute.telemetry.learning import replay
from localroute.telemetry.queries import (
    open_store,
    parse_duration,
    query_events,
    record_feedback,
    summarise,
    trace_tree,
)
from localroute.telemetry.stats import compute_stats

telemetry_app = typer.Typer(help="Query the telemetry store.", no_args_is_help=True)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@telemetry_app.command("query")
def query_cmd(
    event: str | None = typer.Option(None, "--event", "-e", help="Only this event name "
                                     "(e.g. request.outcome, model.call)."),
    last: str | None = typer.Option(None, "--last", help="Only this recent: 15m, 1h, 7d."),
    role: str | None = typer.Option(None, "--role", "-r", help="Only events of this role."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000),
    as_json: bool = JsonOpt,
) -> None:
    """Recorded events, newest first."""
    store = open_store()
    rows = query_events(store, event=event, last=last, role=role, limit=limit)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} events from {store.safe_url}")
    for col in ("time", "event", "trace", "role", "ms", "what"):
        table.add_column(col, overflow="fold")
    for r in rows:
        ms = "" if r["duration_ms"] is None else f"{r['duration_ms']:.1f}"
        table.add_row(_when(r["ts"]), r["event"], r["trace_id"][:12], r["role"] or "", ms,
                      summarise(r))
    out.print(table)


@telemetry_app.command("trace")
def trace_cmd(
    trace_id: str = typer.Argument(..., help="Trace id from `ask --json` (or a unique prefix)."),
    as_json: bool = JsonOpt,
) -> None:
    """One request as a tree of its states, decisions, model and tool calls, with timings."""
    tree = trace_tree(open_store(), trace_id)
    if as_json:
        print_json(tree)
        return
    view = Tree(f"trace {tree['trace_id']}")
    _grow(view, tree["root"])
    SafeConsole().print(view)  # wrapping, unlike the shared soft-wrap console that crops trees


def _grow(parent: Tree, node: dict[str, Any]) -> None:
    ms = "" if node["duration_ms"] is None else f" [{node['duration_ms']:.2f} ms]"
    mark = {True: "", False: "[red]✗[/red] ", None: ""}[node["ok"]]
    label = f"+{node['offset_ms']:.1f} ms  {mark}[bold]{node['event']}[/bold]{ms}  "
    # A Text built here skips the console's render_str, so the summary (recorded paths, errors,
    # answers) is made printable by hand.
    branch = parent.add(Text.from_markup(label + _escape(printable(node["summary"])),
                                         overflow="fold"))
    for child in node["children"]:
        _grow(branch, child)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


@telemetry_app.command("prune")
def prune_cmd(as_json: bool = JsonOpt) -> None:
    """Delete events past telemetry.max_age_days and beyond telemetry.max_rows now."""
    settings = load_telemetry_config().telemetry
    store = open_store()
    deleted = store.prune(settings.max_age_days, settings.max_rows)
    result = {"deleted": deleted, "remaining": store.count(), "store": store.safe_url}
    if as_json:
        print_json(result)
    else:
        out.print(f"deleted {deleted} events; {result['remaining']} remain in {store.safe_url}",
                  highlight=False)


def stats(
    last: str = typer.Option("24h", "--last", help="Window: 1h, 24h, 7d..."),
    as_json: bool = JsonOpt,
) -> None:
    """Requests, success, latency per role and route, routing, validation, fallbacks, cache,
    tokens, and the ADR's success metrics."""
    result = compute_stats(open_store(), parse_duration(last))
    if as_json:
        print_json(result)
        return
    adr = result["adr"]
    out.print(f"[bold]{result['requests']}[/bold] requests in the last {last}: "
              f"{result['completed']} completed, {result['failed']} failed", highlight=False)
    for name, value in (("task success rate", adr["task_success_rate"]),
                        ("direct tool execution rate", adr["direct_tool_execution_rate"]),
                        ("validation catch rate", adr["validation_catch_rate"]),
                        ("routing overhead ms", _p(adr["routing_overhead_ms"])),
                        ("router-model escalation rate", result["router_model_escalation_rate"]),
                        ("validation failure rate", result["validation"]["failure_rate"]),
                        ("validation retry rate", result["validation"]["retry_rate"]),
                        ("cache hit rate", result["cache"]["hit_rate"]),
                        ("fallbacks", result["fallbacks"]["total"])):
        out.print(f"  {name:30} {_fmt(value)}", highlight=False)
    for title, groups in (("latency ms by route", result["latency_ms"]["by_route"]),
                          ("model-call latency ms by role", result["latency_ms"]["by_role"])):
        table = Table(title=title)
        for col in ("", "n", "p50", "p95", "p99"):
            table.add_column(col)
        for name, p in groups.items():
            if p:
                table.add_row(name, str(p["n"]), f"{p['p50']:.1f}", f"{p['p95']:.1f}",
                              f"{p['p99']:.1f}")
        out.print(table)
    if result["tokens_by_role"]:
        out.print("tokens by role: " + json.dumps(result["tokens_by_role"]), highlight=False)


def _p(p: dict[str, Any] | None) -> str | None:
    return None if p is None else f"p50 {p['p50']:.2f}, p95 {p['p95']:.2f}, p99 {p['p99']:.2f}"


def _fmt(value: Any) -> str:
    if value is None:
        return "— (no data)"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def feedback(
    trace_id: str = typer.Argument(..., help="Trace id from `ask --json` (or a unique prefix)."),
    verdict: str = typer.Argument(..., help="good or bad"),
    note: str | None = typer.Option(None, "--note", help="Why, in a few words."),
) -> None:
    """Tell localroute whether a request's answer was good or bad (the routing policy and
    `stats` count it)."""
    full = record_feedback(open_store(), trace_id, verdict.lower(), note)
    out.print(f"recorded: {verdict.lower()} for trace {full}", highlight=False)


@eval_app.command("replay")
def replay_cmd(
    last: str = typer.Option("7d", "--last", help="Replay requests from this window."),
    profile: str | None = ProfileOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Replay recorded requests through the learned routing policy and the static rules, and
    show what would have changed, with the expected success and latency of each."""
    config = load_telemetry_config()
    active = run_async(active_profile(profile))
    result = replay(open_store(config), config.routing_policy, load_modes(), active.roles,
                    parse_duration(last))
    if as_json:
        print_json(result)
        return
    out.print(f"{result['requests']} requests replayed; the learned policy changes "
              f"{result['changed']}", highlight=False)
    for side in ("static", "learned"):
        s = result[side]
        out.print(f"  {side:8} expected success {_fmt(s['expected_success'])}, expected p50 "
                  f"{_fmt(s['expected_p50_s'])} s", highlight=False)
    if result["changes"]:
        table = Table(title="changes")
        for col in ("task type", "static", "learned", "requests"):
            table.add_column(col)
        for c in result["changes"]:
            table.add_row(c["task_type"], c["static"], c["learned"], str(c["requests"]))
        out.print(table)
