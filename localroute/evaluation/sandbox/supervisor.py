"""Sandbox supervisor: started by `sandbox.run_program` (through `main`), inside the namespaces.

It is pid 1 of the run's namespaces where `unshare` made them (so the program is never pid 1,
whose signal rules differ), else a plain child of the grader. It holds the privileges the program
must not have (root, or all capabilities of its user namespace): it sets up the file-system view
(`sandbox/mounts`), writes the program (read from stdin) into a fresh directory, starts the runner
without privileges -- another uid, or no capabilities through util-linux `setpriv` -- with the
rlimits and no_new_privs, enforces the wall clock, kills everything the program left behind and
reports on a pipe the program does not hold. Where part of the isolation fails it reports
`setup_error` naming what failed (the run is `sandbox_error`), unless the spec allows a weak run.

Standard library only: it runs with `python -I -S`, and imports everything before the mounts hide
the directory it came from.
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

from localroute.evaluation.sandbox.mounts import isolate

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_HERE = Path(__file__).parent
SETPRIV_DROP = ["--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _report(fd: int, record: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(record) + "\n").encode())


def _prctl(option: int, value: int) -> bool:
    return sys.platform.startswith("linux") and bool(_libc().prctl(option, value, 0, 0, 0) == 0)


def _limits(spec: dict[str, Any]) -> None:
    """preexec_fn of the program: runs in the child after any uid drop, before exec."""
    for name, value in spec["rlimits"].items():
        number = getattr(resource, name, None)
        if number is None:
            continue
        with contextlib.suppress(ValueError, OSError):  # the platform lacks or refuses this one
            hard = value + 1 if name == "RLIMIT_CPU" else value  # soft: SIGXCPU, hard: SIGKILL
            resource.setrlimit(number, (value, hard))
    # setuid binaries (su, sudo, ping) must not hand the program back any privilege.
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


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


def _setup(spec: dict[str, Any], source: bytes) -> tuple[str, list[str], dict[str, str]]:
    """The file-system view and the workdir: (workdir, protections, missing -> why)."""
    protections: list[str] = []
    missing: dict[str, str] = {}
    if spec["mount_namespace"]:
        protections, missing = isolate([tuple(m) for m in spec["masks"]], spec["scratch_mb"])
    private_tmp = spec["mount_namespace"] and "private_tmp" in protections
    workdir = tempfile.mkdtemp(prefix="run-", dir="/tmp" if private_tmp else spec["base"])
    program = os.path.join(workdir, "program.py")
    with open(program, "wb") as handle:
        handle.write(source)
    if spec["drop"] == "uid":
        for path in (workdir, program):
            os.chown(path, spec["uid"], spec["gid"])
    return workdir, protections, missing


def _command(spec: dict[str, Any], runner: str, codec: str) -> tuple[list[str], dict[str, Any]]:
    """The program's command line and the Popen arguments that take its privileges away."""
    command = [spec["interpreter"], "-I", "-c", runner, codec, str(spec["request_fd"]),
               str(spec["reply_fd"]), "program.py", spec["run_id"]]
    if spec["drop"] == "uid":
        return command, {"user": spec["uid"], "group": spec["gid"], "extra_groups": []}
    if spec["drop"] == "caps":  # root of a user namespace: keep the id, lose every capability
        return [spec["setpriv"], *SETPRIV_DROP, "--", *command], {}
    return command, {}


def main() -> None:
    spec = json.loads(sys.argv[1])
    report_fd = spec["report_fd"]
    source = sys.stdin.buffer.read()
    # Non-dumpable: a program of the same uid (user namespace) cannot trace us or open our fds.
    _prctl(_PR_SET_DUMPABLE, 0)
    protections = ["subreaper"] if _prctl(_PR_SET_CHILD_SUBREAPER, 1) else []
    try:
        # Read before the mounts: the package itself may live under a hidden home or /tmp.
        runner = (_HERE / "runner.py").read_text(encoding="utf-8")
        codec = (_HERE / "codec.py").read_text(encoding="utf-8")
        workdir, established, missing = _setup(spec, source)
    except OSError as exc:
        _report(report_fd, {"event": "setup_error", "reason": f"preparing the workdir: {exc}"})
        return
    protections += established
    if missing and spec["strict"]:
        reasons = "; ".join(f"{name}: {why}" for name, why in missing.items())
        _report(report_fd, {"event": "setup_error", "reason": reasons, "missing": missing})
        return
    _report(report_fd, {"event": "started", "pid": os.getpid()})
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "HOME": workdir, "TMPDIR": workdir}
    command, drop = _command(spec, runner, codec)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=(spec["request_fd"], spec["reply_fd"]),
            start_new_session=True,
            preexec_fn=lambda: _limits(spec),
            **drop,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _report(report_fd, {"event": "setup_error", "reason": f"starting the interpreter: {exc}"})
        return
    # Only the program holds its ends now: when it dies, the checker sees the end of its answers.
    os.close(spec["request_fd"])
    os.close(spec["reply_fd"])
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
    _report(report_fd, {
        "event": "finished",
        "returncode": returncode,
        "timed_out": timed_out,
        "elapsed_s": round(elapsed, 4),
        "left_alive": left,
        "protections": protections,
        "missing": missing,
    })
