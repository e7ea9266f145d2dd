"""Run one untrusted Python program in a sandbox against trusted tests (`run_program`).

Layers, from the outside in:
  grader (this module)       -- new session, stdout/stderr capped, backstop timeout, then kills
                                the session and sweeps for survivors (uid, pid namespace, run id)
  sandbox/checker.py         -- beside the sandbox, trusted: runs the tests, calling the program
                                for its answers over two pipes of plain data (`sandbox/codec`)
  unshare (where allowed)    -- new user (when not root), network, PID and mount namespaces
  sandbox/supervisor.py      -- pid 1 there: read-only root, tmpfs over homes, state, /run and
                                world-writable dirs (`sandbox/mounts`), uid or capability drop,
                                rlimits, wall clock, kills the program's leftovers
  sandbox/runner.py          -- in the program's process: loads it, answers the calls
`sandbox/verdict.decide` turns the checker's and the supervisor's reports into the verdict; the
program holds neither report's pipe, so what it writes or patches cannot make itself `passed`.
A sandbox that could not be set up gives `sandbox_error`, never a pass or a fail of the program.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

import psutil

from localroute.evaluation.sandbox.caps import SandboxCapabilities, capabilities
from localroute.evaluation.sandbox.models import CheckSpec, SandboxConfig, SandboxResult, Verdict
from localroute.evaluation.sandbox.verdict import RunRecord, decide

__all__ = [
    "CheckSpec",
    "SandboxCapabilities",
    "SandboxConfig",
    "SandboxResult",
    "Verdict",
    "capabilities",
    "run_program",
]

# The supervisor and the checker run with `python -I -S` (no site, no environment): the package
# root goes on their path by hand, so they import this package's modules and nothing else.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
_BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from {} import main; main()"
_BACKSTOP_GRACE_S = 5.0
_CHECKER_GRACE_S = 5.0
_SWEEP_DEADLINE_S = 3.0
_RECORD_CAP = 64 * 1024
_REPLY_CAP = 8 * 1024 * 1024
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class _Capture(threading.Thread):
    """Reads a pipe to EOF, keeping the first `cap` bytes and draining the rest.

    Draining (rather than stopping) keeps a chatty program from blocking on a full pipe, so a
    program that prints a lot and then finishes still gets its real verdict.
    """

    def __init__(self, fd: int, cap: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.cap = fd, cap
        self.data = bytearray()
        self.truncated = False

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            if len(chunk) > max(room, 0):
                self.truncated = True
        os.close(self.fd)

    def text(self) -> str:
        return bytes(self.data).decode("utf-8", "replace")


def run_program(
    code: str, config: SandboxConfig | None = None, check: CheckSpec | None = None
) -> SandboxResult:
    """Run `code` as a Python program in a fresh sandbox and return its verdict.

    With `check`, the tests run in a trusted process and call `check.entry_point` in the
    program; `passed` means they ran to their end. Without, the program only has to load: then
    `passed` is the program's own word that its code ran to the end (a script's asserts).
    """
    cfg = config or SandboxConfig()
    caps = capabilities(cfg)
    run = RunRecord(
        run_id=uuid.uuid4().hex,
        uid=cfg.run_as_uid if caps.uid_drop else None,
        pid_namespace=caps.pid_namespace,
    )
    if os.name != "posix":
        caps = caps.model_copy(update={"error": "the sandbox needs a POSIX system"})
    if caps.error:
        return _sandbox_error(run, caps, caps.error)
    base = tempfile.mkdtemp(prefix="localroute-sandbox-")
    try:
        os.chmod(base, 0o711)  # the sandbox user must reach its workdir inside
        return _run(code, cfg, caps, run, base, check or CheckSpec(tests=""))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", _BOOT.format(module), _PACKAGE_ROOT, *args]


def _run(
    code: str,
    cfg: SandboxConfig,
    caps: SandboxCapabilities,
    run: RunRecord,
    base: str,
    check: CheckSpec,
) -> SandboxResult:
    report_r, report_w = os.pipe()  # supervisor -> grader
    verdict_r, verdict_w = os.pipe()  # checker -> grader
    request_r, request_w = os.pipe()  # checker -> program
    reply_r, reply_w = os.pipe()  # program -> checker
    assert caps.interpreter is not None
    drop = "uid" if caps.uid_drop else "caps" if caps.no_capabilities else None
    spec = {
        "interpreter": caps.interpreter,
        "drop": drop,
        "setpriv": caps.setpriv,
        "uid": cfg.run_as_uid,
        "gid": cfg.run_as_gid,
        "timeout_s": cfg.timeout_s,
        "rlimits": _rlimits(cfg, caps),
        "mount_namespace": caps.mount_namespace,
        "masks": caps.masks,
        "scratch_mb": cfg.private_tmp_mb,
        "strict": not cfg.allow_weak,
        "base": base,
        "report_fd": report_w,
        "request_fd": request_r,
        "reply_fd": reply_w,
        "run_id": run.run_id,
    }
    supervisor = _python("localroute.evaluation.sandbox.supervisor", json.dumps(spec))
    command = (
        [caps.unshare, *caps.unshare_flags, "--", *supervisor] if caps.unshare_flags else supervisor
    )
    checker_spec = {
        **check.model_dump(),
        "request_fd": request_w,
        "reply_fd": reply_r,
        "report_fd": verdict_w,
        "reply_cap": _REPLY_CAP,
    }
    started = time.monotonic()
    try:
        checker = _start(_python("localroute.evaluation.sandbox.checker"), base,
                         (request_w, reply_r, verdict_w), stdout=subprocess.DEVNULL)
        try:
            proc = _start([str(part) for part in command], base, (report_w, request_r, reply_w))
        except OSError:
            _stop(checker)
            raise
    except OSError as exc:
        return _sandbox_error(run, caps, f"could not start the sandbox ({command[0]}): {exc}")
    finally:
        for fd in (report_w, verdict_w, request_r, request_w, reply_r, reply_w):
            with contextlib.suppress(OSError):
                os.close(fd)  # each end now lives only in the process that uses it
    run.pgid = proc.pid
    captures = [
        _Capture(_pipe_fd(proc.stdout), cfg.max_output_bytes),
        _Capture(_pipe_fd(proc.stderr), cfg.max_output_bytes),
        _Capture(report_r, _RECORD_CAP),
        _Capture(verdict_r, _RECORD_CAP),
        _Capture(_pipe_fd(checker.stderr), _RECORD_CAP),
    ]
    for capture in captures:
        capture.start()
    _feed(checker, json.dumps(checker_spec).encode("utf-8"))
    _feed(proc, code.encode("utf-8"))
    try:
        run.returncode = proc.wait(timeout=cfg.timeout_s + _BACKSTOP_GRACE_S)
    except subprocess.TimeoutExpired:
        run.backstop_fired = True
    cleanup_ok = _sweep(run, proc)
    try:  # the program is gone, so the checker has every answer it will get
        checker.wait(timeout=_CHECKER_GRACE_S)
    except subprocess.TimeoutExpired:
        run.checker_killed = True
    _stop(checker)
    for capture in captures:
        capture.join(timeout=2.0)
    run.supervisor = _records(captures[2])
    checks = _records(captures[3])
    run.check = checks[0] if checks else None
    stdout, stderr = captures[0], captures[1]
    result = decide(run, stderr.text(), captures[4].text())
    return result.model_copy(
        update={
            "stdout": stdout.text(),
            "stderr": stderr.text(),
            "stdout_truncated": stdout.truncated,
            "stderr_truncated": stderr.truncated,
            "elapsed_s": _elapsed(run, time.monotonic() - started),
            "protections": _protections(caps, run),
            "missing_protections": _missing(caps, run),
            "interpreter": caps.interpreter,
            "run_as_uid": run.uid,
            "run_id": run.run_id,
            "cleanup_ok": cleanup_ok,
        }
    )


def _start(
    command: list[str], cwd: str, fds: tuple[int, ...], stdout: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
        pass_fds=fds,
        start_new_session=True,
        env=_CLEAN_ENV,
        cwd=cwd,
    )


def _pipe_fd(stream: IO[bytes] | None) -> int:
    """A descriptor of the pipe for a capture thread (which closes it), the file object closed."""
    assert stream is not None
    fd = os.dup(stream.fileno())
    stream.close()
    return fd


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):  # a process that died is judged later
        proc.stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _rlimits(cfg: SandboxConfig, caps: SandboxCapabilities) -> dict[str, int]:
    wanted = {
        "RLIMIT_CPU": cfg.effective_cpu_s,
        "RLIMIT_AS": cfg.memory_mb * 1024 * 1024,
        "RLIMIT_NPROC": cfg.max_procs,
        "RLIMIT_FSIZE": cfg.max_file_mb * 1024 * 1024,
        "RLIMIT_NOFILE": cfg.max_open_files,
        "RLIMIT_CORE": 0,
    }
    return {name: value for name, value in wanted.items() if name in caps.rlimits}


def _records(capture: _Capture) -> list[dict[str, Any]]:
    records = []
    for line in bytes(capture.data).decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def _sweep(run: RunRecord, proc: subprocess.Popen[bytes]) -> bool:
    """Kill the run's session and every process that belongs to the run; True if none is left."""
    deadline = time.monotonic() + _SWEEP_DEADLINE_S
    while True:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(timeout=1.0)
            run.returncode = code if run.returncode is None else run.returncode
        # With a PID namespace the uid is no mark of this run's processes (the kernel killed
        # them all), and matching it could hit a concurrent grader's runs as the same uid.
        uid = None if run.pid_namespace else run.uid
        left = survivors(run.run_id, uid, run.started_at, run.pgid)
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _untouchable() -> set[int]:
    """This process, its ancestors and pid 1: never a survivor of a run, whatever else matches."""
    keep = {0, 1, os.getpid()}
    with contextlib.suppress(psutil.Error):
        keep.update(parent.pid for parent in psutil.Process().parents())
    return keep


