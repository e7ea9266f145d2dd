"""Tests for the math answer grader.

The triples in ``localroute/evaluation/suites/data/math_grader_cases.jsonl`` tagged
``math-verify-style`` are written in the spirit of the test-suite of Math-Verify
(huggingface/Math-Verify, Apache-2.0), whose package is not shipped with its tests; the others
are the hard cases from the issue and extraction cases written for this project.
``tests/data/math_grader_holdout.jsonl`` was written after the grader was frozen.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localroute.evaluation.math_extract import extract_answer
from localroute.evaluation.math_grader import (
    GRADER_VERSION,
    MathGrader,
    MathGraderInputError,
    grade_file,
)
from localroute.evaluation.math_normalize import normalize

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "localroute" / "evaluation" / "suites" / "data" / "math_grader_cases.jsonl"
HOLDOUT = ROOT / "tests" / "data" / "math_grader_holdout.jsonl"
VERDICTS = {"equivalent", "not_equivalent", "no_answer", "timeout", "error"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def grader() -> Iterator[MathGrader]:
    with MathGrader(workers=1) as shared:
        yield shared


def _agreement(grader: MathGrader, rows: list[dict[str, Any]]) -> tuple[float, list[str]]:
    grades = grader.grade_many([(r["gold"], r["prediction"]) for r in rows])
    misses = [
        f"{r['gold']!r} vs {r['prediction'][:60]!r}: expected {r['expected']}, got {g.verdict} "
        f"({g.reason})"
        for r, g in zip(rows, grades, strict=True)
        if g.verdict != r["expected"]
    ]
    assert all(g.verdict in VERDICTS for g in grades)
    return 1 - len(misses) / len(rows), misses


def test_case_file_is_large_and_covers_every_kind() -> None:
    rows = _load(CASES)
    assert len(rows) >= 150
    tags = Counter(r["tag"] for r in rows)
    assert {"math-verify-style", "hard", "extraction", "math500-form"} <= set(tags)
    assert {r["expected"] for r in rows} == {"equivalent", "not_equivalent", "no_answer"}


def test_grader_agrees_with_every_own_case(grader: MathGrader) -> None:
    rate, misses = _agreement(grader, _load(CASES))
    assert misses == [], "\n".join(misses)
    assert rate == 1.0


def test_holdout_agreement_is_at_least_98_percent(grader: MathGrader) -> None:
    rows = _load(HOLDOUT)
    assert len(rows) >= 60
    rate, misses = _agreement(grader, rows)
    assert rate >= 0.98, "\n".join(misses)


@pytest.mark.parametrize(
    ("gold", "prediction", "verdict"),
    [
        ("50\\%", "\\boxed{50}", "equivalent"),
        ("50\\%", "\\boxed{0.5}", "not_equivalent"),
        ("(1,2]", "\\boxed{[1,2]}", "not_equivalent"),
        ("\\{1,2\\}", "\\boxed{\\{2,1\\}}", "equivalent"),
        ("\\text{(C)}", "\\boxed{C}", "equivalent"),
        ("10,\\!080", "\\boxed{10080}", "equivalent"),
        ("1,2", "\\boxed{12}", "not_equivalent"),
    ],
)
def test_issue_examples(grader: MathGrader, gold: str, prediction: str, verdict: str) -> None:
    result = grader.grade(gold, prediction)
    assert result.verdict == verdict, result.reason
    assert result.equivalent is (verdict == "equivalent")


def test_pathological_expression_times_out_and_pool_recovers(grader: MathGrader) -> None:
    timeout_s = 1.5
    started = time.monotonic()
    result = grader.grade("1", "\\boxed{9^{9^{9^{9}}}}", timeout_s=timeout_s)
    assert time.monotonic() - started < timeout_s + 2.0
    assert result.verdict in {"timeout", "not_equivalent"}
    if result.verdict == "timeout":
        assert result.equivalent is None
        assert "exceeded" in result.reason
    after = grader.grade("\\frac{1}{2}", "\\boxed{0.5}")
    assert after.verdict == "equivalent"


def test_no_answer_is_a_recorded_false_verdict(grader: MathGrader) -> None:
    result = grader.grade("7", "<think>so the answer is \\boxed{7}, but wait")
    assert result.verdict == "no_answer"
    assert result.equivalent is False
    assert result.extracted is None
    assert "think" in result.reason


def test_grade_many_with_two_workers_matches_one_worker(grader: MathGrader) -> None:
    rows = [(r["gold"], r["prediction"]) for r in _load(CASES)[:12]]
    with MathGrader(workers=2) as pair:
        two = [g.verdict for g in pair.grade_many(rows)]
    one = [g.verdict for g in grader.grade_many(rows)]
    assert two == one


def test_bad_timeout_and_worker_count_are_rejected(grader: MathGrader) -> None:
    with pytest.raises(MathGraderInputError, match="timeout_s"):
        grader.grade("1", "1", timeout_s=0)
    with pytest.raises(MathGraderInputError, match="workers"):
        MathGrader(workers=0)


def test_grade_file_adds_verdict_fields(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [
        {"id": "a", "gold": "\\frac 34", "prediction": "So \\boxed{0.75}."},
        {"id": "b", "gold": "5", "prediction": "**Final answer: 6**"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    out = grade_file(path)
    assert [r["id"] for r in out] == ["a", "b"]
    assert [r["verdict"] for r in out] == ["equivalent", "not_equivalent"]
    assert [r["equivalent"] for r in out] == [True, False]
    assert out[0]["extracted"] == "0.75"
    assert all(isinstance(r["reason"], str) and r["reason"] for r in out)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"gold": "1", "prediction": "1"', "not valid JSON"),
        ('["1", "1"]', "expected a JSON object"),
        ('{"gold": "1"}', "'prediction'"),
        ('{"gold": null, "prediction": "1"}', "'gold'"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"gold": "1", "prediction": "1"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(MathGraderInputError, match=message) as info:
        grade_file(path)
    assert f"{path}:2:" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MathGraderInputError, match="cannot read"):
        grade_file(tmp_path / "absent.jsonl")


@pytest.mark.parametrize(
    ("prediction", "answer", "method"),
    [
        ("x \\boxed{\\frac{1}{\\sqrt{2}}} y", "\\frac{1}{\\sqrt{2}}", "boxed"),
        ("\\fbox{\\{1,2\\}}", "\\{1,2\\}", "boxed"),
        ("<think>\\boxed{3}</think> so \\boxed{4}", "4", "boxed"),
        ("$\\boxed{-2}$ and $\\boxed{1}$", "-2, 1", "boxed"),
        ("First \\boxed{3}. Then more work. Finally \\boxed{4}", "4", "boxed"),
        ("**Final answer: 5**", "5", "final_sentence"),
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}", "final_sentence"),
        ("Check that the answer is correct. So $x=9$", "x=9", "last_math"),
        ("We get 17 and then 18 widgets in all", "18", "last_math"),
    ],
)
def test_extract_answer(prediction: str, answer: str, method: str) -> None:
    found = extract_answer(prediction)
    assert (found.answer, found.method) == (answer, method)


@pytest.mark.parametrize(
    "prediction", ["<think>\\boxed{3}", "", "<think>a</think>   ", "cut off: \\boxed{\\frac{1}{2"]
)
def test_extract_answer_finds_nothing(prediction: str) -> None:
    found = extract_answer(prediction)
    assert found.answer is None
    assert found.method == "none"
    assert found.note


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\left( 1, 2 \\right]", "( 1, 2 ]"),
        ("90^\\circ", "90"),
        ("50\\%", "50"),
        ("10,\\!080", "10080"),
        ("1,234,567", "1234567"),
        ("-2,1", "-2,1"),
        ("x = 5", "5"),
        ("5x - 7y + 11z + 4 = 0", "5x - 7y + 11z + 4 = 0"),
        ("12 \\text{ cm}^2", "12"),
        ("\\$18.90", "18.90"),
        ("**42**.", "42"),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_grader_version_names_math_verify() -> None:
    assert "math-verify/" in GRADER_VERSION
