"""Private state on disk (bottom layer): directories 0700 and files 0600 whatever the umask.

localroute's state (telemetry with query text, the governor's snapshot, feedback) is readable
by nobody but its owner. Every directory and file localroute writes state to is made here:
`os.open` with mode 0600 and `mkdir` with 0700 can only lose bits to the umask, never gain
them, and an existing file from an older version is tightened with `chmod` when it is opened
for writing. (Hand-written: neither pathlib nor platformdirs sets modes independently of the
umask.)
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN_BITS = 0o077  # any access for the group or others

_warned: set[str] = set()


def private_dir(path: str | Path, *, warn_if_open: bool = False) -> Path:
    """`path` as a directory, created 0700 with any missing parents (each created 0700 too).
    An existing directory is left as it is; with `warn_if_open`, one that the group or others
    can enter gets a warning on stderr, once per process, naming it and the fix."""
    target = Path(path).expanduser()
    missing: list[Path] = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another process made it meanwhile
            continue
        os.chmod(directory, DIR_MODE)  # mkdir's mode loses bits to the umask; set it exactly
    if warn_if_open and not missing:
        warn_if_open_dir(target)
    return target


def warn_if_open_dir(path: Path) -> None:
    """Warn once per process when the group or others can read or enter `path`."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    key = str(path)
    if stat.S_IMODE(mode) & OPEN_BITS and key not in _warned:
        _warned.add(key)
        print(f"localroute: warning: the state directory {path} is accessible to other users "
              f"(mode {stat.S_IMODE(mode):04o}) and holds telemetry with your queries; run "
              f"`chmod 700 {path}`", file=sys.stderr)


def private_file(path: str | Path) -> Path:
    """Create `path` empty with mode 0600 if it does not exist (its parent 0700 when missing),
    or set an existing one to 0600; for files another library writes to (SQLite gives its -wal
    and -shm files the mode of the database file).

    An existing file is never opened, only chmod-ed by path: POSIX record locks belong to the
    process, and closing ANY descriptor of a file drops every lock the process holds on it
    (SQLite's "How To Corrupt An SQLite Database File", 2.2). Opening and closing a telemetry
    database that a connection of this process already holds dropped that connection's
    shared lock; the next other process to close the database (`localroute telemetry query`)
    then took it for unused, checkpointed it and deleted its WAL, and every later event this
    process wrote went into the deleted file: lost, with no error anywhere."""
    target = Path(path).expanduser()
    private_dir(target.parent)
    try:
        # O_EXCL: a file only this call created, which no connection can have locked yet.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        os.chmod(target, FILE_MODE)
        return target
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits from the mode given to open
    finally:
        os.close(fd)
    return target


def open_private(path: str | Path, mode: str = "a") -> int:
    """A file descriptor for writing (`a` appends, `w` truncates), the file 0600 whatever the
    umask; wrap it with `os.fdopen(fd, mode, encoding=...)`."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    target = Path(path).expanduser()
    private_dir(target.parent)
    fd = os.open(target, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` at once (readers never see half a file), mode 0600."""
    target = Path(path).expanduser()
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with os.fdopen(open_private(tmp, "w"), "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
