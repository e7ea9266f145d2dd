"""Helpers of the sandbox tests: places the sandbox does not hide, and running the grader as a
user that is not root (through util-linux `setpriv`, the machine's tests run as root)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localroute.evaluation.sandbox.mounts import under
from localroute.evaluation.sandbox.paths import mask_plan
from tests.support.paths import REPO

# Ids of the suite's own: no account has them, so nothing else on the machine runs as them.
TEST_UID = TEST_GID = 60991


def visible_dir() -> Path:
    """A directory the sandbox leaves visible (read-only), where tests may put files: the
    repository's checkout unless it lies under a home or /tmp, else a system directory."""
    masks = [path for path, _ in mask_plan()]
    for candidate in (REPO, Path("/var/lib"), Path("/opt"), Path("/srv")):
        real = os.path.realpath(candidate)
        if os.access(real, os.W_OK) and not any(under(real, mask) for mask in masks):
            return Path(real)
    raise AssertionError(f"no writable directory outside the sandbox's masks {masks}")


@contextmanager
def scratch_in_view(prefix: str, owner: int | None = None) -> Iterator[Path]:
    """A fresh directory in `visible_dir()` (owned by `owner`), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f".sandbox-test-{prefix}-", dir=visible_dir()))
    try:
        os.chmod(folder, 0o755)
        if owner is not None:
            os.chown(folder, owner, owner)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def python_for(uid: int) -> list[str]:
    """A command running this interpreter's Python as `uid`: the venv's own binary when that
    user can execute it, else a system python3 of the same version (a venv made from a Python
    under /root cannot be executed by anyone else) with the venv's packages on its path.
    The grader starts its own interpreter again (supervisor, checker): the probe does too."""
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]
    version = "{}.{}".format(*sys.version_info[:2])
    again = ("import subprocess, sys; print(subprocess.run([sys.executable, '-c', "
             "'import sys; print(\"%d.%d\" % sys.version_info[:2])'], capture_output=True, "
             "text=True, check=True).stdout.strip())")
    for candidate in candidates:
        setpriv = shutil.which("setpriv") or "setpriv"  # absolute: callers may change PATH
        command = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                   candidate]
        probe = subprocess.run(
            [*command, "-c", again], capture_output=True, text=True, cwd="/", check=False
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return command
    raise AssertionError(f"no Python {version} that uid {uid} can execute among {candidates}")


def env_for(home: Path, state: Path) -> dict[str, str]:
    """The environment of a grader run as another user: its home and state dir, this package."""
    path = os.pathsep.join([str(REPO), *site.getsitepackages()])
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LOCALROUTE_STATE_DIR": str(state), "PYTHONPATH": path, "LANG": "C.UTF-8"}
