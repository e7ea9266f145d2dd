"""The system-analysis suite: a recorded snapshot of a machine plus a question, graded by a rubric.

Each scenario (``data/system_scenarios.jsonl``, written for this project) lists facts the answer
must name and claims it must not make, each as case-insensitive regular expressions; a fact is
named when any of its patterns occurs in the answer (reasoning excluded), a claim is made when
any of its patterns does. An answer is correct when it names every fact and makes no forbidden
claim; its score is the share of facts named, or 0 when it makes a forbidden claim.
Patterns are phrased as positive statements so a denial ("the disk is not full") is not a hit;
a rubric of patterns is still cruder than a person, which is why A/B runs add a judge.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from localroute.client.parsing import split_reasoning
from localroute.evaluation.suites.base import (
    BenchItem,
    Grade,
    Sampling,
    Suite,
    SuiteError,
    read_jsonl,
)

SCENARIOS = Path(__file__).with_name("data") / "system_scenarios.jsonl"
SYSTEM_GRADER_VERSION = "localroute-system-rubric/1.0"
SYSTEM_PROMPT = (
    "You are a careful system analyst. You are given a recorded snapshot of a computer's metrics "
    "and processes. Answer the question from the evidence in the snapshot: name the specific "
    "process, resource or setting responsible, and do not guess beyond the evidence."
)


class RubricEntry(BaseModel):
    fact: str | None = None
    claim: str | None = None
    any: list[str]

    @property
    def label(self) -> str:
        return self.fact or self.claim or "?"

    def first_match(self, text: str) -> str | None:
        for pattern in self.any:
            found = re.search(pattern, text, re.IGNORECASE)
            if found:
                return found.group(0)
        return None


class Scenario(BaseModel):
    id: str
    subject: str
    question: str
    snapshot: dict[str, Any]
    must_name: list[RubricEntry]
    must_not: list[RubricEntry]


def render_snapshot(snapshot: dict[str, Any]) -> str:
    """The snapshot as the plain text a tool would print: sections, key: value lines, tables."""
    lines: list[str] = []
    for section, value in snapshot.items():
        title = section.replace("_", " ")
        if isinstance(value, dict):
            lines.append(f"[{title}]")
            lines.extend(f"  {k.replace('_', ' ')}: {v}" for k, v in value.items())
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"[{title}]")
            columns = list(dict.fromkeys(k for row in value for k in row))
            widths = [max(len(c), *(len(str(row.get(c, ""))) for row in value)) for c in columns]
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            for row in value:
                cells = (str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True))
                lines.append("  " + "  ".join(cells).rstrip())
        else:
            lines.append(f"{title}: {value}")
    return "\n".join(lines)


def grade_answer(scenario: Scenario, output: str) -> Grade:
    _, answer = split_reasoning(output)
    named = {e.label: e.first_match(answer) for e in scenario.must_name}
    claims = {e.label: e.first_match(answer) for e in scenario.must_not}
    missing = [label for label, hit in named.items() if hit is None]
    made = [label for label, hit in claims.items() if hit is not None]
    share = (len(named) - len(missing)) / len(named) if named else 1.0
    correct = not missing and not made
    if not answer.strip():
        verdict = "no_answer"
    elif correct:
        verdict = "correct"
    elif made:
        verdict = "forbidden_claim"
    else:
        verdict = "missing_facts"
    return Grade(
        correct=correct,
        verdict=verdict,
        score=0.0 if made else share,
        extracted=None,
        trace={"facts_named": named, "missing_facts": missing, "forbidden_claims": {
            label: hit for label, hit in claims.items() if hit is not None}},
    )


class SystemSuite(Suite):
    name = "system"
    default_file = "system_scenarios.jsonl"
    template_version = "system/1"

    def default_path(self) -> Path:
        return SCENARIOS

    def load(self, path: Path) -> list[BenchItem]:
        items = []
        for number, row in enumerate(read_jsonl(path, ("id", "question", "snapshot")), 1):
            try:
                scenario = Scenario.model_validate(row)
                for entry in [*scenario.must_name, *scenario.must_not]:
                    for pattern in entry.any:
                        re.compile(pattern)
            except (ValidationError, re.error) as exc:
                raise SuiteError(f"{path}: scenario {number}: {exc}") from None
            reference = "Must name: " + "; ".join(e.label for e in scenario.must_name)
            if scenario.must_not:
                reference += ". Must not claim: " + "; ".join(e.label for e in scenario.must_not)
            items.append(
                BenchItem(id=scenario.id, subject=scenario.subject, reference=reference, data=row)
            )
        return items

    def messages(self, item: BenchItem, sampling: Sampling) -> list[dict[str, Any]]:
        scenario = Scenario.model_validate(item.data)
        user = (
            f"Snapshot of the machine:\n\n{render_snapshot(scenario.snapshot)}\n\n"
            f"Question: {scenario.question}"
        )
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def grade(self, item: BenchItem, output: str) -> Grade:
        return grade_answer(Scenario.model_validate(item.data), output)

    def grader_version(self) -> str:
        return SYSTEM_GRADER_VERSION
