"""`localroute ask` (the whole pipeline, or one role with --role) and `localroute route`."""

from __future__ import annotations

import sys
from typing import cast

import typer
from rich.table import Table

from localroute.cli.ask_stream import stream_ask
from localroute.cli.common import (
    JsonOpt,
    ProfileOpt,
    UsageError,
    active_profile,
    err,
    out,
    print_json,
    printable,
    run_async,
)
from localroute.client.llm_client import LLMClient
from localroute.config.modes import STREAM_POLICIES, Mode, ModesConfig, StreamPolicy, load_modes
from localroute.governance.state_files import manual_mode, once_per_machine
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext, TaskState
from localroute.telemetry.wiring import residency_hook, shared_telemetry
from localroute.tools.protected import Protection
from localroute.tools.roots import ROOTS_ENV, RootChoice, RootError, choose_roots

ModeOpt = typer.Option(None, "--mode", "-m", help="Governance mode for this request "
                       "(NORMAL, ALERT, DEGRADED, LOCKDOWN, RECOVERY); default: the override "
                       "of `localroute mode set`, else modes.yaml's default_mode.")
ChannelOpt = typer.Option(None, "--channel", help="Explicit channel: code or system_health.")
RootOpt = typer.Option(None, "--root", metavar="DIR",
                       help="A directory the file tools may read (repeatable); replaces "
                       f"{ROOTS_ENV} and tools.roots of modes.yaml. Never / or a system "
                       "directory; secret locations inside are refused.")


def tool_roots(cli: list[str] | None, modes: ModesConfig, *, default_to_cwd: bool) -> RootChoice:
    """The file roots in force for this command, or a UsageError naming the refused root."""
    try:
        return choose_roots(cli or [], modes.tools.roots,
                            protection=Protection(modes.tools.deny),
                            default_to_cwd=default_to_cwd)
    except RootError as exc:
        raise UsageError(str(exc)) from None


EMBEDDED_NOTE_MARKER = "embedded_note_shown"
EMBEDDED_NOTE = (
    "note: this answer comes from the embedded SmolLM2-135M, a tiny demonstration model whose "
    "answers are poor. To use your own models, start LM Studio, Ollama, llama.cpp or vLLM and "
    "run `localroute init`: it finds the server and writes the configuration. (Shown once.)"
)


def note_embedded_answer(backend: str | None) -> None:
    """The first answer of the embedded model on this machine says what it is, on stderr only
    (stdout, --json included, carries the answer and nothing else)."""
    if backend == "embedded" and once_per_machine(EMBEDDED_NOTE_MARKER):
        err.print(f"[yellow]{EMBEDDED_NOTE}[/yellow]", highlight=False)


def parse_policy(value: str | None) -> StreamPolicy | None:
    if value is None:
        return None
    if value not in STREAM_POLICIES:
        raise UsageError(f"--validation: unknown policy '{value}'; use one of "
                         + ", ".join(STREAM_POLICIES))
    return cast(StreamPolicy, value)


def parse_mode(value: str | None) -> Mode | None:
    if value is None:
        return None
    try:
        return Mode(value.upper())
    except ValueError:
        raise UsageError(f"--mode: unknown mode '{value}'; use one of "
                         + ", ".join(m.value for m in Mode)) from None


