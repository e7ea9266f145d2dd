"""Turn what one sandboxed run reported into a verdict (`decide`).

Two reports count, both written where the program cannot write: the trusted checker's (did the
tests run to their end, and if not, why) and the supervisor's (did the sandbox come up, did the
wall clock fire, how did the program's process end). `passed` needs the checker's `ok`: the
program cannot produce it by exiting, writing to its descriptors or patching its interpreter. A
run whose sandbox could not be set up is `sandbox_error`, never a pass or a fail.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from localroute.evaluation.sandbox.models import SandboxResult, Verdict

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
    check: dict[str, Any] | None = None
    checker_killed: bool = False


def decide(run: RunRecord, stderr: str, checker_stderr: str = "") -> SandboxResult:
    """Map what the supervisor and the checker reported to a verdict."""

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
    check = run.check or {}
    outcome = check.get("outcome")
    error_type = str(check["type"]) if check.get("type") else None
    detail = ": ".join(str(p) for p in (error_type, check.get("message"), check.get("where")) if p)
    if outcome == "ok":
        late = " (then it had to be stopped)" if finished.get("timed_out") else ""
        return verdict(Verdict.PASSED, f"the tests ran to their end{late}",
                       exit_code=max(int(finished["returncode"]), 0) if not late else None)
    if outcome in ("assertion", "error", "load_error"):
        if error_type == "AssertionError":
            return verdict(Verdict.FAILED, detail, error_type=error_type)
        if error_type == "MemoryError":
            return verdict(Verdict.MEMORY_ERROR, detail, error_type=error_type)
        return verdict(Verdict.RUNTIME_ERROR, detail, error_type=error_type)
    if outcome == "unsupported_argument":
        return verdict(Verdict.SANDBOX_ERROR, f"the grader cannot carry this test: {detail}")
    if outcome == "no_runner" and not finished.get("timed_out"):
        return verdict(
            Verdict.SANDBOX_ERROR,
            f"the interpreter did not start the runner (status {finished['returncode']}): "
            f"{_tail(stderr) or 'no message'}",
        )
    if outcome == "protocol":
        return verdict(
            Verdict.RUNTIME_ERROR,
            f"the program wrote something other than answers to the checker: {detail}",
        )
    if outcome is None and not run.checker_killed and not finished.get("timed_out"):
        return verdict(
            Verdict.SANDBOX_ERROR,
            f"the checker ended without a report: {_tail(checker_stderr) or 'no message'}",
        )
    return _ending(finished, stderr)


def _ending(finished: dict[str, Any], stderr: str) -> SandboxResult:
    """The program went away before its tests finished: say how, from the supervisor's report."""
    returncode = int(finished["returncode"])
    exit_code = returncode if returncode >= 0 else None
    sig = _signal_name(-returncode) if returncode < 0 else None
    memory_hint = any(marker in stderr for marker in _MEMORY_MARKERS)
    if finished.get("timed_out"):
        return SandboxResult(verdict=Verdict.TIMEOUT, reason="wall-clock limit reached",
                             signal=sig, exit_code=exit_code)
    if sig == "SIGXCPU":
        return SandboxResult(verdict=Verdict.TIMEOUT, reason="CPU-time limit reached (SIGXCPU)",
                             signal=sig)
    if memory_hint:
        how = f"killed by {sig}" if sig else "exited"
        return SandboxResult(verdict=Verdict.MEMORY_ERROR, reason=f"{how} out of memory",
                             signal=sig, exit_code=exit_code)
    if sig is not None:
        return SandboxResult(verdict=Verdict.RUNTIME_ERROR, reason=f"killed by {sig}", signal=sig)
    return SandboxResult(
        verdict=Verdict.RUNTIME_ERROR,
        reason=f"exited with status {returncode} before its tests finished",
        exit_code=exit_code,
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(text: str, size: int = 400) -> str:
    return " ".join(text.strip()[-size:].split())
