"""`localroute ask`: one question to one role (the orchestrator takes this path over later)."""

from __future__ import annotations

import sys

import typer

from localroute.cli.common import (
    JsonOpt,
    ProfileOpt,
    active_profile,
    err,
    out,
    print_json,
    run_async,
)
from localroute.client.llm_client import LLMClient


def ask(
    question: str = typer.Argument(..., help="What to ask."),
    role: str = typer.Option("router", "--role", "-r", help="Role that answers."),
    profile: str | None = ProfileOpt,
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it is generated."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Cap the answer."),
    as_json: bool = JsonOpt,
) -> None:
    """Ask one role a question and print its answer."""

    async def go() -> None:
        active = await active_profile(profile)
        active.role(role)  # a clear error for an unknown role before anything loads
        client = LLMClient(active)
        messages = [{"role": "user", "content": question}]
        try:
            if stream and not as_json:
                async for event in client.stream(role, messages, max_tokens=max_tokens):
                    if event.type == "content":
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                    elif event.type == "reasoning":
                        err.print(event.text, end="", style="dim", highlight=False)
                    elif event.type == "error":
                        sys.stdout.write("\n")
                        raise typer.Exit(_fail(event.error))
                    elif event.type == "done":
                        sys.stdout.write("\n")
                        _warn_truncated(event.response.finish_reason)
                return
            response = await client.respond(role, messages, max_tokens=max_tokens)
        finally:
            await client.aclose()
        if as_json:
            print_json(response.model_dump(mode="json") | {"truncated": response.truncated})
            return
        if response.reasoning:
            err.print(response.reasoning, style="dim", highlight=False)
        out.print(response.content, highlight=False, markup=False)
        for fb in response.fallbacks:
            err.print(
                f"[yellow]fallback: {fb.from_role} -> {fb.to_role} ({fb.reason})[/yellow]",
                highlight=False,
            )
        _warn_truncated(response.finish_reason)

    run_async(go())


def _warn_truncated(finish_reason: str | None) -> None:
    if finish_reason == "length":
        err.print(
            "[yellow]note: the answer stopped at the token limit (finish_reason=length); "
            "it is incomplete. Raise --max-tokens or the role's max_tokens.[/yellow]"
        )


def _fail(message: str) -> int:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return 1
