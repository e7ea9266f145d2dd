"""Confining file tools to the configured roots, minus the protected locations.

Every refusal that depends on the file system -- missing, outside the roots after following
links, a protected location, a private key -- gives the same answer, so a caller cannot learn
whether a path it may not read exists. Messages show paths as the caller typed them or relative
to a root, never the server's absolute paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from localroute.tools.base import ToolContext, ToolError
from localroute.tools.roots import NO_ROOTS_HELP

# Echoed paths are cut to this length: a 4 KiB argument does not need to come back whole.
_ECHO_CHARS = 200


class PathRefused(ToolError):
    """The path is missing or not open to the file tools (one message for both)."""


def _echo(raw: str) -> str:
    text = raw if len(raw) <= _ECHO_CHARS else raw[:_ECHO_CHARS] + "..."
    return repr(text)


def not_available(raw: str) -> PathRefused:
    """The one answer for a path that is missing, outside the roots or protected."""
    return PathRefused(
        f"{_echo(raw)} does not exist or is not open to the file tools (they read only inside "
        "the configured roots, and never secret locations such as ~/.ssh, key files or .env "
        "files)"
    )


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _root_pairs(ctx: ToolContext) -> tuple[list[Path], list[Path]]:
    # Each root counts both as written and as resolved (macOS /tmp is /private/tmp).
    written = [Path(os.path.normpath(Path(r).expanduser().absolute())) for r in ctx.roots]
    return written, [r.resolve() for r in written]


def display_path(path: Path, ctx: ToolContext) -> str:
    """`path` (inside a root) as the caller can read it without learning the server's layout:
    '~/...', else relative to the working directory, else '<root name>/...'."""
    home = Path.home().resolve()
    if home != Path("/") and _within(path, home):
        rest = path.relative_to(home)
        return "~" if rest == Path() else f"~/{rest}"
    base = ctx.working_directory().resolve()
    if _within(path, base):
        rest = path.relative_to(base)
        return "." if rest == Path() else str(rest)
    for root in _root_pairs(ctx)[1]:
        if _within(path, root):
            rest = path.relative_to(root)
            name = root.name or "root"
            return name if rest == Path() else f"{name}/{rest}"
    return "(a path outside the roots)"


def allowed_real(path: Path, ctx: ToolContext) -> bool:
    """Whether a real (symlink-free) path lies inside a resolved root and is not protected."""
    _, real_roots = _root_pairs(ctx)
    return any(_within(path, r) for r in real_roots) and not ctx.protection.refuses(path)


def confine(raw: str, ctx: ToolContext) -> Path:
    """The real path of `raw` (with `~`, relative to the working directory), existing, inside
    a root and not protected; otherwise PathRefused. The result has no symlinks left."""
    if not ctx.roots:
        raise PathRefused(NO_ROOTS_HELP)
    text = raw.strip()
    if not text:
        raise PathRefused("the path is empty; give a file or directory such as 'notes.md'")
    if "\x00" in text:
        raise PathRefused("the path contains a NUL byte")
    candidate = Path(os.path.expanduser(text))
    if not candidate.is_absolute():
        candidate = ctx.working_directory() / candidate
    written, real_roots = _root_pairs(ctx)
    # Lexically first, so '..' is judged as written; then after following every link.
    lexical = Path(os.path.normpath(candidate))
    if not any(_within(lexical, r) for r in written + real_roots):
        raise not_available(raw)
    if ctx.protection.refuses(lexical):
        raise not_available(raw)
    real = candidate.resolve()
    if not allowed_real(real, ctx) or not os.path.lexists(real):
        raise not_available(raw)
    return real


def opened_path(fd: int) -> Path | None:
    """The real path of an open descriptor (Linux /proc, macOS F_GETPATH), None elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            return Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return None
    if sys.platform == "darwin":
        import fcntl

        getpath = getattr(fcntl, "F_GETPATH", None)
        if getpath is None:
            return None
        try:
            raw = fcntl.fcntl(fd, getpath, bytes(1024))
        except OSError:
            return None
        return Path(os.fsdecode(raw.split(b"\x00", 1)[0]))
    return None


def check_opened(fd: int, raw: str, ctx: ToolContext) -> None:
    """After opening: the file actually opened is still inside a root and not protected.

    Closes the window between `confine` and `open` in which a directory on the way could be
    swapped for a symlink by someone who can write inside a root."""
    actual = opened_path(fd)
    if actual is not None and not allowed_real(actual, ctx):
        raise not_available(raw)
