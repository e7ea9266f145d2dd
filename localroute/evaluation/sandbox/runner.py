"""Runs inside the sandbox, in the program's own process: loads program.py, then answers calls.

Nothing this process says is trusted: the program can patch anything in it (`os._exit`,
`json.dumps`, builtins) and write anything to its descriptors. So it reports no verdict. It only
answers the trusted checker (`sandbox/checker.py`, outside the sandbox) over two pipes with plain
data (`sandbox/codec`): "hello" before the program runs, then "ready" or "load_error", then one
reply per call: the return value, or the type name and message of the exception raised. The
checker runs the tests and decides; a lying program can only give wrong answers.

The supervisor hands this file's text to the interpreter with `-c`, and the codec's text as the
first argument, because the sandbox user may not be able to read the package (it may live under
a hidden home). So it uses the standard library only and stays valid on Python >= 3.8.

argv (after -c): CODEC_SOURCE REQUEST_FD REPLY_FD PROGRAM_PATH RUN_ID. Processes the program
forks run this same code after their fork; only the original process speaks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

_CALL_MESSAGE_CAP = 64 * 1024 * 1024
# Built before the program runs: after a MemoryError there may be no memory to build them.
_MEMORY_LOAD = b'{"load_error": {"type": "MemoryError", "message": "out of memory"}}\n'
_MEMORY_RAISE = b'{"raise": {"type": "MemoryError", "message": "out of memory"}}\n'


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:  # the checker is gone (or the program closed the fd): nothing to tell
            return
        view = view[written:]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a program may close or break its own streams
            stream.flush()


def _error(exc: BaseException, skip_frames: int) -> dict[str, str]:
    """Type name and message of an exception; its traceback goes to stderr for a person."""
    try:
        tb = exc.__traceback__
        for _ in range(skip_frames):
            tb = tb.tb_next if tb is not None else None
        traceback.print_exception(type(exc), exc, tb)
        return {"type": type(exc).__name__, "message": str(exc)[:1000]}
    except Exception:
        return {"type": "Exception", "message": "(the exception could not be described)"}


def _answer(codec: dict[str, Any], namespace: dict[str, Any], request: dict[str, Any]) -> bytes:
    message: Callable[[dict[str, Any]], bytes] = codec["message"]
    name = request["call"]
    if name not in namespace:
        return message({"raise": {"type": "NameError", "message": f"{name!r} is not defined"}})
    function = namespace[name]
    args = codec["decode"](request["args"])
    kwargs = dict(codec["decode"](request["kwargs"]))
    try:
        value = function(*args, **kwargs)
    except MemoryError:
        return _MEMORY_RAISE
    except BaseException as exc:  # SystemExit too: a call that exits is an error of the call
        return message({"raise": _error(exc, 1)})
    try:
        return message({"return": codec["encode"](value)})
    except MemoryError:
        return _MEMORY_RAISE
    except Exception as exc:  # Unencodable, or a value whose own methods raise
        return message({"unsupported": f"{type(value).__name__}: {exc}"})


def main() -> None:
    codec: dict[str, Any] = {"__name__": "sandbox_codec"}
    exec(sys.argv[1], codec)
    request_fd, reply_fd, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    main_pid = os.getpid()
    _send(reply_fd, b'{"hello": 1}\n')
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    failure: bytes | None = None
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        exec(compile(source, path, "exec"), namespace)
    except MemoryError:
        failure = _MEMORY_LOAD
    except BaseException as exc:
        failure = bytes(codec["message"]({"load_error": _error(exc, 1)}))
    _flush()
    if os.getpid() != main_pid:
        os._exit(0)
    if failure is not None:
        namespace.clear()  # whatever a memory hog kept goes before anything else
        _send(reply_fd, failure)
        os._exit(0)
    _send(reply_fd, b'{"ready": 1}\n')
    requests = os.fdopen(request_fd, "rb")
    while True:
        line = requests.readline(_CALL_MESSAGE_CAP)
        if not line:
            break
        reply = _answer(codec, namespace, codec["parse"](line))
        _flush()
        if os.getpid() != main_pid:  # a fork inside the call: only the original replies
            os._exit(0)
        _send(reply_fd, reply)
    os._exit(0)


if __name__ == "__main__":
    main()
