"""What the sandbox covers with a tmpfs (`mask_plan`): homes, state, /run, world-writable dirs.

Inside the run's mount namespace the supervisor makes every existing mount read-only, then mounts
a fresh tmpfs over each path planned here, parents first:

- `home`: /home, /root, the grader's home (from passwd and $HOME, wherever it is) and the home of
  every login account (uid 1000-65533) -- empty and read-only;
- `state`: localroute's state directory (telemetry database, runtime files) -- empty, read-only;
- `run`: /run, where services keep their sockets (D-Bus, Docker, the per-user runtime directory)
  and lock files -- empty and read-only, apart from the world-writable dirs recreated in it;
- `scratch`: every world-writable directory (/tmp, /var/tmp, /dev/shm, /run/lock, ...) -- empty,
  writable and private to the run, gone with it.

World-writable directories are found by a scan rather than listed by hand: the top four levels of
the tree and every mount point (a scan of the whole tree takes seconds; deeper world-writable
directories are rare, stay read-only like everything else, and only their contents stay visible).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import stat
from pathlib import Path
from typing import Literal

from localroute.config.telemetry import state_dir
from localroute.evaluation.sandbox.mounts import mountinfo, under

MaskKind = Literal["home", "state", "run", "scratch"]
_SCAN_DEPTH = 4
_SCAN_MAX_DIRS = 20_000
_KNOWN_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
# File systems with no user data to find, and trees the scan must not walk (hidden anyway).
_PSEUDO_FS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs", "pstore",
    "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "nsfs",
})
_NOT_SCANNED = ("/proc", "/sys", "/home", "/root")
# Never covered, whatever $HOME says (a service with HOME=/ would hide the whole system).
_SYSTEM = ("/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/dev", "/proc", "/sys", "/var")
_LOGIN_UIDS = range(1000, 65534)


def home_dirs() -> list[str]:
    """Home directories to hide: the standard places, the grader's own and every login user's."""
    homes = ["/home", "/root", os.environ.get("HOME", "")]
    with contextlib.suppress(KeyError):
        homes.append(pwd.getpwuid(os.getuid()).pw_dir)
    with contextlib.suppress(OSError):
        homes += [entry.pw_dir for entry in pwd.getpwall() if entry.pw_uid in _LOGIN_UIDS]
    return _existing_dirs(homes)


@functools.cache
def world_writable_dirs() -> tuple[str, ...]:
    """World-writable directories in the top levels of the tree and at mount points (cached:
    one scan per process, about 50 ms)."""
    mounts = [(path, fstype) for path, _, fstype in mountinfo()]
    skip = {path for path, fstype in mounts if fstype in _PSEUDO_FS} | set(_NOT_SCANNED)
    found = {path for path, fstype in mounts if fstype not in _PSEUDO_FS and _world_writable(path)}
    stack, visited = [("/", 0)], 0
    while stack and visited < _SCAN_MAX_DIRS:
        folder, depth = stack.pop()
        visited += 1
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.path in skip or not entry.is_dir(follow_symlinks=False):
                        continue
                    if entry.stat(follow_symlinks=False).st_mode & stat.S_IWOTH:
                        found.add(entry.path)
                    elif depth + 1 < _SCAN_DEPTH:
                        stack.append((entry.path, depth + 1))
    return tuple(sorted(found | {p for p in _KNOWN_SCRATCH if os.path.isdir(p)}))


def mask_plan() -> list[tuple[str, MaskKind]]:
    """Paths to cover and how, parents first; a path inside a scratch tmpfs or inside another
    hidden one needs no mount of its own (the fresh tmpfs already shows nothing there)."""
    wanted: dict[str, MaskKind] = {}
    for path in world_writable_dirs():
        wanted.setdefault(os.path.realpath(path), "scratch")
    for path in _existing_dirs([str(state_dir())]):
        wanted.setdefault(path, "state")
    for path in _existing_dirs(["/run"]):
        wanted.setdefault(path, "run")
    for path in home_dirs():
        wanted.setdefault(path, "home")
    plan: list[tuple[str, MaskKind]] = []
    for path in sorted(wanted, key=lambda p: (p.count("/"), p)):
        kind = wanted[path]
        outer = [k for parent, k in plan if under(path, parent)]
        if outer and ("scratch" in outer or kind != "scratch"):
            continue
        plan.append((path, kind))
    return plan


def _existing_dirs(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        if not path:
            continue
        real = os.path.realpath(path)
        if real not in _SYSTEM and Path(real).is_dir() and real not in found:
            found.append(real)
    return found


def _world_writable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat.S_IWOTH)
    except OSError:
        return False
