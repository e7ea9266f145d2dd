"""The code grader's pure parts: which program runs, which bindings count as the entry point,
and how malformed input is reported (the sandbox itself is exercised in test_sandbox.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localroute.evaluation.graders.code import CodeRowError, build_program, defines, grade_code_file
from tests.support.paths import EVAL_DATA


def test_completion_that_defines_the_entry_point_runs_alone() -> None:
    row = next(json.loads(line) for line in (EVAL_DATA / "code_subset.jsonl").open()
               if json.loads(line)["id"] == "HumanEval/54")
    full = "def same_chars(s0, s1):\n    return set(s0) == set(s1)\n"
    assert defines(full, "same_chars")
    program = build_program(row["prompt"], full, row["entry_point"])
    assert program == full


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import math\nsame = math.isclose\n", True),
        ("from os import path as same\n", True),
        ("try:\n    def same(): pass\nexcept Exception:\n    same = None\n", True),
        ("def other():\n    def same(): pass\n", False),
        ("    return 1\n", False),
    ],
)
def test_defines_looks_at_module_level_bindings(code: str, expected: bool) -> None:
    assert defines(code, "same") is expected


# --- malformed input -----------------------------------------------------------------------


def test_malformed_rows_name_the_file_and_line(tmp_path: Path) -> None:
    good = {"id": "a", "prompt": "", "entry_point": "f", "tests": "assert f()", "completion": "x"}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(CodeRowError, match=rf"{path}:2: not valid JSON"):
        grade_code_file(path)
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"id": "b", "prompt": ""}) + "\n")
    with pytest.raises(CodeRowError, match=rf"{path}:3: entry_point: Field required"):
        grade_code_file(path)
    path.write_text(json.dumps({**good, "entry_point": "not a name"}) + "\n")
    with pytest.raises(CodeRowError, match=rf"{path}:1: .*not a Python identifier"):
        grade_code_file(path)
    with pytest.raises(CodeRowError, match="cannot read"):
        grade_code_file(tmp_path / "missing.jsonl")
