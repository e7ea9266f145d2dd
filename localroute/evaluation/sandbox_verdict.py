"""Turn what one sandboxed run reported into a verdict (`decide`).

The supervisor reports whether the wall clock fired and how the program process ended; the
runner inside the program reports that it started and how the program's code ended. A run
whose sandbox could not be set up is `sandbox_error`, never a pass or a fail.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from localroute.evaluation.sandbox_models import SandboxResult, Verdict

# Exit codes of sandbox_runner.py (EXIT_CODES there).
_OUTCOME_CODES = {"ok": 0, "assertion": 1, "error": 2, "memory": 3, "exit": 4}
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "out of memory")


@dataclass
class RunRecord:
    """What the grader knows of one run, for the sweep and the verdict."""

    run_id: str
    uid: int | None
    pgid: int | None = None
    started_at: float = field(default_factory=time.time)
    pid_namespace: bool = False
    backstop_fired: bool = False
    returncode: int | None = None
    supervisor: list[dict[str, Any]] = field(default_factory=list)
    runner: list[dict[str, Any]] = field(default_factory=list)


def decide(run: RunRecord, stderr: str) -> SandboxResult:
    """Map what the supervisor and the runner reported to a verdict."""

    def verdict(kind: Verdict, reason: str, **extra: Any) -> SandboxResult:
        return SandboxResult(verdict=kind, reason=reason, **extra)

    setup = next((r for r in run.supervisor if r.get("event") == "setup_error"), None)
    if setup is not None:
        return verdict(Verdict.SANDBOX_ERROR, f"sandbox setup failed: {setup.get('reason')}")
    finished = next((r for r in run.supervisor if r.get("event") == "finished"), None)
    if finished is None:
        started = any(r.get("event") == "started" for r in run.supervisor)
        if run.backstop_fired and started:
            return verdict(
                Verdict.TIMEOUT, "the program outlived the wall clock and its supervisor"
            )
        return verdict(
            Verdict.SANDBOX_ERROR,
            f"the sandbox ended without a report (exit status {run.returncode}): "
            f"{_tail(stderr) or 'no message'}",
        )
    returncode = int(finished["returncode"])
    exit_code = returncode if returncode >= 0 else None
    sig = _signal_name(-returncode) if returncode < 0 else None
    if finished.get("timed_out"):
        return verdict(Verdict.TIMEOUT, "wall-clock limit reached", signal=sig, exit_code=exit_code)
    if not any(r.get("event") == "started" for r in run.runner):
        return verdict(
            Verdict.SANDBOX_ERROR,
            f"the interpreter did not start the runner (status {returncode}): "
            f"{_tail(stderr) or 'no message'}",
            exit_code=exit_code,
            signal=sig,
        )
    record = next((r for r in reversed(run.runner) if r.get("event") == "finished"), None)
    memory_hint = any(marker in stderr for marker in _MEMORY_MARKERS)
    if sig is not None:
        if sig == "SIGXCPU":
            return verdict(Verdict.TIMEOUT, "CPU-time limit reached (SIGXCPU)", signal=sig)
        if memory_hint or (record is not None and record.get("outcome") == "memory"):
            return verdict(Verdict.MEMORY_ERROR, f"killed by {sig} out of memory", signal=sig)
        return verdict(Verdict.RUNTIME_ERROR, f"killed by {sig}", signal=sig)
    if record is None or _OUTCOME_CODES.get(str(record.get("outcome"))) != returncode:
        if memory_hint:
            return verdict(
                Verdict.MEMORY_ERROR, "the interpreter ran out of memory", exit_code=exit_code
            )
        return verdict(
            Verdict.RUNTIME_ERROR,
            f"exited with status {returncode} before its tests finished",
            exit_code=exit_code,
        )
    outcome, error_type = record.get("outcome"), record.get("type")
    detail = f"{error_type}: {record.get('message') or ''}".rstrip(": ")
    if outcome == "ok":
        return verdict(Verdict.PASSED, "the program and its tests ran to the end", exit_code=0)
    if outcome == "assertion":
        return verdict(Verdict.FAILED, detail, exit_code=exit_code, error_type=error_type)
    if outcome == "memory":
        return verdict(
            Verdict.MEMORY_ERROR, "MemoryError", exit_code=exit_code, error_type="MemoryError"
        )
    return verdict(Verdict.RUNTIME_ERROR, detail, exit_code=exit_code, error_type=error_type)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(text: str, size: int = 400) -> str:
    return " ".join(text.strip()[-size:].split())
