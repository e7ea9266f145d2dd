"""Which directories the file tools may read: chosen explicitly, never `/` or a system directory.

Roots come from the first of these that names any: `--root DIR` (repeatable), the environment
variable LOCALROUTE_TOOL_ROOTS (os.pathsep-separated), `tools.roots` in modes.yaml; then the
command's default (`ask`: the working directory; `serve`: none, so its file tools are off).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from localroute.tools.protected import Protection

ROOTS_ENV = "LOCALROUTE_TOOL_ROOTS"

# The operating system's own trees: no root may be one of them or lie inside one.
SYSTEM_TREES = (
    "/etc", "/usr", "/bin", "/sbin", "/lib*", "/proc", "/sys", "/dev", "/boot", "/run", "/var",
    "/root", "/snap", "/System", "/Library", "/private", "/cores",
)  # fmt: skip
# Per-user temporary directories inside those trees (macOS keeps $TMPDIR in /private/var/folders).
TEMP_EXCEPTIONS = ("/var/tmp", "/var/folders", "/private/tmp", "/private/var/tmp",
                   "/private/var/folders")
# Roots that would open every user's files at once.
WHOLE_MACHINE = ("/", "/home", "/Users")

HOW_TO_CHOOSE = (
    f"choose the directories they may read with --root DIR (ask, serve), "
    f"{ROOTS_ENV}=DIR{os.pathsep}DIR, or tools.roots in modes.yaml"
)
NO_ROOTS_HELP = "file tools are off because no file roots are configured; " + HOW_TO_CHOOSE


class RootError(ValueError):
    """A configured root that is refused; the message names it, where it came from, and why."""


def display(path: Path) -> str:
    """A local path as a person reads it, with the home directory shown as '~'."""
    home = Path.home()
    if home != Path("/") and path.is_relative_to(home):
        rest = path.relative_to(home)
        return "~" if rest == Path() else f"~/{rest}"
    return str(path)


def _within(path: Path, tree: str) -> bool:
    return path == Path(tree) or path.is_relative_to(tree)


def _home_is_a_place() -> Path | None:
    """The home directory when it is a directory of its own, not `/` or a system tree itself."""
    home = Path(os.path.normpath(Path.home().absolute()))
    if str(home) in WHOLE_MACHINE or any(fnmatchcase(str(home), t) for t in SYSTEM_TREES):
        # /root is a home of its own when the process runs as root.
        return home if str(home) == "/root" else None
    return home


def system_reason(path: Path) -> str | None:
    """Why `path` (absolute, normalised) may not be a root, or None when it may."""
    text = str(path)
    if text in WHOLE_MACHINE:
        return ("it is the whole filesystem" if text == "/" else
                "it holds every user's home directory")
    home = _home_is_a_place()
    if home is not None and _within(path, str(home)):
        return None  # a service account's home may live under /var (e.g. /var/lib/jenkins)
    if any(_within(path, t) for t in TEMP_EXCEPTIONS):
        return None
    top = "/" + path.parts[1] if len(path.parts) > 1 else "/"
    for tree in SYSTEM_TREES:
        if fnmatchcase(top, tree):
            return f"it is inside the system directory {top}"
    return None


def check_root(raw: str, source: str, protection: Protection,
               cwd: Path | None = None) -> Path:
    """The resolved root for `raw`, or RootError naming it, its source and the reason."""
    text = raw.strip()
    if not text or "\x00" in text:
        raise RootError(f"{source}: {raw!r} is not a directory path")
    given = Path(os.path.expanduser(text))
    if not given.is_absolute():
        given = (cwd or Path.cwd()) / given
    written = Path(os.path.normpath(given))
    real = written.resolve()
    for candidate in dict.fromkeys((written, real)):
        why = system_reason(candidate)
        if why is not None:
            shown = raw if candidate == written else f"{raw} (really {candidate})"
            raise RootError(f"{source}: refusing file root {shown}: {why}; choose a project or "
                            "data directory such as ~/projects")
        if protection.refuses(candidate):
            raise RootError(f"{source}: refusing file root {raw}: it is a protected location "
                            "(credentials, keys, browser profiles, .env files or localroute's "
                            "state), which the file tools never read")
    if not real.is_dir():
        raise RootError(f"{source}: file root {raw} is not an existing directory; create it or "
                        "fix the path")
    return real


@dataclass(frozen=True)
class RootChoice:
    """The roots in force, where they came from, and a note when there are none."""

    roots: tuple[Path, ...]
    source: str
    note: str | None = None

    def describe(self) -> str:
        """One line for start-up output and --explain."""
        if not self.roots:
            return self.note or NO_ROOTS_HELP
        shown = ", ".join(display(r) for r in self.roots)
        return f"file tools read under {shown} (from {self.source}); secret locations refused"

    def as_json(self) -> dict[str, object]:
        return {"roots": [str(r) for r in self.roots], "source": self.source, "note": self.note}


def choose_roots(
    cli: Sequence[str],
    configured: Sequence[str],
    *,
    protection: Protection,
    default_to_cwd: bool,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> RootChoice:
    """The roots in force: --root, else $LOCALROUTE_TOOL_ROOTS, else tools.roots, else the
    default. An explicit root that is refused raises RootError; a refused default gives none."""
    env = os.environ if env is None else env
    from_env = [p for p in env.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    for source, raws in (("--root", list(cli)), (ROOTS_ENV, from_env),
                         ("modes.yaml tools.roots", list(configured))):
        if raws:
            roots = [check_root(raw, source, protection, cwd) for raw in raws]
            return RootChoice(tuple(dict.fromkeys(roots)), source)
    if not default_to_cwd:
        return RootChoice((), "none", NO_ROOTS_HELP)
    here = Path(os.path.normpath((cwd or Path.cwd()).absolute()))
    why = system_reason(here) or system_reason(here.resolve())
    if why is None and protection.refuses(here):
        why = "it is a protected location"
    if why is not None:
        return RootChoice((), "none", f"file tools are off: the working directory {here} is not "
                          f"used as a file root because {why}; {HOW_TO_CHOOSE}")
    return RootChoice((check_root(str(here), "working directory", protection),),
                      "the working directory")
