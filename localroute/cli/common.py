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

from localroute.backends.health import choose_profile
from localroute.config.loader import load_config
from localroute.config.schema import ResolvedProfile

T = TypeVar("T")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

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
