"""Runs inside the sandbox, as the unprivileged user: executes program.py, reports how it ended.

The supervisor hands this file's text to the interpreter with `-c` rather than a path because the
unprivileged user may not be able to read the package directory (e.g. a venv under /root). So it
uses the standard library only and stays valid on older Python 3 interpreters.

argv (after -c): STATUS_FD PROGRAM_PATH RUN_ID. On STATUS_FD it writes one JSON line when it
starts and one when the program ends, then exits with the outcome's code. Processes the program
forks run this same code after their fork; only the original process reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback

EXIT_CODES = {"ok": 0, "assertion": 1, "error": 2, "memory": 3, "exit": 4}
# Encoded before the program runs: after a MemoryError there may be no memory to build it.
_MEMORY_RECORD = b'{"event": "finished", "outcome": "memory", "type": "MemoryError"}\n'


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a program may close or break its own streams
            stream.flush()


def _write(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the program closed the fd: the grader sees no record
        os.write(fd, data)


def main() -> None:
    status_fd = int(sys.argv[1])
    path = sys.argv[2]
    main_pid = os.getpid()
    _write(status_fd, b'{"event": "started"}\n')
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    outcome = "ok"
    error_type = None
    message = ""
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        exec(compile(source, path, "exec"), namespace)
    except MemoryError:
        outcome = "memory"
    except AssertionError as exc:
        outcome, error_type = "assertion", type(exc).__name__
        message = _describe(exc)
    except SystemExit as exc:
        outcome, error_type = "exit", "SystemExit"
        message = f"program called exit({exc.code!r}) before its tests finished"
    except BaseException as exc:
        outcome, error_type = "error", type(exc).__name__
        message = _describe(exc)
    # Whatever the program kept in its globals (a memory hog's list) goes before reporting.
    namespace.clear()
    if os.getpid() != main_pid:
        _flush()
        os._exit(EXIT_CODES[outcome])
    if outcome == "memory":
        _write(2, b"MemoryError: the program ran out of its memory limit\n")
        _flush()
        _write(status_fd, _MEMORY_RECORD)
        os._exit(EXIT_CODES["memory"])
    record = {"event": "finished", "outcome": outcome, "type": error_type, "message": message}
    _flush()
    _write(status_fd, (json.dumps(record) + "\n").encode("utf-8", "replace"))
    os._exit(EXIT_CODES[outcome])


def _describe(exc: BaseException) -> str:
    """Print the traceback to stderr (for a person) and return a short message for the record."""
    try:
        # Skip the runner's own frame: the traceback starts in program.py.
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        traceback.print_exception(type(exc), exc, tb)
        return str(exc)[:1000]
    except Exception:
        return "(the exception could not be printed)"


if __name__ == "__main__":
    main()
