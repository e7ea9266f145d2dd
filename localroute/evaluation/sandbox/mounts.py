"""The sandbox's file-system view, set up by the supervisor inside the run's mount namespace.

`isolate` makes every mount read-only, then covers each planned path (`sandbox_paths.mask_plan`)
with a fresh tmpfs: read-only and empty for homes, state and /run; writable and private for the
world-writable directories. It returns what it established and what failed, so that a run whose
view could not be set up fails closed. Only mounts of this namespace change (unshare makes its
mounts private), nothing outside the run.

Standard library only: the supervisor runs with `python -I -S`, before any privilege drop.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_RELATIME = 1 << 21
# Flags a remount must keep: in a user namespace the kernel locks them (EPERM if dropped).
_KEEP = (
    ("ST_NOSUID", MS_NOSUID), ("ST_NODEV", MS_NODEV), ("ST_NOEXEC", MS_NOEXEC),
    ("ST_NOATIME", MS_NOATIME), ("ST_NODIRATIME", MS_NODIRATIME), ("ST_RELATIME", MS_RELATIME),
)
# Which protection each kind of mask gives (names in the run's `protections`).
PROTECTION = {"home": "hidden_homes", "state": "hidden_state", "run": "hidden_run",
              "scratch": "private_tmp"}
HIDDEN_SIZE = "64k"


def mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, device major:minor, file-system type) of every mount, in mount order."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            before, _, after = line.partition(" - ")
            fields, fstype = before.split(), after.split()[:1]
            if len(fields) > 4 and fstype:
                found.append((unescape(fields[4]), fields[2], fstype[0]))
    return found


def unescape(field: str) -> str:
    """Mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def under(path: str, parent: str) -> bool:
    return path == parent or parent == "/" or path.startswith(parent.rstrip("/") + "/")


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None) -> str | None:
    """mount(2); None when it worked, else the error text."""
    code = _libc().mount(
        source.encode() if source else None, target.encode(),
        fstype.encode() if fstype else None, flags, data.encode() if data else None,
    )
    return None if code == 0 else os.strerror(ctypes.get_errno())


def _visible(path: str, device: str) -> bool:
    """Whether this mount is what a path lookup reaches (not covered by a later mount)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" == device


def _kept_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for name, ms in _KEEP if flags & getattr(os, name, 0))


def read_only_everywhere(masked: list[str]) -> list[str]:
    """Remount every visible mount read-only (those under a mask get covered instead); the
    failures, as text. A mount the supervisor cannot reach, the program cannot reach either."""
    failures = []
    for path, device, _ in mountinfo():
        if any(under(path, mask) for mask in masked) or not _visible(path, device):
            continue
        try:
            if os.statvfs(path).f_flag & os.ST_RDONLY:
                continue
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY | _kept_flags(path)
        except OSError:
            continue
        error = _mount(None, path, None, flags, None)
        if error is not None:
            failures.append(f"remounting {path} read-only: {error}")
    for path, device, _ in mountinfo():  # check, rather than trust the return codes
        if any(under(path, mask) for mask in masked) or not _visible(path, device):
            continue
        with contextlib.suppress(OSError):
            if not os.statvfs(path).f_flag & os.ST_RDONLY:
                failures.append(f"{path} is still writable")
    return sorted(set(failures))


def cover(plan: list[tuple[str, str]], scratch_mb: int) -> dict[str, list[str]]:
    """Mount the planned tmpfs, parents first; failures by kind."""
    failures: dict[str, list[str]] = {kind: [] for kind in PROTECTION}
    hidden = []
    for path, kind in plan:
        if not os.path.isdir(path):
            try:  # a mount point inside a tmpfs mounted just before (e.g. /run/lock in /run)
                os.makedirs(path, mode=0o755)
            except OSError as exc:
                failures[kind].append(f"creating {path}: {exc.strerror}")
                continue
        if kind == "scratch":
            options = f"size={scratch_mb}m,mode=1777"
        else:
            options = f"size={HIDDEN_SIZE},mode=755"
        before = os.stat(path).st_dev
        error = _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
        if error is None and os.stat(path).st_dev == before:  # check, rather than trust
            error = "the mount did not take"
        if error is not None:
            failures[kind].append(f"mounting a tmpfs over {path}: {error}")
        elif kind != "scratch":
            hidden.append((path, kind))
    # Read-only last: the mount points of nested scratch dirs had to be created first.
    for path, kind in reversed(hidden):
        flags = MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
        error = _mount(None, path, None, flags, None)
        if error is not None:
            failures[kind].append(f"making the tmpfs over {path} read-only: {error}")
    return failures


def isolate(plan: list[tuple[str, str]], scratch_mb: int) -> tuple[list[str], dict[str, str]]:
    """Read-only root plus the planned tmpfs: (protections established, missing -> why)."""
    established, missing = [], {}
    ro_failures = read_only_everywhere([path for path, _ in plan])
    if ro_failures:
        missing["read_only_root"] = "; ".join(ro_failures[:5])
    else:
        established.append("read_only_root")
    for kind, failures in cover(plan, scratch_mb).items():
        name = PROTECTION[kind]
        if failures:
            missing[name] = "; ".join(dict.fromkeys(failures[:5]))
        else:
            established.append(name)
    return established, missing
