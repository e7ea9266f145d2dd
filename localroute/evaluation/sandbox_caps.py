"""What isolation this machine allows the code sandbox, found by quick probes at run time (cached).

`capabilities()` is what a run manifest records: which protections a sandboxed run gets here.
Namespaces come from util-linux `unshare` (as root directly; otherwise inside a user namespace),
the uid drop needs root, and the sandbox user must be able to execute the interpreter (a venv
under a 0700 home directory is not executable by `nobody`), which is checked by really spawning it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from pydantic import BaseModel, Field

from localroute.evaluation.sandbox_models import SandboxConfig

_PROBE_TIMEOUT_S = 10.0
_MIN_VERSION = (3, 8)
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"
RLIMITS = (
    "RLIMIT_CPU",
    "RLIMIT_AS",
    "RLIMIT_NPROC",
    "RLIMIT_FSIZE",
    "RLIMIT_NOFILE",
    "RLIMIT_CORE",
)


class SandboxCapabilities(BaseModel):
    """Protections a sandboxed run gets on this machine with a given config."""

    platform: str
    is_root: bool
    unshare: str | None = Field(default=None, description="path of util-linux unshare, if found")
    unshare_flags: list[str] = Field(default_factory=list, description="flags each run will use")
    user_namespace: bool = False
    net_namespace: bool = False
    pid_namespace: bool = False
    mount_namespace: bool = False
    uid_drop: bool = False
    run_as_uid: int | None = None
    interpreter: str | None = None
    interpreter_version: str | None = None
    rlimits: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, description="why no run can be sandboxed, if so")
    notes: list[str] = Field(default_factory=list)


def capabilities(config: SandboxConfig | None = None) -> SandboxCapabilities:
    """Probe (once per distinct setting) what the sandbox can enforce here."""
    cfg = config or SandboxConfig()
    return _probe(
        cfg.network,
        cfg.namespaces,
        cfg.drop_privileges,
        cfg.run_as_uid,
        cfg.run_as_gid,
        cfg.interpreter,
    )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@functools.lru_cache(maxsize=64)
def _probe(
    network: bool,
    namespaces: bool,
    drop_setting: bool | None,
    uid: int,
    gid: int,
    interpreter: str | None,
) -> SandboxCapabilities:
    is_root = _is_root()
    drop = drop_setting if drop_setting is not None else is_root
    caps = SandboxCapabilities(platform=sys.platform, is_root=is_root)
    try:
        import resource
    except ImportError:
        caps.notes.append("no resource module: rlimits are not enforced on this platform")
    else:
        caps.rlimits = [name for name in RLIMITS if hasattr(resource, name)]
    caps.unshare = shutil.which("unshare") if sys.platform.startswith("linux") else None
    if not namespaces:
        caps.notes.append("namespaces turned off by config: cleanup by process group and subreaper")
    elif caps.unshare:
        _probe_namespaces(caps, network)
    else:
        caps.notes.append(
            "no unshare: no PID, mount or network namespace; cleanup by process group"
        )
    if drop and not is_root:
        caps.error = "drop_privileges=True needs root; run as root or leave drop_privileges unset"
        return caps
    caps.uid_drop = drop
    caps.run_as_uid = uid if drop else None
    _probe_interpreter(caps, interpreter, (uid, gid) if drop else None)
    return caps


def _probe_namespaces(caps: SandboxCapabilities, network: bool) -> None:
    assert caps.unshare is not None
    prefix = [] if caps.is_root else ["--user", "--map-root-user"]
    pid_flags = ["--pid", "--fork", "--mount-proc", "--kill-child"]
    net_flags = [] if network else ["--net"]
    # Most protective first; a container may allow some namespaces and refuse others.
    for flags in (net_flags + pid_flags, pid_flags, net_flags):
        if flags and _runs([caps.unshare, *prefix, *flags, "--", "true"]):
            caps.unshare_flags = [*prefix, *flags]
            caps.user_namespace = bool(prefix)
            caps.net_namespace = "--net" in flags
            caps.pid_namespace = "--pid" in flags
            caps.mount_namespace = "--mount-proc" in flags
            break
    else:
        caps.notes.append("unshare is present but refused every namespace here")
    if not network and not caps.net_namespace:
        caps.notes.append("network=False but no network namespace: programs can reach the network")


def _probe_interpreter(
    caps: SandboxCapabilities, override: str | None, as_user: tuple[int, int] | None
) -> None:
    if override:
        candidates = [override]
    else:
        found = [
            os.path.realpath(sys.executable),
            "/usr/bin/python3",
            "/usr/local/bin/python3",
            shutil.which("python3", path=_CLEAN_ENV["PATH"]),
        ]
        candidates = list(dict.fromkeys(c for c in found if c))
    refusals = []
    for candidate in candidates:
        version, why = _try_interpreter(candidate, as_user)
        if version is not None:
            caps.interpreter, caps.interpreter_version = candidate, version
            return
        refusals.append(f"{candidate}: {why}")
    who = f"uid {as_user[0]}" if as_user else "this user"
    caps.error = (
        f"no Python interpreter that {who} can execute ({'; '.join(refusals)}). Install a system "
        "python3 (e.g. apt-get install python3) or set SandboxConfig.interpreter"
    )


def _try_interpreter(path: str, as_user: tuple[int, int] | None) -> tuple[str | None, str]:
    if not os.path.isfile(path):
        return None, "not found"
    try:
        done = subprocess.run(
            [path, "-I", "-c", _VERSION_PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            env=_CLEAN_ENV,
            cwd="/",
            stdin=subprocess.DEVNULL,
            check=False,
            user=as_user[0] if as_user else None,
            group=as_user[1] if as_user else None,
            extra_groups=[] if as_user else None,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot be started ({exc})"
    if done.returncode != 0:
        return None, f"exited {done.returncode}: {done.stderr.strip()[-200:]}"
    version = done.stdout.strip()
    major, _, minor = version.partition(".")
    if (int(major), int(minor)) < _MIN_VERSION:
        return None, f"Python {version} is older than 3.8"
    return version, ""


def _runs(command: list[str]) -> bool:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            env=_CLEAN_ENV,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0
