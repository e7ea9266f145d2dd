"""Deterministic stage-3 checks."""

from __future__ import annotations

from localroute.validation.checks import check_answer, unsupported_numbers

TOOL = "CPU: 87.5% busy across 8 logical cores. Memory: 12.3 GiB used of 32.0 GiB."


def test_a_good_answer_passes() -> None:
    assert check_answer("how busy is my cpu?", "Your CPU is at about 88% on 8 cores.",
                        tool_text=TOOL) == []


def test_empty_answer() -> None:
    assert check_answer("hi", "   ") == ["the answer is empty"]


def test_truncated_answer_is_flagged() -> None:
    assert "token limit" in check_answer("q", "partial", finish_reason="length")[0]


def test_leaked_markup() -> None:
    failures = check_answer("q", "<think>hmm</think> fine")
    assert failures and "leaked markup: think" in failures[0]


def test_requested_json_must_be_there() -> None:
    assert check_answer("Give me the result as JSON", "It is 4.") == [
        "JSON was requested but the answer holds no valid JSON"]
    assert check_answer("Give me the result as JSON", '{"result": 4}') == []


def test_requested_list_must_be_there() -> None:
    assert check_answer("List of 3 fruits as a list", "apples, pears, plums")
    assert check_answer("List of 3 fruits as a list", "- apples\n- pears\n- plums") == []


def test_invented_figures_are_caught() -> None:
    assert unsupported_numbers("Memory use is 12 GiB and CPU 87%", TOOL) == []
    assert unsupported_numbers("CPU is at 45% and you have 64 GiB", TOOL) == ["45%", "64 GiB"]
    failures = check_answer("why slow?", "CPU is at 45%.", tool_text=TOOL)
    assert failures == ["figures not found in the tool results: 45%"]
