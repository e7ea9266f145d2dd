"""Sandbox supervisor: started by `sandbox.run_program`, never imported.

It is pid 1 of the run's namespaces where `unshare` made them (so the program is never pid 1,
whose signal rules differ), else a plain child of the grader. It still holds the grader's
privileges: it mounts a private tmpfs over the world-writable directories, writes the program
(read from stdin) into a fresh directory, starts the runner as the unprivileged user with the
rlimits, enforces the wall clock, kills everything the program left behind and reports on a pipe.

Run as `python -I -S sandbox_supervisor.py SPEC_JSON`; standard library only (-S: no site).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_MS_NOSUID = 2
_MS_NODEV = 4
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
_RUNNER = Path(__file__).with_name("sandbox_runner.py")


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _report(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())


def _set_subreaper() -> bool:
    """Orphans of the program re-parent to us, so cleanup can find them without a PID namespace."""
    if not sys.platform.startswith("linux"):
        return False
    return bool(_libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _private_tmp(size_mb: int) -> list[str]:
    """Mount a fresh tmpfs over each world-writable directory (inside our mount namespace only)."""
    libc = _libc()
    mounted = []
    for target in _WORLD_WRITABLE:
        if not os.path.isdir(target):
            continue
        options = f"size={size_mb}m,mode=1777".encode()
        flags = _MS_NOSUID | _MS_NODEV
        if libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, options) == 0:
            mounted.append(target)
    return mounted


def _limits(spec: dict[str, Any]) -> None:
    """preexec_fn of the program: runs in the child after the uid drop, before exec."""
    limits = spec["rlimits"]
    for name, value in limits.items():
        number = getattr(resource, name, None)
        if number is None:
            continue
        with contextlib.suppress(ValueError, OSError):  # the platform lacks or refuses this one
            hard = value + 1 if name == "RLIMIT_CPU" else value  # soft: SIGXCPU, hard: SIGKILL
            resource.setrlimit(number, (value, hard))
    if sys.platform.startswith("linux"):
        # setuid binaries (su, sudo, ping) must not hand the program back any privilege.
        _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(root: int) -> list[int]:
    if not os.path.isdir("/proc"):
        return []
    tree = _children_map()
    found, stack = [], [root]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_all(program_pgid: int) -> int:
    """Kill the program's process group and every descendant; return how many were still alive."""
    deadline = time.monotonic() + 3.0
    left: list[int] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(program_pgid, signal.SIGKILL)
        left = _descendants(os.getpid())
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        if not left:
            return 0
        time.sleep(0.02)
    return len(left)


def _workdir(spec: dict[str, Any], source: bytes, protections: list[str]) -> str:
    if spec["private_tmp"]:
        mounted = _private_tmp(spec["private_tmp_mb"])
        if "/tmp" in mounted:
            protections.append("private_tmp")
    workdir = tempfile.mkdtemp(prefix="run-", dir="/tmp" if spec["private_tmp"] else spec["base"])
    program = os.path.join(workdir, "program.py")
    with open(program, "wb") as handle:
        handle.write(source)
    if spec["drop"]:
        for path in (workdir, program):
            os.chown(path, spec["uid"], spec["gid"])
    return workdir


def main() -> None:
    spec = json.loads(sys.argv[1])
    report_fd, status_fd = spec["report_fd"], spec["status_fd"]
    source = sys.stdin.buffer.read()
    protections = ["subreaper"] if _set_subreaper() else []
    try:
        # Read before the private /tmp is mounted: the package itself may live under /tmp.
        runner = _RUNNER.read_text(encoding="utf-8")
        workdir = _workdir(spec, source, protections)
    except OSError as exc:
        _report(report_fd, {"event": "setup_error", "reason": f"preparing the workdir: {exc}"})
        return
    _report(report_fd, {"event": "started", "pid": os.getpid()})
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
    }
    drop: dict[str, Any] = {}
    if spec["drop"]:
        drop = {"user": spec["uid"], "group": spec["gid"], "extra_groups": []}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [spec["interpreter"], "-I", "-c", runner, str(status_fd), "program.py", spec["run_id"]],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(status_fd,),
            start_new_session=True,
            preexec_fn=lambda: _limits(spec),
            **drop,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _report(report_fd, {"event": "setup_error", "reason": f"starting the interpreter: {exc}"})
        return
    os.close(status_fd)
    timed_out = False
    try:
        returncode = proc.wait(timeout=spec["timeout_s"])
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()
    elapsed = time.monotonic() - started
    left = _kill_all(proc.pid)
    record = {
        "event": "finished",
        "returncode": returncode,
        "timed_out": timed_out,
        "elapsed_s": round(elapsed, 4),
        "left_alive": left,
        "protections": protections,
    }
    _report(report_fd, record)


if __name__ == "__main__":
    main()
