"""Run a model server so that it never outlives the localroute process that started it.

    python -m localroute.backends.guardian --parent PID -- COMMAND [ARG ...]

On Linux the guardian asks the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG),
checks the parent is still the one it was started by (it may have died before the request), then
becomes the server (exec): even a SIGKILLed localroute takes its servers with it. Elsewhere
(macOS has no parent-death signal) the guardian stays as the server's parent, in the same process
group, and polls its own parent: when it changes (localroute died and the guardian was reparented)
it stops the server, SIGTERM then SIGKILL, and exits. A SIGTERM to the guardian is passed on.

This module imports nothing of localroute: it starts in a fresh interpreter for every server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
# Forces the portable (polling) guardian on Linux too, so the tests cover the macOS path.
POLL_ENV = "LOCALROUTE_GUARDIAN_POLL"
POLL_S = 0.5
GRACE_S = 10.0


def _die_with_parent_linux(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(1)


def _watch(parent: int, command: list[str]) -> int:
    """Stay the server's parent; stop it when our parent goes away."""
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while child.poll() is None:
        if os.getppid() != parent:
            child.terminate()
            try:
                child.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
            break
        time.sleep(POLL_S)
    return child.wait()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "--parent" or argv[2] != "--":
        print("usage: python -m localroute.backends.guardian --parent PID -- COMMAND [ARG ...]",
              file=sys.stderr)
        return 2
    parent, command = int(argv[1]), argv[3:]
    if sys.platform.startswith("linux") and not os.environ.get(POLL_ENV):
        _die_with_parent_linux(parent)
        os.execvp(command[0], command)  # never returns
    return _watch(parent, command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
