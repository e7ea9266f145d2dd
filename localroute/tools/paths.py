"""Confining file tools to the configured roots: `..`, absolute paths and symlinks cannot escape."""

from __future__ import annotations

import os
from pathlib import Path

from localroute.tools.base import ToolContext, ToolError


class PathRefused(ToolError):
    """The path resolves outside every configured root."""


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def display_path(path: Path) -> str:
    """The path with the home directory shown as '~', as a person would type it."""
    home = Path.home()
    if path.is_relative_to(home):
        rest = path.relative_to(home)
        return "~" if rest == Path() else f"~/{rest}"
    return str(path)


def confine(raw: str, ctx: ToolContext) -> Path:
    """Resolve `raw` (with `~`, relative to the working directory) and return its real path.

    Raises PathRefused when the path, lexically or after following symlinks, lies outside every
    root. The returned path has no symlinks left, so the caller opens what was checked.
    """
    if not ctx.roots:
        raise PathRefused(
            "no file roots are configured, so no file can be read; configure tool roots"
        )
    text = raw.strip()
    if not text:
        raise PathRefused("the path is empty; give a file or directory such as '~/notes.md'")
    if "\x00" in text:
        raise PathRefused("the path contains a NUL byte")
    candidate = Path(os.path.expanduser(text))
    if not candidate.is_absolute():
        candidate = ctx.working_directory() / candidate
    # Each root counts both as written and as resolved (macOS /tmp is /private/tmp).
    written = [Path(os.path.normpath(Path(r).expanduser().absolute())) for r in ctx.roots]
    real_roots = [Path(r).expanduser().resolve() for r in ctx.roots]
    allowed = ", ".join(display_path(r) for r in written)

    lexical = Path(os.path.normpath(candidate))
    if not any(_within(lexical, r) for r in written + real_roots):
        how = "'..' leads outside" if ".." in Path(text).parts else "is outside"
        raise PathRefused(
            f"path {raw!r} {how} the allowed roots ({allowed}); "
            "ask for a path under one of them or add its directory to the tool roots"
        )
    real = candidate.resolve()
    if not any(_within(real, r) for r in real_roots):
        raise PathRefused(
            f"path {raw!r} goes through a symbolic link that points outside the allowed roots "
            f"({allowed}); refusing to follow it"
        )
    return real
