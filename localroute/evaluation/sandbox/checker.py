"""The trusted side of a graded run: runs the tests, calling the sandboxed program for its answers.

Started by `sandbox.run_program` outside the sandbox, as the grader's user, never inside it. The
tests (dataset code, trusted) run here with the entry point bound to a stand-in that sends each
call's arguments to the program (`sandbox/runner.py`) as plain data and returns the plain data it
answers (`sandbox/codec`). The program cannot reach this process: it holds no descriptor of it,
cannot see it (own PID namespace) or trace it (another uid, or no capabilities; and this process
makes itself non-dumpable), so the only thing it can influence is the values the tests compare.

The outcome goes to REPORT_FD, a pipe only the grader reads: `ok` only when the tests' code ran
to its end with every call answered; a program that exits, dies, hangs or talks nonsense leaves
the tests unfinished, whatever the tests catch (the stand-in's failures are BaseExceptions, and
sticky). Spec (JSON on stdin): tests, setup (the prompt; run first when it is Python, for the
helpers some tests use), entry_point (None: only wait for the program to load), fds, reply cap.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import ctypes
import json
import os
import sys
import traceback
from typing import IO, Any, NoReturn

from localroute.evaluation.sandbox import codec as codec

_PR_SET_DUMPABLE = 4
TESTS_FILE = "<tests>"


class ProgramGone(BaseException):
    """The program ended (or closed its side) before answering; the tests cannot finish."""


class ProtocolBroken(BaseException):
    """The program wrote something that is not an answer."""


class ArgumentUnsupported(BaseException):
    """The tests passed an argument that is not plain data: the grader cannot carry it."""


class CandidateError(Exception):
    """The program raised an exception that is not a builtin one."""


class Channel:
    """Calls into the program: one request line out, one reply line back."""

    def __init__(self, requests: IO[bytes], replies: IO[bytes], cap: int) -> None:
        self.requests, self.replies, self.cap = requests, replies, cap
        self.calls = 0
        self.broken: BaseException | None = None  # sticky: tests may catch what the stand-in raises

    def receive(self) -> dict[str, Any]:
        try:
            line = self.replies.readline(self.cap + 1)
        except OSError as exc:
            self._fail(ProgramGone(f"reading its answer: {exc}"))
        if not line:
            self._fail(ProgramGone("the program ended before answering"))
        if len(line) > self.cap or not line.endswith(b"\n"):
            self._fail(ProtocolBroken(f"an answer longer than {self.cap} bytes"))
        try:
            return codec.parse(line)
        except (ValueError, RecursionError) as exc:
            self._fail(ProtocolBroken(f"an answer that is not a protocol message ({exc})"))

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.broken is not None:
            raise self.broken
        try:
            request = codec.message(
                {"call": name, "args": codec.encode(list(args)),
                 "kwargs": codec.encode([[k, v] for k, v in kwargs.items()])}
            )
        except codec.Unencodable as exc:
            self._fail(ArgumentUnsupported(f"an argument of {name}() is not plain data: {exc}"))
        try:
            self.requests.write(request)
            self.requests.flush()
        except OSError as exc:
            self._fail(ProgramGone(f"sending the call: {exc}"))
        self.calls += 1
        reply = self.receive()
        if "return" in reply:
            try:
                return codec.decode(reply["return"])
            except (ValueError, TypeError, RecursionError) as exc:
                self._fail(ProtocolBroken(f"a malformed return value ({exc})"))
        if "raise" in reply and isinstance(reply["raise"], dict):
            raise _candidate_exception(reply["raise"])
        if "unsupported" in reply:
            raise CandidateError(
                f"{name}() returned something that is not plain data ({reply['unsupported']}); "
                "return None, bool, numbers, str, bytes, or lists, tuples, sets and dicts of them"
            )
        self._fail(ProtocolBroken(f"an answer with unknown keys {sorted(reply)[:5]}"))

    def _fail(self, error: BaseException) -> NoReturn:
        self.broken = error
        raise error


def _candidate_exception(raised: dict[str, Any]) -> Exception:
    """The program's exception as the builtin type of that name (so `except ValueError` in the
    tests works), else a CandidateError; `candidate_type` keeps the name it gave."""
    type_name, message = str(raised.get("type"))[:100], str(raised.get("message", ""))[:1000]
    kind = getattr(builtins, type_name, None)
    error: Exception
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            error = kind(message)
        except Exception:
            error = CandidateError(f"{type_name}: {message}")
    else:
        error = CandidateError(f"{type_name}: {message}")
    error.candidate_type = type_name  # type: ignore[attr-defined]
    return error


def _stand_in(channel: Channel, name: str) -> Any:
    def candidate(*args: Any, **kwargs: Any) -> Any:
        return channel.call(name, args, kwargs)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def _where(exc: BaseException, tests: str) -> str:
    """`tests line N: <source>` of the innermost frame in the tests, if any."""
    lines = tests.splitlines()
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == TESTS_FILE and frame.lineno and frame.lineno <= len(lines):
            found = f"tests line {frame.lineno}: {lines[frame.lineno - 1].strip()[:200]}"
    return found


def run_checks(channel: Channel, spec: dict[str, Any]) -> dict[str, Any]:
    """Wait for the program to load, run the tests; the outcome record for the grader."""
    try:
        hello = channel.receive()
        if "hello" not in hello:
            raise ProtocolBroken("the first message is not the runner's hello")
    except ProgramGone:
        return {"outcome": "no_runner"}
    except ProtocolBroken as exc:
        return {"outcome": "protocol", "message": str(exc)}
    try:
        loaded = channel.receive()
    except ProgramGone as exc:
        return {"outcome": "gone", "stage": "load", "message": str(exc)}
    except ProtocolBroken as exc:
        return {"outcome": "protocol", "message": str(exc)}
    if "load_error" in loaded and isinstance(loaded["load_error"], dict):
        error = loaded["load_error"]
        return {"outcome": "load_error", "type": str(error.get("type"))[:100],
                "message": str(error.get("message", ""))[:1000]}
    if "ready" not in loaded:
        return {"outcome": "protocol", "message": "the program did not say it was ready"}
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    setup = str(spec.get("setup") or "")
    notes = []
    if setup and _is_python(setup):
        try:
            exec(compile(setup, "<setup>", "exec"), namespace)
        except Exception as exc:  # helpers only: the tests show whether they were needed
            notes.append(f"the prompt did not run: {type(exc).__name__}: {exc}")
    entry_point = spec.get("entry_point")
    if entry_point:
        namespace[entry_point] = _stand_in(channel, entry_point)
    tests = str(spec.get("tests") or "")
    record: dict[str, Any] = {"outcome": "ok"}
    try:
        exec(compile(tests, TESTS_FILE, "exec"), namespace)
    except (ProgramGone, ProtocolBroken, ArgumentUnsupported):
        pass  # recorded on the channel, below
    except AssertionError as exc:
        record = {"outcome": "assertion", "type": "AssertionError", "message": str(exc)[:1000]}
        record["where"] = _where(exc, tests)
    except BaseException as exc:
        kind = getattr(exc, "candidate_type", type(exc).__name__)
        record = {"outcome": "error", "type": kind, "message": str(exc)[:1000],
                  "where": _where(exc, tests), "raised_by_program": hasattr(exc, "candidate_type")}
    if channel.broken is not None:  # whatever the tests caught, they did not finish
        kinds = {ProgramGone: "gone", ProtocolBroken: "protocol",
                 ArgumentUnsupported: "unsupported_argument"}
        record = {"outcome": kinds[type(channel.broken)], "stage": "call",
                  "message": str(channel.broken)}
    record["calls"] = channel.calls
    if notes:
        record["notes"] = notes
    return record


def _is_python(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def main() -> None:
    if sys.platform.startswith("linux"):
        # Non-dumpable: a process of the same uid cannot open /proc/<this>/fd or trace it.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    spec = json.loads(sys.stdin.read())
    requests = os.fdopen(int(spec["request_fd"]), "wb")
    replies = os.fdopen(int(spec["reply_fd"]), "rb")
    record = run_checks(Channel(requests, replies, int(spec["reply_cap"])), spec)
    for stream in (requests, replies):  # EOF on the requests: the program's runner exits
        with contextlib.suppress(OSError):
            stream.close()
    with contextlib.suppress(OSError):
        os.write(int(spec["report_fd"]), codec.message(record))
    os._exit(0)  # the tests may have left threads; the verdict is written


if __name__ == "__main__":
    main()
