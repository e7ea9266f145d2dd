"""Deterministic answer checks: cheap, certain, and run before any validation model."""

from __future__ import annotations

import re

from localroute.bounded_text import stage1_view
from localroute.client.parsing import extract_json, has_leaked_markup

_WANTS_JSON = re.compile(r"\b(as|in|return|output|respond with|give me)\b[^.?!]{0,30}\bjson\b",
                         re.IGNORECASE)
_WANTS_LIST = re.compile(r"\b(bullet(ed)? (points|list)|as a list|numbered list|list of \d+)\b",
                         re.IGNORECASE)
# `[ \t]*`, not `\s*`: under MULTILINE that would run over every following blank line from
# every line start of a run of blank lines.
_LIST_LINE = re.compile(r"^[ \t]*([-*•]|\d+[.)])[ \t]+\S", re.MULTILINE)
# A number presented as a measurement: "87%", "12.5 GB", "3 GiB", "4 cores", "65 °C".
_MEASURE = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)?)\s*(%|percent|[KMGT]i?B\b|cores?\b|°C|days?\b|hours?\b|MHz|GHz)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def wants_json(question: str) -> bool:
    """The question asks for its answer as JSON."""
    return bool(_WANTS_JSON.search(question))


def _numbers(text: str) -> list[float]:
    return [float(n) for n in _NUMBER.findall(text.replace(",", ""))]


def unsupported_numbers(answer: str, tool_text: str) -> list[str]:
    """Measurements in the answer that no tool output contains (allowing rounding)."""
    known = _numbers(tool_text)
    missing = []
    for match in _MEASURE.finditer(answer):
        value = float(match.group(1).replace(",", "."))
        # Rounding to the nearest unit (or one decimal) is fine; inventing a figure is not.
        if not any(abs(value - k) <= max(0.51, 0.01 * abs(k)) for k in known):
            missing.append(match.group(0))
    return missing


def check_answer(
    question: str, answer: str, *, tool_text: str = "", finish_reason: str | None = None
) -> list[str]:
    """Failures found in an answer; an empty list means every check passed."""
    failures: list[str] = []
    if not answer.strip():
        return ["the answer is empty"]
    if finish_reason == "length":
        failures.append("the answer stopped at the token limit and is incomplete")
    question = stage1_view(question)  # what was asked is at its head or tail
    leaked = has_leaked_markup(answer)
    if leaked:
        failures.append("the answer contains leaked markup: " + ", ".join(leaked))
    if wants_json(question):
        try:
            extract_json(answer)
        except ValueError:
            failures.append("JSON was requested but the answer holds no valid JSON")
    if _WANTS_LIST.search(question) and not _LIST_LINE.search(answer):
        failures.append("a list was requested but the answer has no list items")
    if tool_text:
        missing = unsupported_numbers(answer, tool_text)
        if missing:
            failures.append("figures not found in the tool results: " + ", ".join(missing[:5]))
    return failures
