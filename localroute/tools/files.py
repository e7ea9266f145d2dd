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
from localroute.tools.paths import check_opened, confine, display_path, not_available
from localroute.tools.protected import holds_private_key

# Reading a person's files is the one built-in that can expose private data; under LOCKDOWN
# only the machine-state tools stay available.
FILE_MODES = GOVERNANCE_MODES - {"LOCKDOWN"}
# The tools that read the person's files: offered only when file roots are configured.
FILE_TOOLS = ("list_directory", "read_file")


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
    untrusted_output = True  # file names are chosen by whoever wrote the files

    async def run(self, args: ListDirectoryArgs, ctx: ToolContext) -> ToolResult:
        target = confine(args.path, ctx)
        if not target.is_dir():
            raise ToolError(f"{args.path!r} is a file, not a directory; use read_file to show it")
        entries, total, hidden = await asyncio.to_thread(_scan, target, args, ctx)
        dirs = sum(1 for e in entries if e["type"] == "dir")
        where = display_path(target, ctx)
        data: dict[str, Any] = {
            "path": where,
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


def _scan(
    target: Path, args: ListDirectoryArgs, ctx: ToolContext
) -> tuple[list[dict[str, Any]], int, int]:
    """Up to the cap of entries (directories first), the total shown, and the hidden left out.
    Protected entries (~/.ssh, .env, key files...) are left out of all three."""
    try:
        fd = os.open(target, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW)
    except PermissionError as exc:
        raise ToolError(f"permission denied listing {args.path!r}") from exc
    except OSError as exc:  # vanished, or became a symlink, since confine()
        raise not_available(args.path) from exc
    try:
        check_opened(fd, args.path, ctx)
        # Entries of an fd-based scan stat through the descriptor, so all work happens here.
        with os.scandir(fd) as it:
            everything = [e for e in it if not ctx.protection.hides_entry(target, e.name)]
        found = [e for e in everything if args.show_hidden or not e.name.startswith(".")]
        found.sort(key=lambda e: (not e.is_dir(follow_symlinks=False), e.name.lower()))
        entries = [row for e in found[: ctx.max_list_entries] if (row := _row(e)) is not None]
    except PermissionError as exc:
        raise ToolError(f"permission denied listing {args.path!r}") from exc
    finally:
        os.close(fd)
    return entries, len(found), len(everything) - len(found)


def _row(entry: os.DirEntry[str]) -> dict[str, Any] | None:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return None  # vanished between listing and stat
    kind = _kind(st.st_mode)
    return {
        "name": entry.name,
        "type": kind,
        "size": st.st_size if kind == "file" else None,
        "modified": datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds"),
    }


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


# Opening with these refuses a last component that is a symlink (swapped in after `confine`);
# O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer.
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


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
    untrusted_output = True

    async def run(self, args: ReadFileArgs, ctx: ToolContext) -> ToolResult:
        target = confine(args.path, ctx)
        if target.is_dir():
            raise ToolError(f"{args.path!r} is a directory; use list_directory to see inside it")
        limit = min(args.max_bytes or ctx.max_read_bytes, ctx.max_read_bytes)
        content, size, truncated = await asyncio.to_thread(_read_text, target, args.path, limit,
                                                           ctx)
        where = display_path(target, ctx)
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        data = {
            "path": where,
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


def _read_text(target: Path, raw: str, limit: int, ctx: ToolContext) -> tuple[str, int, bool]:
    try:
        fd = os.open(target, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK)
    except PermissionError as exc:
        raise ToolError(f"permission denied reading {raw!r}") from exc
    except OSError as exc:  # vanished, or became a symlink, since confine()
        raise not_available(raw) from exc
    with os.fdopen(fd, "rb") as fh:
        check_opened(fd, raw, ctx)
        st = os.fstat(fd)
        # A device may never end and a FIFO blocks: only regular files are read.
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{raw!r} is not a regular file (device, pipe or socket)")
        chunk = fh.read(limit + 1)
    # A private key is refused whatever the file is called, with the answer a missing file gets.
    if holds_private_key(chunk):
        raise not_available(raw)
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
