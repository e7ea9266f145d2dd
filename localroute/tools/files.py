"""`list_directory` and `read_file`, confined to the configured roots and capped in size."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from localroute.tools.base import GOVERNANCE_MODES, Tool, ToolContext, ToolError, ToolResult
from localroute.tools.formatting import human_bytes
from localroute.tools.paths import confine, display_path

# Reading a person's files is the one built-in that can expose private data; under LOCKDOWN
# only the machine-state tools stay available.
FILE_MODES = GOVERNANCE_MODES - {"LOCKDOWN"}


class ListDirectoryArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        default=".",
        min_length=1,
        max_length=4096,
        description="Directory to list: '~/projects', 'logs', '/tmp'. Default: working directory.",
    )
    show_hidden: bool = Field(default=False, description="Include dot-files, like `ls -a`.")


class ListDirectoryTool(Tool[ListDirectoryArgs]):
    name = "list_directory"
    description = "List the files and folders in a directory under the allowed roots."
    Args = ListDirectoryArgs
    modes = FILE_MODES

    async def run(self, args: ListDirectoryArgs, ctx: ToolContext) -> ToolResult:
        target = confine(args.path, ctx)
        if not target.exists():
            raise ToolError(f"no such directory: {args.path!r}")
        if not target.is_dir():
            raise ToolError(f"{args.path!r} is a file, not a directory; use read_file to show it")
        entries, total, hidden = await asyncio.to_thread(
            _scan, target, args.show_hidden, ctx.max_list_entries
        )
        dirs = sum(1 for e in entries if e["type"] == "dir")
        where = display_path(target)
        data: dict[str, Any] = {
            "path": str(target),
            "total_entries": total,
            "entries": entries,
            "truncated": total > len(entries),
            "hidden_not_shown": hidden,
        }
        if total == 0:
            extra = f" ({hidden} hidden entries not shown)" if hidden else ""
            return self.result(data, f"{where} is empty{extra}.")
        note = f"; {hidden} hidden not shown" if hidden else ""
        head = f"{where} ({total} entr{'ies' if total != 1 else 'y'}{note}"
        head += f"; showing the first {len(entries)}):" if total > len(entries) else "):"
        lines = [head] + [f"  {_entry_line(e)}" for e in entries]
        if total > len(entries):
            lines.append(f"  ... and {total - len(entries)} more (limit {ctx.max_list_entries}).")
        data["directories_shown"] = dirs
        return self.result(data, "\n".join(lines))


def _scan(target: Path, show_hidden: bool, limit: int) -> tuple[list[dict[str, Any]], int, int]:
    """Up to `limit` entries (directories first), the total shown, and the hidden left out."""
    try:
        with os.scandir(target) as it:
            everything = list(it)
            found = [e for e in everything if show_hidden or not e.name.startswith(".")]
    except PermissionError as exc:
        raise ToolError(f"permission denied listing {display_path(target)}") from exc
    total = len(found)
    found.sort(key=lambda e: (not e.is_dir(follow_symlinks=False), e.name.lower()))
    entries: list[dict[str, Any]] = []
    for entry in found[:limit]:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # vanished between listing and stat
        kind = _kind(st.st_mode)
        entries.append(
            {
                "name": entry.name,
                "type": kind,
                "size": st.st_size if kind == "file" else None,
                "modified": datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds"),
            }
        )
    return entries, total, len(everything) - total


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def _entry_line(entry: dict[str, Any]) -> str:
    name = str(entry["name"])
    if entry["type"] == "dir":
        return name + "/"
    if entry["type"] == "link":
        # The target is not shown: it may lie outside the roots.
        return name + " -> (link)"
    if entry["size"] is not None:
        return f"{name}  {human_bytes(entry['size'])}"
    return name


class ReadFileArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1,
        max_length=4096,
        description="File to show: 'README.md', 'config/router.yaml', '~/notes.md'.",
    )
    max_bytes: int | None = Field(
        default=None, ge=1, description="Read at most this many bytes (never more than the cap)."
    )


class ReadFileTool(Tool[ReadFileArgs]):
    name = "read_file"
    description = "Show the contents of a text file under the allowed roots (size-capped)."
    Args = ReadFileArgs
    modes = FILE_MODES

    async def run(self, args: ReadFileArgs, ctx: ToolContext) -> ToolResult:
        target = confine(args.path, ctx)
        if not target.exists():
            raise ToolError(f"no such file: {args.path!r}")
        if target.is_dir():
            raise ToolError(f"{args.path!r} is a directory; use list_directory to see inside it")
        limit = min(args.max_bytes or ctx.max_read_bytes, ctx.max_read_bytes)
        content, size, truncated = await asyncio.to_thread(_read_text, target, args.path, limit)
        where = display_path(target)
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        data = {
            "path": str(target),
            "size": size,
            "bytes_read": len(content.encode("utf-8")),
            "truncated": truncated,
            "lines": lines,
            "content": content,
        }
        fence = "`" * max(3, _longest_backtick_run(content) + 1)
        lang = target.suffix.lstrip(".")
        text = (
            f"{where} ({human_bytes(size)}, {lines} line{'s' if lines != 1 else ''}"
            f"{' shown' if truncated else ''}):\n{fence}{lang}\n{content.rstrip(chr(10))}\n{fence}"
        )
        if truncated:
            text += f"\n[truncated: showing the first {human_bytes(limit)} of {human_bytes(size)}]"
        return self.result(data, text)


def _read_text(target: Path, raw: str, limit: int) -> tuple[str, int, bool]:
    # Checked before opening: opening a FIFO blocks, and a device may never end.
    if not stat.S_ISREG(os.stat(target).st_mode):
        raise ToolError(f"{raw!r} is not a regular file (device, pipe or socket)")
    try:
        with open(target, "rb") as fh:
            st = os.fstat(fh.fileno())
            chunk = fh.read(limit + 1)
    except PermissionError as exc:
        raise ToolError(f"permission denied reading {raw!r}") from exc
    truncated = len(chunk) > limit
    chunk = chunk[:limit]
    # Same heuristic as git and grep: a NUL byte means binary.
    if b"\x00" in chunk:
        raise ToolError(f"{raw!r} is a binary file; read_file only shows text")
    try:
        text: str = chunk.decode("utf-8-sig")
        return text, st.st_size, truncated
    except UnicodeDecodeError as exc:
        # The cap may cut a multi-byte character in half; drop only that tail.
        if truncated and exc.start >= len(chunk) - 3 and exc.reason == "unexpected end of data":
            text = chunk[: exc.start].decode("utf-8-sig")
            return text, st.st_size, truncated
        raise ToolError(
            f"{raw!r} is not UTF-8 text (binary or another encoding); read_file only shows text"
        ) from exc


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)
