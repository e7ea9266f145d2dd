"""Schemas of the code sandbox: its limits (`SandboxConfig`), one run's outcome (`SandboxResult`).

Kept apart from `sandbox.py` so the capability probe and the grader can import them without
pulling in the process machinery.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Verdict(StrEnum):
    """How a sandboxed program ended. `sandbox_error` is never a pass or a fail of the program."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    RUNTIME_ERROR = "runtime_error"
    MEMORY_ERROR = "memory_error"
    SANDBOX_ERROR = "sandbox_error"


class SandboxConfig(BaseModel):
    """Limits for one sandboxed program. Every limit is per run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=10.0, gt=0, le=3600, description="wall-clock limit")
    cpu_s: int | None = Field(
        default=None,
        ge=1,
        le=3600,
        description="CPU-time limit (RLIMIT_CPU); default: timeout_s rounded up",
    )
    memory_mb: int = Field(default=1024, ge=64, description="address-space limit (RLIMIT_AS)")
    max_procs: int = Field(
        default=64, ge=1, description="processes+threads of the sandbox user (RLIMIT_NPROC)"
    )
    max_file_mb: int = Field(default=16, ge=1, description="largest file the program may write")
    max_open_files: int = Field(
        default=64, ge=8, description="open file descriptors (RLIMIT_NOFILE)"
    )
    max_output_bytes: int = Field(
        default=64 * 1024, ge=1024, description="kept of stdout and of stderr"
    )
    network: bool = Field(
        default=False, description="allow network; False puts the run in its own netns"
    )
    drop_privileges: bool | None = Field(
        default=None, description="run as run_as_uid; None means: when the grader runs as root"
    )
    run_as_uid: int = Field(default=65534, ge=1, description="unprivileged uid (65534 = nobody)")
    run_as_gid: int = Field(default=65534, ge=1, description="unprivileged gid (65534 = nogroup)")
    interpreter: str | None = Field(
        default=None,
        description="python for the program; default: first one the sandbox user can run",
    )
    namespaces: bool = Field(
        default=True,
        description="network/PID/mount namespaces where unshare allows; False: the fallback",
    )
    private_tmp_mb: int = Field(
        default=64, ge=1, description="size of each private tmpfs over a world-writable directory"
    )
    allow_weak: bool = Field(
        default=False,
        description="run even where part of the isolation cannot be set up (the missing "
        "protections are recorded); False: such a run is sandbox_error",
    )

    @model_validator(mode="after")
    def _cpu_within_wall(self) -> SandboxConfig:
        if self.cpu_s is not None and self.cpu_s > self.timeout_s + 60:
            raise ValueError(
                f"cpu_s={self.cpu_s} is far above timeout_s={self.timeout_s}; the wall clock would "
                "always fire first. Lower cpu_s or leave it unset."
            )
        return self

    @property
    def effective_cpu_s(self) -> int:
        if self.cpu_s is not None:
            return self.cpu_s
        whole = int(self.timeout_s)
        return whole if whole == self.timeout_s else whole + 1


class CheckSpec(BaseModel):
    """What the trusted checker runs against a program: tests calling `entry_point`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tests: str = Field(description="trusted test code; runs outside the sandbox")
    entry_point: str | None = Field(
        default=None, description="the program's function the tests call; None: no calls"
    )
    setup: str = Field(
        default="", description="trusted code run before the tests when it is Python (the "
        "prompt: helpers some tests use)"
    )


class SandboxResult(BaseModel):
    """One program's run: its verdict, why, what it printed (capped) and what protected the run."""

    verdict: Verdict
    reason: str = Field(description="one line saying why this verdict")
    exit_code: int | None = Field(default=None, description="program's exit status when it exited")
    signal: str | None = Field(
        default=None, description="signal that killed the program, e.g. SIGXCPU"
    )
    error_type: str | None = Field(
        default=None, description="exception class the program ended with"
    )
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    elapsed_s: float = 0.0
    protections: list[str] = Field(default_factory=list)
    missing_protections: dict[str, str] = Field(
        default_factory=dict, description="protections this run lacked, and why (weak runs)"
    )
    interpreter: str | None = None
    run_as_uid: int | None = None
    run_id: str = ""
    cleanup_ok: bool = Field(
        default=True, description="no process of the run was left after cleanup"
    )