def survivors(
    run_id: str, uid: int | None, since: float, pgid: int | None = None
) -> list[psutil.Process]:
    """Live processes of one run: carrying its run id, in its session, or owned by its sandbox
    uid and started after `since`.

    Each test is narrow on purpose, because this list is killed. A PID namespace is not matched
    by its inode: the kernel reuses the number as soon as the namespace dies, so a finished run
    would match the namespace of the run beside it. It needs no sweep anyway: once its pid 1
    (the supervisor) is gone, the kernel has killed everything in it.
    """
    by_uid = uid is not None and uid != os.getuid()
    keep = _untouchable()
    found = []
    for process in psutil.process_iter(["pid", "uids", "cmdline", "status", "create_time"]):
        info = process.info
        if info["pid"] in keep or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        belongs = run_id in " ".join(info["cmdline"] or ())
        if not belongs and pgid is not None:
            with contextlib.suppress(OSError):
                belongs = os.getpgid(info["pid"]) == pgid
        if not belongs and by_uid and info["uids"] is not None:
            belongs = info["uids"].real == uid and (info["create_time"] or 0) >= since - 1.0
        if belongs:
            found.append(process)
    return found


def _elapsed(run: RunRecord, measured: float) -> float:
    finished = next((r for r in run.supervisor if r.get("event") == "finished"), None)
    if finished is not None and isinstance(finished.get("elapsed_s"), int | float):
        return float(finished["elapsed_s"])
    return round(measured, 4)


