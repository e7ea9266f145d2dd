"""Pure units of the sandbox: the plain-data codec, the checker's channel and how reports map to
verdicts. In-memory streams stand in for the pipes here; the real processes are exercised in
test_sandbox.py and test_sandbox_escape.py."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest

from localroute.evaluation.sandbox import codec as codec
from localroute.evaluation.sandbox.checker import CandidateError, Channel, ProgramGone, run_checks
from localroute.evaluation.sandbox.models import Verdict
from localroute.evaluation.sandbox.verdict import RunRecord, decide

# --- the codec ---------------------------------------------------------------------------------

VALUES = [
    None, True, False, 0, -7, 2**70, -(10**5000), 1.5, -0.0, math.inf, "", "é\n\x00", b"\x00\xff",
    bytearray(b"ab"), 1 + 2j, [], [1, [2, [3]]], (), (1, "a", (None,)), set(), {1, 2},
    frozenset({"x"}), {}, {"a": 1, (1, 2): [3], 4: {5}}, {frozenset({1}): b"k"},
]


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ for v in VALUES])
def test_plain_data_crosses_unchanged(value: Any) -> None:
    line = codec.message({"return": codec.encode(value)})
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one message, one line
    back = codec.decode(codec.parse(line)["return"])
    assert back == value and type(back) is type(value)


def test_nan_crosses_as_nan() -> None:
    line = codec.message({"v": codec.encode(math.nan)})
    assert math.isnan(codec.decode(codec.parse(line)["v"]))


class Anything:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


@pytest.mark.parametrize(
    "value",
    [Anything(), (x for x in range(3)), print, object(), [Anything()], {"k": iter([])}],
    ids=["always_equal", "generator", "function", "object", "nested", "iterator"],
)
def test_anything_but_plain_data_is_refused(value: Any) -> None:
    with pytest.raises(codec.Unencodable):
        codec.encode(value)


def test_deep_nesting_is_refused() -> None:
    nested: list[Any] = []
    for _ in range(codec.MAX_DEPTH + 5):
        nested = [nested]
    with pytest.raises(codec.Unencodable, match="nested deeper"):
        codec.encode(nested)


@pytest.mark.parametrize(
    "tree",
    [{"x": []}, {"t": [], "s": []}, {"t": 1}, {"d": [[1]]}, {"s": [[1]]}, {"d": [[[1], 2]]},
     {"i": 5}, {"b": "zz"}],
)
def test_malformed_trees_are_refused(tree: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        codec.decode(tree)


# --- the checker's channel -----------------------------------------------------------------------


def channel(*replies: dict[str, Any], raw: bytes = b"") -> Channel:
    data = b"".join(codec.message(r) for r in replies) + raw
    return Channel(io.BytesIO(), io.BytesIO(data), cap=1024)


def checks(tests: str, *replies: dict[str, Any], raw: bytes = b"") -> dict[str, Any]:
    spec = {"tests": tests, "entry_point": "f"}
    return run_checks(channel({"hello": 1}, *replies, raw=raw), spec)


def test_tests_that_run_to_their_end_are_ok() -> None:
    record = checks("assert f(1) == 2\nassert f('a') == (1, 2)\n", {"ready": 1},
                    {"return": 2}, {"return": codec.encode((1, 2))})
    assert record == {"outcome": "ok", "calls": 2}


def test_a_program_gone_is_never_ok_even_when_the_tests_catch_everything() -> None:
    tests = (
        "try:\n    f(1)\nexcept Exception:\n    pass\n"
        "try:\n    f(2)\nexcept BaseException:\n    pass\n"
    )
    record = checks(tests, {"ready": 1})
    assert record["outcome"] == "gone" and record["calls"] == 1


def test_junk_on_the_channel_is_a_protocol_error() -> None:
    assert checks("f(1)\n", {"ready": 1}, raw=b"not json\n")["outcome"] == "protocol"
    assert checks("f(1)\n", {"ready": 1}, {"outcome": "ok"})["outcome"] == "protocol"
    assert checks("", {"event": "finished", "outcome": "ok"})["outcome"] == "protocol"
    assert checks("f(1)\n", {"ready": 1}, raw=b"[" * 2000 + b"\n")["outcome"] == "protocol"
    assert checks("f(1)\n", {"ready": 1}, raw=b"x" * 5000)["outcome"] == "protocol"  # over cap


def test_the_programs_exception_is_raised_in_the_tests_by_name() -> None:
    tests = "try:\n    f(0)\nexcept ValueError as exc:\n    assert str(exc) == 'no'\n"
    record = checks(tests, {"ready": 1}, {"raise": {"type": "ValueError", "message": "no"}})
    assert record == {"outcome": "ok", "calls": 1}
    record = checks("f(0)\n", {"ready": 1}, {"raise": {"type": "MyError", "message": "x"}})
    assert record["outcome"] == "error" and record["type"] == "MyError"
    assert record["raised_by_program"] is True


def test_a_value_that_is_not_plain_data_fails_the_call() -> None:
    record = checks("f(0)\n", {"ready": 1}, {"unsupported": "generator: not plain data"})
    assert record["outcome"] == "error" and record["type"] == "CandidateError"


def test_an_argument_that_is_not_plain_data_is_the_graders_limit() -> None:
    assert checks("f(print)\n", {"ready": 1})["outcome"] == "unsupported_argument"


def test_a_failing_assert_says_where() -> None:
    record = checks("x = 1\nassert f(1) == 3, 'off'\n", {"ready": 1}, {"return": 2})
    assert record["outcome"] == "assertion" and record["message"] == "off"
    assert record["where"] == "tests line 2: assert f(1) == 3, 'off'"


def test_the_prompt_runs_first_for_its_helpers() -> None:
    setup = "def helper():\n    return 5\n\ndef f(x):\n    'the stub the stand-in replaces'\n"
    spec = {"tests": "assert helper() == 5\nassert f(1) == 1\n", "entry_point": "f",
            "setup": setup}
    record = run_checks(channel({"hello": 1}, {"ready": 1}, {"return": 1}), spec)
    assert record == {"outcome": "ok", "calls": 1}


def test_a_program_that_never_loads_is_not_run_against_the_tests() -> None:
    assert run_checks(channel(), {"tests": ""})["outcome"] == "no_runner"
    assert run_checks(channel({"hello": 1}), {"tests": ""})["outcome"] == "gone"
    error = {"load_error": {"type": "SyntaxError", "message": "bad"}}
    assert run_checks(channel({"hello": 1}, error), {"tests": ""})["type"] == "SyntaxError"


def test_candidate_error_is_an_exception_and_program_gone_is_not() -> None:
    assert issubclass(CandidateError, Exception)
    assert not issubclass(ProgramGone, Exception)


# --- from reports to verdicts ------------------------------------------------------------------


def _record(returncode: int, check: dict[str, Any] | None, **supervisor: Any) -> RunRecord:
    finished = {"event": "finished", "returncode": returncode, "timed_out": False, **supervisor}
    return RunRecord(run_id="r", uid=None, supervisor=[{"event": "started"}, finished],
                     check=check)


GONE = {"outcome": "gone", "stage": "call"}


@pytest.mark.parametrize(
    ("record", "stderr", "verdict"),
    [
        (_record(-24, GONE), "", Verdict.TIMEOUT),  # SIGXCPU
        (_record(-9, GONE), "MemoryError\n", Verdict.MEMORY_ERROR),
        (_record(-9, GONE), "", Verdict.RUNTIME_ERROR),
        (_record(-9, GONE, timed_out=True), "", Verdict.TIMEOUT),
        (_record(0, GONE), "", Verdict.RUNTIME_ERROR),  # exited 0 before its tests finished
        (_record(1, {"outcome": "no_runner"}), "Fatal Python error", Verdict.SANDBOX_ERROR),
        (_record(0, {"outcome": "protocol", "message": "x"}), "", Verdict.RUNTIME_ERROR),
        (_record(0, {"outcome": "load_error", "type": "MemoryError"}), "", Verdict.MEMORY_ERROR),
        (_record(0, {"outcome": "error", "type": "AssertionError"}), "", Verdict.FAILED),
        (_record(0, {"outcome": "unsupported_argument"}), "", Verdict.SANDBOX_ERROR),
        # Only the checker's report of finished tests is a pass: never the program's exit status.
        (_record(0, None), "", Verdict.SANDBOX_ERROR),  # the checker crashed
        (_record(0, {"outcome": "ok"}), "", Verdict.PASSED),
        (_record(-9, {"outcome": "ok"}, timed_out=True), "", Verdict.PASSED),  # hung afterwards
        (
            RunRecord(run_id="r", uid=None, supervisor=[{"event": "setup_error", "reason": "x"}],
                      check={"outcome": "ok"}),
            "",
            Verdict.SANDBOX_ERROR,
        ),
        (RunRecord(run_id="r", uid=None, returncode=1), "unshare: failed", Verdict.SANDBOX_ERROR),
    ],
)
def test_decide_maps_reports_to_verdicts(record: RunRecord, stderr: str, verdict: Verdict) -> None:
    assert decide(record, stderr).verdict is verdict
