"""What isolation this machine allows the code sandbox, found by quick probes at run time (cached).

`capabilities()` is what a run manifest records: which protections a sandboxed run gets here, and
which it would lack (`missing`, with why). Namespaces come from util-linux `unshare` (as root
directly; otherwise inside a user namespace, where util-linux `setpriv` then drops every
capability), the uid drop needs root, and the interpreter must run in the sandbox: executable by
the sandbox user (a venv under a 0700 home is not, for `nobody`) and outside what it hides.

Unless `SandboxConfig.allow_weak`, a missing protection is an `error`: every run is then
`sandbox_error` naming it, rather than grading with less isolation than documented.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from pydantic import BaseModel, Field

from localroute.evaluation.sandbox.models import SandboxConfig
from localroute.evaluation.sandbox.mounts import PROTECTION, under
from localroute.evaluation.sandbox.paths import mask_plan
from localroute.evaluation.sandbox.supervisor import SETPRIV_DROP

_PROBE_TIMEOUT_S = 10.0
_MIN_VERSION = (3, 8)
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_VERSION_PROBE = (
    "import os, sys; print('%d.%d' % sys.version_info[:2]); "
    "print('\\n'.join({os.path.realpath(p) for p in "
    "(sys.executable, sys.prefix, sys.base_prefix)}))"
)
RLIMITS = (
    "RLIMIT_CPU",
    "RLIMIT_AS",
    "RLIMIT_NPROC",
    "RLIMIT_FSIZE",
    "RLIMIT_NOFILE",
    "RLIMIT_CORE",
)
WEAK_HINT = (
    "pass --allow-weak-sandbox (SandboxConfig.allow_weak) to grade anyway with these protections "
    "missing"
)


def required(config: SandboxConfig) -> list[str]:
    """Protections a run must have unless weak runs are allowed."""
    names = ["unprivileged", "no_new_privs", "pid_namespace", "mount_namespace"]
    if not config.network:
        names.append("net_namespace")
    return [*names, "read_only_root", *PROTECTION.values()]


class SandboxCapabilities(BaseModel):
    """Protections a sandboxed run gets on this machine with a given config."""

    platform: str
    is_root: bool
    unshare: str | None = Field(default=None, description="path of util-linux unshare, if found")
    unshare_flags: list[str] = Field(default_factory=list, description="flags each run will use")
    setpriv: str | None = Field(default=None, description="path of util-linux setpriv, if found")
    user_namespace: bool = False
    net_namespace: bool = False
    pid_namespace: bool = False
    mount_namespace: bool = False
    uid_drop: bool = False
    no_capabilities: bool = Field(
        default=False, description="user namespace: the program runs with every capability dropped"
    )
    run_as_uid: int | None = None
    interpreter: str | None = None
    interpreter_version: str | None = None
    rlimits: list[str] = Field(default_factory=list)
    masks: list[tuple[str, str]] = Field(
        default_factory=list, description="paths covered by a tmpfs in each run, and how"
    )
    allow_weak: bool = False
    missing: dict[str, str] = Field(
        default_factory=dict, description="required protections this machine cannot give, and why"
    )
    error: str | None = Field(default=None, description="why no run can be sandboxed, if so")
    notes: list[str] = Field(default_factory=list)


def capabilities(config: SandboxConfig | None = None) -> SandboxCapabilities:
    """Probe (once per distinct setting) what the sandbox can enforce here."""
    cfg = config or SandboxConfig()
    masks = tuple(mask_plan()) if cfg.namespaces and sys.platform.startswith("linux") else ()
    caps = _probe(
        cfg.network,
        cfg.namespaces,
        cfg.drop_privileges,
        cfg.run_as_uid,
        cfg.run_as_gid,
        cfg.interpreter,
        masks,
        os.environ.get("PATH", ""),
    ).model_copy(deep=True)
    caps.allow_weak = cfg.allow_weak
    caps.missing = _missing(caps, cfg)
    if caps.error is None and caps.missing and not cfg.allow_weak:
        caps.error = (
            f"the sandbox cannot fully isolate graded code here, missing "
            f"{describe_missing(caps.missing)}; {WEAK_HINT}"
        )
    return caps


def describe_missing(missing: dict[str, str]) -> str:
    """One line for a person: each missing protection and why."""
    return "; ".join(f"{name} ({why})" for name, why in missing.items())


def _missing(caps: SandboxCapabilities, cfg: SandboxConfig) -> dict[str, str]:
    if not sys.platform.startswith("linux"):
        return {name: f"not available on {sys.platform}" for name in required(cfg)}
    namespace_why = next((n for n in caps.notes if "unshare" in n), "no namespace")
    have = {
        "unprivileged": caps.uid_drop or (caps.user_namespace and caps.no_capabilities),
        "no_new_privs": True,
        "pid_namespace": caps.pid_namespace,
        "mount_namespace": caps.mount_namespace,
        "net_namespace": caps.net_namespace,
    }
    missing = {}
    for name in required(cfg):
        if have.get(name, caps.mount_namespace):  # the file-system view needs the mount namespace
            continue
        if name == "unprivileged":
            missing[name] = _why_privileged(caps, cfg)
        elif name in have:
            missing[name] = namespace_why
        else:
            missing[name] = "no mount namespace to set it up in"
    return missing


def _why_privileged(caps: SandboxCapabilities, cfg: SandboxConfig) -> str:
    if caps.is_root:
        return "drop_privileges=False: the program would run as root"
    if caps.user_namespace:
        why = next((n for n in caps.notes if n.startswith("setpriv")), "util-linux setpriv not "
                   "found")
        return f"{why}: the program would keep every capability of its user namespace"
    return "no user namespace: the program would run with your uid and see your files"


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
    masks: tuple[tuple[str, str], ...],
    path_env: str,
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
    linux = sys.platform.startswith("linux")
    caps.unshare = shutil.which("unshare", path=path_env) if linux else None
    caps.setpriv = shutil.which("setpriv", path=path_env) if linux else None
    if not namespaces:
        caps.notes.append("unshare not used: namespaces turned off by config")
    elif caps.unshare:
        _probe_namespaces(caps, network)
    else:
        caps.notes.append("unshare (util-linux) not found on PATH")
    if drop and not is_root:
        caps.error = "drop_privileges=True needs root; run as root or leave drop_privileges unset"
        return caps
    caps.uid_drop = drop
    caps.run_as_uid = uid if drop else None
    caps.masks = list(masks) if caps.mount_namespace else []
    _probe_interpreter(caps, interpreter, (uid, gid) if drop else None)
    return caps


def _probe_namespaces(caps: SandboxCapabilities, network: bool) -> None:
    assert caps.unshare is not None
    prefix = [] if caps.is_root else ["--user", "--map-root-user"]
    pid_flags = ["--pid", "--fork", "--mount-proc", "--kill-child"]
    net_flags = [] if network else ["--net"]
    first_refusal = ""
    # Most protective first; a container may allow some namespaces and refuse others.
    for flags in (net_flags + pid_flags, pid_flags, net_flags):
        if not flags:
            continue
        ok, message = _runs([caps.unshare, *prefix, *flags, "--", "true"])
        if ok:
            caps.unshare_flags = [*prefix, *flags]
            caps.user_namespace = bool(prefix)
            caps.net_namespace = "--net" in flags
            caps.pid_namespace = "--pid" in flags
            caps.mount_namespace = "--mount-proc" in flags
            break
        first_refusal = first_refusal or message
    if first_refusal:
        caps.notes.append(f"unshare {' '.join(prefix + net_flags + pid_flags)} refused: "
                          f"{first_refusal}")
    if not network and not caps.net_namespace:
        caps.notes.append("network=False but no network namespace: programs can reach the network")
    if caps.user_namespace and caps.setpriv:
        # Root of the user namespace must lose every capability before the program runs.
        drop = [caps.setpriv, *SETPRIV_DROP, "--", "true"]
        ok, message = _runs([caps.unshare, *caps.unshare_flags, "--", *drop])
        caps.no_capabilities = ok
        if not ok:
            caps.notes.append(f"setpriv {' '.join(SETPRIV_DROP)} refused: {message}")


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
        version, why = _try_interpreter(candidate, as_user, [path for path, _ in caps.masks])
        if version is not None:
            caps.interpreter, caps.interpreter_version = candidate, version
            return
        refusals.append(f"{candidate}: {why}")
    who = f"uid {as_user[0]}" if as_user else "this user"
    caps.error = (
        f"no Python interpreter that {who} can execute in the sandbox ({'; '.join(refusals)}). "
        "Install a system python3 (e.g. apt-get install python3) or set SandboxConfig.interpreter"
    )


def _try_interpreter(
    path: str, as_user: tuple[int, int] | None, hidden: list[str]
) -> tuple[str | None, str]:
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
    version, *homes = done.stdout.strip().splitlines() or [""]
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None, f"printed {version!r} instead of its version"
    if (int(major), int(minor)) < _MIN_VERSION:
        return None, f"Python {version} is older than 3.8"
    for place in [os.path.realpath(path), *homes]:
        mask = next((m for m in hidden if under(place, m)), None)
        if mask is not None:
            return None, f"{place} is under {mask}, which the sandbox hides"
    return version, ""


def _runs(command: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            env=_CLEAN_ENV,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    return done.returncode == 0, " ".join(done.stderr.split())[-300:]