def _protections(caps: SandboxCapabilities, run: RunRecord) -> list[str]:
    active = ["process_group_kill", "scrubbed_env", "stdin_devnull", "output_cap", "wall_clock"]
    if run.check is not None:
        active.append("separate_checker")
    if caps.uid_drop or (caps.user_namespace and caps.no_capabilities):
        active.append("unprivileged")
    for name in ("uid_drop", "user_namespace", "no_capabilities", "net_namespace",
                 "pid_namespace", "mount_namespace"):
        if getattr(caps, name):
            active.append(name)
    active += [name.lower() for name in caps.rlimits]
    if sys.platform.startswith("linux"):
        active.append("no_new_privs")
    finished = next((r for r in run.supervisor if r.get("event") == "finished"), {})
    active += [str(p) for p in finished.get("protections", [])]
    return active


def _missing(caps: SandboxCapabilities, run: RunRecord) -> dict[str, str]:
    """What the run lacked: what the machine cannot give, and what the supervisor could not set up
    (only in a weak run: otherwise that ended the run as sandbox_error)."""
    finished = next((r for r in run.supervisor if r.get("event") == "finished"), {})
    found = finished.get("missing")
    return {**caps.missing, **(found if isinstance(found, dict) else {})}


def _sandbox_error(run: RunRecord, caps: SandboxCapabilities, reason: str) -> SandboxResult:
    return SandboxResult(
        verdict=Verdict.SANDBOX_ERROR,
        reason=reason,
        interpreter=caps.interpreter,
        run_as_uid=run.uid,
        run_id=run.run_id,
        missing_protections=caps.missing,
    )
