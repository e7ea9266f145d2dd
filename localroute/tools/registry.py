"""The tool registry: lookup, OpenAI schemas per mode, and an `invoke` that never raises."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from enum import Enum
from typing import Any

from pydantic import ValidationError

from localroute.client.types import ToolCall
from localroute.tools.base import Tool, ToolContext, ToolError, ToolResult, normalise_mode
from localroute.tools.clock import TimeTool
from localroute.tools.disk import DiskTool
from localroute.tools.files import ListDirectoryTool, ReadFileTool
from localroute.tools.introspection import ModelsTool, TelemetryTool
from localroute.tools.network import NetworkTool
from localroute.tools.processes import ProcessesTool
from localroute.tools.system import BatteryTool, CpuTool, MemoryTool, UptimeTool


class UnknownToolError(LookupError):
    """No tool has this name; the message lists the known ones."""


class ToolRegistry:
    def __init__(self, tools: list[Tool[Any]] | None = None) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        # Tools kept but not offered to models; invoking one answers with the reason.
        self._withheld: dict[str, str] = {}
        for tool in tools or []:
            self.register(tool)

    def withhold(self, name: str, reason: str) -> None:
        """Stop offering `name` to models; a direct call (a tool-only answer) gets `reason`,
        e.g. the file tools when no file roots are configured."""
        self.get(name)
        self._withheld[name] = reason

    def withheld(self) -> dict[str, str]:
        return dict(self._withheld)

    def register(self, tool: Tool[Any]) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        bad = {m for m in tool.allowed_modes if m != m.upper()}
        if bad:
            raise ValueError(f"tool {tool.name!r} declares modes {sorted(bad)}; use upper case")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool[Any]:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "(none)"
            raise UnknownToolError(f"no tool named {name!r}; known tools: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[Any]]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def allowed(self, name: str, mode: str | Enum) -> bool:
        """Whether `mode` lets the tool run; raises on an unknown tool or mode."""
        return normalise_mode(mode) in self.get(name).allowed_modes

    def openai_schemas(self, mode: str | Enum) -> list[dict[str, Any]]:
        """Tools the mode allows, in OpenAI function-calling format. Unknown mode: ValueError."""
        current = normalise_mode(mode)
        return [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters_schema(),
                },
            }
            for tool in self._tools.values()
            if current in tool.allowed_modes and tool.name not in self._withheld
        ]

    async def invoke(
        self, name: str, raw_args: dict[str, Any] | str | None, ctx: ToolContext, mode: str | Enum
    ) -> ToolResult:
        """Validate, check the mode, run. Every failure comes back as ok=False, never raised."""
        started = time.perf_counter()
        try:
            result = await self._invoke(name, raw_args, ctx, mode)
        except ToolError as exc:
            result = _failure(name, str(exc))
        except OSError as exc:
            # Only the reason: an OSError's text carries the absolute path it failed on.
            why = exc.strerror or "an operating system error"
            result = _failure(name, f"the tool failed unexpectedly: {type(exc).__name__}: {why}")
        except Exception as exc:  # a tool bug must not take the request down with it
            result = _failure(name, f"the tool failed unexpectedly: {type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        return result.model_copy(update={"elapsed_ms": round(elapsed, 3)})

    async def invoke_call(self, call: ToolCall, ctx: ToolContext, mode: str | Enum) -> ToolResult:
        """Run a model's tool call (native or parsed from text)."""
        return await self.invoke(call.name, call.arguments, ctx, mode)

    async def _invoke(
        self, name: str, raw_args: dict[str, Any] | str | None, ctx: ToolContext, mode: str | Enum
    ) -> ToolResult:
        try:
            tool = self.get(name)
        except UnknownToolError as exc:
            raise ToolError(str(exc)) from None
        try:
            current = normalise_mode(mode)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        if name in self._withheld:
            raise ToolError(self._withheld[name])
        if current not in tool.allowed_modes:
            allowed = ", ".join(sorted(tool.allowed_modes))
            raise ToolError(
                f"tool {name!r} is not allowed in {current} mode (allowed in: {allowed}); "
                "wait for the system to return to a calmer mode"
            )
        try:
            args = tool.Args.model_validate(_parse_args(name, raw_args))
        except ValidationError as exc:
            raise ToolError(describe_validation_error(name, exc)) from None
        return await tool.run(args, ctx)


def _parse_args(name: str, raw: dict[str, Any] | str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ToolError(
                f"arguments for tool {name!r} are not valid JSON ({exc.msg} at position "
                f'{exc.pos}); send a JSON object such as {{"path": "~/notes.md"}}'
            ) from None
    if not isinstance(raw, dict):
        raise ToolError(
            f"arguments for tool {name!r} must be a JSON object, got {type(raw).__name__}"
        )
    return raw


def describe_validation_error(name: str, exc: ValidationError) -> str:
    """One line per bad field: which field, what is wrong, what was given."""
    problems = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unexpected field {field!r}")
        elif err["type"] == "missing":
            problems.append(f"field {field!r} is required")
        else:
            problems.append(f"field {field!r}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid arguments for tool {name!r}: " + "; ".join(problems)


def _failure(name: str, message: str) -> ToolResult:
    text = f"The {name} tool could not answer: {message.rstrip('.')}."
    return ToolResult(tool=name, ok=False, data={}, text=text, error=message)


def builtin_tools() -> list[Tool[Any]]:
    """One instance of every built-in tool, in the order they are offered to models."""
    return [
        CpuTool(),
        MemoryTool(),
        DiskTool(),
        BatteryTool(),
        UptimeTool(),
        ProcessesTool(),
        NetworkTool(),
        ListDirectoryTool(),
        ReadFileTool(),
        TimeTool(),
        ModelsTool(),
        TelemetryTool(),
    ]


def default_registry() -> ToolRegistry:
    """A registry holding all built-in tools (all read-only)."""
    return ToolRegistry(builtin_tools())