def ask(
    question: str = typer.Argument(..., help="What to ask."),
    mode: str | None = ModeOpt,
    channel: str | None = ChannelOpt,
    role: str | None = typer.Option(None, "--role", "-r", help="Skip routing: ask this role."),
    profile: str | None = ProfileOpt,
    explain: bool = typer.Option(False, "--explain", help="Print every state with its decision "
                                 "and timing."),
    no_model_routing: bool = typer.Option(False, "--no-model-routing",
                                          help="Never ask the router model to route."),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it is written "
                                "(reasoning dimmed on stderr, the verdict at the end)."),
    validation: str | None = typer.Option(
        None, "--validation", help="With --stream: after (default), window or buffer; "
        "docs/server.md, \"Streaming and validation\"."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="With --role: cap."),
    root: list[str] | None = RootOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Answer a question: a tool when one suffices, otherwise the right role, validated."""
    if role is not None:
        run_async(_ask_role(question, role, profile, stream, max_tokens, as_json))
        return
    chosen = parse_mode(mode)
    policy = parse_policy(validation)
    modes = load_modes()
    roots = tool_roots(root, modes, default_to_cwd=True)

    async def go() -> ExecutionContext:
        active = await active_profile(profile)
        orchestrator = build_orchestrator(active, modes=modes, roots=roots.roots,
                                          no_roots_reason=roots.describe())
        ctx = ExecutionContext(messages=[{"role": "user", "content": question}],
                               mode=chosen or _persisted_mode(modes), channel=channel,
                               allow_router_model=not no_model_routing)
        try:
            if stream and not as_json:
                return await stream_ask(orchestrator, ctx, policy)
            return await orchestrator.run(ctx)
        finally:
            await orchestrator.deps.client.aclose()

    ctx = run_async(go())
    if stream and not as_json:  # printed as it came, verdict included
        if explain:
            print_trace(ctx)
        _print_flags(ctx, verdict_shown=True)
    elif as_json:
        print_json({"reply": ctx.reply, **ctx.summary(), "tool_roots": roots.as_json(),
                    "steps": [{"state": s.state.value, "next": s.next_state.value,
                               "ms": round(s.elapsed_ms, 3), "detail": s.detail}
                              for s in ctx.steps]})
    else:
        if explain:
            err.print(f"file roots: {roots.describe()}", highlight=False, markup=False)
            print_trace(ctx)
        if ctx.reply is not None:
            out.print(ctx.reply, markup=False, highlight=False)
        _print_flags(ctx)
    if ctx.reply is not None and ctx.response is not None:
        note_embedded_answer(ctx.response.backend)
    if ctx.state == TaskState.FAILED:
        if not as_json:
            err.print(f"[red]failed:[/red] {ctx.error}", highlight=False)
        raise SystemExit(1)


def _persisted_mode(modes: ModesConfig) -> Mode:
    try:
        return manual_mode(modes)[0]
    except ValueError as exc:  # an unreadable override file: say which and how to fix it
        raise UsageError(str(exc)) from None


def print_trace(ctx: ExecutionContext) -> None:
    table = Table(title=f"trace {ctx.trace_id}  mode {ctx.mode.value}", show_lines=False)
    for col in ("state", "next", "ms", "decision"):
        table.add_column(col, overflow="fold")
    for s in ctx.steps:
        table.add_row(s.state.value, s.next_state.value, f"{s.elapsed_ms:.2f}", s.detail)
    err.print(table)


def _print_flags(ctx: ExecutionContext, verdict_shown: bool = False) -> None:
    if ctx.validation == "unvalidated" and not verdict_shown:
        err.print("[yellow]warning: this answer failed validation twice and is unvalidated: "
                  + "; ".join(ctx.validation_failures) + "[/yellow]", highlight=False)
    if ctx.response is not None and ctx.response.finish_reason == "length":
        err.print("[yellow]note: the answer stopped at the token limit and is incomplete."
                  "[/yellow]")
    for fb in ctx.fallbacks:
        err.print(f"[yellow]fallback: {fb.from_role} -> {fb.to_role} ({fb.reason})[/yellow]",
                  highlight=False)
    for note in ctx.notes:
        err.print(f"[dim]note: {note}[/dim]", highlight=False)


async def _ask_role(question: str, role: str, profile: str | None, stream: bool,
                    max_tokens: int | None, as_json: bool) -> None:
    active = await active_profile(profile)
    active.role(role)  # a clear error for an unknown role before anything loads
    client = LLMClient(active)
    telemetry = shared_telemetry()
    if telemetry is not None:  # loads and evictions are recorded like the pipeline's
        client.residency.on_event = residency_hook(telemetry)
    messages = [{"role": "user", "content": question}]
    try:
        if stream and not as_json:
            async for event in client.stream(role, messages, max_tokens=max_tokens):
                if event.type == "content":
                    sys.stdout.write(printable(event.text))
                    sys.stdout.flush()
                elif event.type in ("reasoning", "note"):
                    err.print(event.text, end="", style="dim", highlight=False)
                elif event.type == "error":
                    sys.stdout.write("\n")
                    err.print(f"[red]error:[/red] {event.error}", highlight=False)
                    raise SystemExit(1)
                elif event.type == "done":
                    sys.stdout.write("\n")
            note_embedded_answer(active.role(role).backend.value)
            return
        response = await client.respond(role, messages, max_tokens=max_tokens)
    finally:
        await client.aclose()
    if as_json:
        print_json(response.model_dump(mode="json") | {"truncated": response.truncated})
        note_embedded_answer(response.backend)
        return
    if response.reasoning:
        err.print(response.reasoning, style="dim", highlight=False)
    out.print(response.content, highlight=False, markup=False)
    if response.truncated:
        err.print("[yellow]note: the answer stopped at the token limit and is incomplete.[/]")
    note_embedded_answer(response.backend)
