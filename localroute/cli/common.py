"""What every command shares: the config and profile options, output, and error handling."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from localroute.backends.health import choose_profile
from localroute.config.loader import load_config
from localroute.config.schema import ResolvedProfile

T = TypeVar("T")

# Control characters a terminal would act on, as visible escapes: C0 but tab and newline (ESC
# starts colour, cursor, screen-clearing and OSC title/clipboard sequences), DEL, C1 (0x9b is
# a one-byte CSI for some terminals) and the bidirectional overrides that reorder what is
# shown. Answers, file contents, tool output and recorded events are untrusted, and rich
# passes ESC through (it drops only BEL, BS, VT, FF and CR).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f)}
_CONTROL |= {c: f"\\u{c:04x}" for c in (*range(0x80, 0xa0), *range(0x202a, 0x202f),
                                        *range(0x2066, 0x206a))}


def printable(text: str) -> str:
    """`text` safe to show on a terminal: control characters as visible escapes (`\\x1b`);
    a Windows line end stays a line end. Never applied to --json output, which JSON escapes."""
    return text.replace("\r\n", "\n").translate(_CONTROL)


class SafeConsole(Console):
    """A rich console that passes every string it renders through `printable`: what is
    printed, table cells and tree labels all come through `render_str`. Markup is unaffected
    (it has no control characters); `Text` objects built by hand must use `printable`."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **kwargs)


out = SafeConsole(soft_wrap=True)
err = SafeConsole(stderr=True, soft_wrap=True)

ProfileOpt = typer.Option(
    None, "--profile", "-p", help="Profile of models.yaml to use (default: auto, see README)."
)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


class UsageError(Exception):
    """Bad input from the person: printed as one line, exit code 2."""


@dataclass
class State:
    config: str | None = None
    profile: str | None = None
    debug: bool = False
    _said_profile: bool = False


state = State()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def active_profile(explicit: str | None) -> ResolvedProfile:
    config, source = load_config(state.config)
    profile, why = await choose_profile(config, source, explicit or state.profile)
    if why and not state._said_profile:
        err.print(f"[dim]localroute: {why}[/dim]", highlight=False)
        state._said_profile = True
    return profile


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
