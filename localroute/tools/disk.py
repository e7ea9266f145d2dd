"""The `disk` tool: free space of the root disk, of every partition, or of the disk holding a path.

A path inside the file roots (and not protected) is measured where it really is. Any other path
is answered from the mount table alone -- the disk whose mount point is its longest prefix, as
written -- without touching the path, so the answer is the same whether the path exists or not
and `disk` cannot be used to probe the host's files.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field

from localroute.tools.base import Tool, ToolContext, ToolError, ToolResult
from localroute.tools.formatting import human_bytes, percent
from localroute.tools.paths import PathRefused, confine, display_path

# Above this a disk is called nearly full in the reply.
DISK_WARN_PERCENT = 90.0


class DiskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        max_length=4096,
        description="A path on the disk to report, e.g. '/' or '/Volumes/T7'. Default: root disk.",
    )
    all_partitions: bool = Field(
        default=False, description="Report every mounted partition, like `df -h`."
    )


class DiskTool(Tool[DiskArgs]):
    name = "disk"
    description = "Disk space: total, used and free for a path's disk, or for every partition."
    Args = DiskArgs

    async def run(self, args: DiskArgs, ctx: ToolContext) -> ToolResult:
        if args.all_partitions and args.path is None:
            rows = await asyncio.to_thread(_all_partitions)
            if not rows:
                raise ToolError("no mounted partitions could be read")
            text = "\n".join(["Disk space by partition:"] + [f"- {_disk_line(r)}" for r in rows])
            return self.result({"partitions": rows}, text)
        if args.path is None:
            row = await asyncio.to_thread(_usage_row, "/", "/")
            return self.result(row, f"Disk at {_disk_line(row)}")
        row = await asyncio.to_thread(_path_row, args.path, ctx)
        return self.result(row, f"Disk holding {row['path']} (mounted at {row['mountpoint']}): "
                                f"{_disk_line(row, with_path=False)}")


def _path_row(raw: str, ctx: ToolContext) -> dict[str, Any]:
    if "\x00" in raw or not raw.strip():
        raise ToolError("the path is empty or contains a NUL byte; give one such as '/'")
    text = raw.strip()
    if ctx.roots:
        try:
            real = confine(text, ctx)
        except PathRefused:
            pass  # outside the roots, protected or missing: the mount table answers
        else:
            return _usage_row(str(real), display_path(real, ctx), mount=_mount_of(real))
    written = Path(os.path.expanduser(text))
    if not written.is_absolute():
        written = ctx.working_directory() / written
    mount = _mount_of(Path(os.path.normpath(written)))
    return _usage_row(mount, text, mount=mount)


def _mount_of(path: Path) -> str:
    """The mount point that is the longest prefix of `path`, from the mount table only."""
    best = "/"
    for part in psutil.disk_partitions(all=False):
        point = part.mountpoint
        if (path == Path(point) or path.is_relative_to(point)) and len(point) > len(best):
            best = point
    return best


def _usage_row(measured: str, shown: str, mount: str | None = None) -> dict[str, Any]:
    try:
        usage = psutil.disk_usage(measured)
    except OSError as exc:
        raise ToolError(f"could not read the disk of {shown} ({exc.strerror})") from None
    return {"path": shown, "mountpoint": mount or measured, **usage._asdict()}


def _disk_line(row: dict[str, Any], *, with_path: bool = True) -> str:
    line = (
        f"{human_bytes(row['free'])} free of {human_bytes(row['total'])} "
        f"({percent(row['percent'])} used)"
    )
    if with_path:
        line = f"{row['path']}: {line}"
    if row["percent"] >= DISK_WARN_PERCENT:
        line += " - nearly full"
    return line + "."


def _all_partitions() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    # Shortest mount point first, so a device bind-mounted in several places shows once.
    for part in sorted(psutil.disk_partitions(all=False), key=lambda p: len(p.mountpoint)):
        if part.device in seen or not Path(part.mountpoint).is_dir():
            continue
        try:
            row = _usage_row(part.mountpoint, part.mountpoint)
        except ToolError:
            continue  # unreadable mounts (permission, stale network share) are left out
        seen.add(part.device)
        rows.append({**row, "device": part.device, "fstype": part.fstype})
    return rows
