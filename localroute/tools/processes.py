"""The `processes` tool: top processes by CPU or memory, optionally filtered by name."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import PurePath
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field

from localroute.tools.base import Tool, ToolContext, ToolResult
from localroute.tools.formatting import human_bytes

# Per-process CPU percent is a delta between two readings; this is the window between them.
PROCESS_SAMPLE_S = 0.3
MAX_PROCESSES = 50


class ProcessesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=5, ge=1, le=MAX_PROCESSES, description="How many processes to show.")
    sort_by: Literal["cpu", "memory"] = Field(default="cpu", description="Rank by CPU or memory.")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only processes whose name or command contains this, e.g. 'python'.",
    )


class ProcessesTool(Tool[ProcessesArgs]):
    name = "processes"
    description = (
        "Top running processes by CPU or memory, or the processes matching a name "
        "(is it running, how much does it use)."
    )
    Args = ProcessesArgs

    async def run(self, args: ProcessesArgs, ctx: ToolContext) -> ToolResult:
        rows, total = await asyncio.to_thread(_snapshot, args.name)
        key = "cpu_percent" if args.sort_by == "cpu" else "rss"
        rows.sort(key=lambda r: r[key] or 0, reverse=True)
        shown = rows[: args.limit]
        data: dict[str, Any] = {
            "sort_by": args.sort_by,
            "name": args.name,
            "total_processes": total,
            "matching": len(rows),
            "processes": shown,
        }
        by = "CPU" if args.sort_by == "cpu" else "memory"
        if args.name is not None:
            if not rows:
                return self.result(
                    data, f"No running process matches {args.name!r} ({total} processes running)."
                )
            rss = sum(r["rss"] or 0 for r in rows)
            cpu = sum(r["cpu_percent"] or 0 for r in rows)
            match = "processes match" if len(rows) != 1 else "process matches"
            head = (
                f"{len(rows)} {match} {args.name!r}: "
                f"{human_bytes(rss)} resident, {cpu:.1f}% CPU in total"
                + (f"; top {len(shown)} by {by}:" if len(rows) > len(shown) else ":")
            )
            data.update(total_rss=rss, total_cpu_percent=cpu)
        else:
            head = f"Top {len(shown)} processes by {by} (of {total} running):"
        return self.result(data, head + "\n" + _table(shown))


def _snapshot(name: str | None) -> tuple[list[dict[str, Any]], int]:
    attrs = ["pid", "name", "username", "memory_info", "memory_percent"]
    if name is not None:
        attrs += ["cmdline", "exe"]
    procs = list(psutil.process_iter(attrs))
    if name is not None:
        needle = _squash(name)
        procs = [p for p in procs if needle in _haystack(p.info)]
    for proc in procs:
        # The first reading only starts the window; a process we may not inspect stays n/a.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            proc.cpu_percent(None)
    time.sleep(PROCESS_SAMPLE_S)
    rows: list[dict[str, Any]] = []
    for proc in procs:
        try:
            cpu: float | None = proc.cpu_percent(None)
        except psutil.NoSuchProcess:
            continue  # exited while we sampled
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cpu = None
        mem = proc.info.get("memory_info")
        rows.append(
            {
                "pid": proc.info["pid"],
                "name": proc.info.get("name") or "?",
                "user": proc.info.get("username"),
                "cpu_percent": cpu,
                "rss": getattr(mem, "rss", None),
                "memory_percent": proc.info.get("memory_percent"),
            }
        )
    total = len(psutil.pids())
    return rows, total


def _squash(text: str) -> str:
    # 'LM Studio', 'lm-studio' and 'LMStudio' are the same process name to a person.
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _haystack(info: dict[str, Any]) -> str:
    parts = [info.get("name") or ""]
    exe = info.get("exe")
    if exe:
        parts.append(PurePath(exe).name)
    cmdline = info.get("cmdline") or []
    parts.extend(PurePath(arg).name for arg in cmdline[:3])
    return " ".join(_squash(p) for p in parts)


def _table(rows: list[dict[str, Any]]) -> str:
    header = f"{'PID':>7}  {'CPU':>6}  {'MEM':>10}  NAME"
    lines = [header]
    for r in rows:
        cpu = "n/a" if r["cpu_percent"] is None else f"{r['cpu_percent']:.1f}%"
        mem = "n/a" if r["rss"] is None else human_bytes(r["rss"])
        lines.append(f"{r['pid']:>7}  {cpu:>6}  {mem:>10}  {r['name']}")
    return "\n".join(lines)
