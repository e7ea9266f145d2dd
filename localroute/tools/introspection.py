"""`models` and `telemetry`: views of localroute itself, through hooks the orchestrator injects.

The shapes of the model entries and of the telemetry summary belong to the backends and telemetry
concerns; these tools format whatever keys they are given rather than depend on them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from localroute.tools.base import NoArgs, Tool, ToolContext, ToolError, ToolResult
from localroute.tools.formatting import format_mapping

# Keys that name a model entry and its state, most specific first.
_ID_KEYS = ("id", "model", "key", "name")
_STATE_KEYS = ("state", "status")
_GROUP_KEYS = ("backend", "server", "provider")


class ModelsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only models whose id, role or backend has these words, e.g. 'qwen3 4b'.",
    )


class ModelsTool(Tool[ModelsArgs]):
    name = "models"
    description = "Models the configured backends serve, and which of them are loaded in memory."
    Args = ModelsArgs

    async def run(self, args: ModelsArgs, ctx: ToolContext) -> ToolResult:
        if ctx.list_models is None:
            raise ToolError(
                "model information is not available here: no backend introspection is connected "
                "to the tools (run through the orchestrator, or check the model server directly)"
            )
        entries = await ctx.list_models()
        matching = [e for e in entries if args.name is None or _matches(args.name, e)]
        loaded = [e for e in matching if _is_loaded(e)]
        data = {
            "name": args.name,
            "models": matching,
            "total": len(entries),
            "matching": len(matching),
            "loaded": len(loaded),
        }
        if args.name is not None and not matching:
            known = ", ".join(sorted({_model_id(e) for e in entries})) or "none"
            return self.result(data, f"No served model matches {args.name!r}. Served: {known}.")
        if not matching:
            return self.result(data, "No models are served by the configured backends.")
        subject = f"Models matching {args.name!r}" if args.name else "Models"
        lines = [f"{subject}: {len(loaded)} loaded of {len(matching)} listed."]
        groups: dict[str, list[dict[str, Any]]] = {}
        for entry in matching:
            groups.setdefault(_group(entry), []).append(entry)
        for group, items in groups.items():
            if group:
                lines.append(f"{group}:")
            lines.extend(f"  - {_model_line(e)}" for e in items)
        return self.result(data, "\n".join(lines))


def _tokens(text: str) -> list[str]:
    return re.findall(r"[0-9a-z]+", text.lower())


def _matches(query: str, entry: dict[str, Any]) -> bool:
    # Whole-token matching: 'qwen3 4b' finds 'qwen/qwen3-4b-2507' but not 'qwen3-14b';
    # the query squashed ('lmstudio') also matches a squashed token so spacing does not matter.
    words = [t for v in entry.values() if isinstance(v, str) for t in _tokens(v)]
    squashed = {"".join(_tokens(v)) for v in entry.values() if isinstance(v, str)}
    wanted = _tokens(query)
    if not wanted:
        return True
    if "".join(wanted) in words or "".join(wanted) in squashed:
        return True
    return all(any(w == q or w.startswith(q) for w in words) for q in wanted)


def _model_id(entry: dict[str, Any]) -> str:
    return next((str(entry[k]) for k in _ID_KEYS if entry.get(k)), "?")


def _group(entry: dict[str, Any]) -> str:
    return next((str(entry[k]) for k in _GROUP_KEYS if entry.get(k)), "")


def _is_loaded(entry: dict[str, Any]) -> bool:
    if isinstance(entry.get("loaded"), bool):
        return bool(entry["loaded"])
    state = next((str(entry[k]).lower() for k in _STATE_KEYS if entry.get(k)), "")
    return state == "loaded"


def _model_line(entry: dict[str, Any]) -> str:
    shown = {*_ID_KEYS[:1], *_GROUP_KEYS, *_STATE_KEYS, "loaded"}
    ident = _model_id(entry)
    state = (
        "loaded"
        if _is_loaded(entry)
        else next((str(entry[k]) for k in _STATE_KEYS if entry.get(k)), "not loaded")
    )
    extras = [
        f"{k}={v}"
        for k, v in entry.items()
        if k not in shown
        and str(v) != ident
        and v not in (None, "", [], {})
        and not isinstance(v, dict | list)
    ]
    return f"{ident}: {state}" + (f" ({', '.join(extras)})" if extras else "")


class TelemetryTool(Tool[NoArgs]):
    name = "telemetry"
    description = "Summary of recent requests: counts per route and role, errors, latencies."
    Args = NoArgs

    async def run(self, args: NoArgs, ctx: ToolContext) -> ToolResult:
        if ctx.telemetry_summary is None:
            raise ToolError(
                "telemetry is not available here: no telemetry store is connected to the tools "
                "(run through the orchestrator with telemetry enabled)"
            )
        summary = await ctx.telemetry_summary()
        if not summary:
            return self.result({}, "No telemetry recorded yet.")
        return self.result(summary, "\n".join(["Telemetry summary:", *format_mapping(summary, 1)]))
