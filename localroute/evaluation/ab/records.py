"""The records of a blind A/B run: one answer, one judge call, one row, the whole result.

They live apart from ``run`` (which runs the comparison) and ``report`` (which renders it) so
that both import them and neither imports the other back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from localroute.evaluation.stats import ABStats, Outcome
from localroute.evaluation.suites.base import Grade

__all__ = ["AbResult", "AbRow", "AnswerRecord", "JudgeRecord", "Side"]

Side = Literal["a", "b", "tie", "invalid"]


class AnswerRecord(BaseModel):
    output: str = ""
    latency_s: float | None = None
    completion_tokens: int = 0
    error: str | None = None
    grade: Grade | None = None


class JudgeRecord(BaseModel):
    order: Literal["ab", "ba"]
    preferred: Side  # which side the judge preferred in this order
    reason: str = ""


class AbRow(BaseModel):
    id: str
    subject: str
    messages: list[dict[str, Any]]
    reference: str | None
    a: AnswerRecord
    b: AnswerRecord
    judge: list[JudgeRecord]
    outcome: Outcome  # from B's side
    consistent: bool | None  # both orders agreed (None: the judge was not needed)


class AbResult(BaseModel):
    out: str
    a: dict[str, Any]
    b: dict[str, Any]
    judge: dict[str, Any]
    suite: str | None
    stats: ABStats
    objective: dict[str, Any]
    figures: dict[str, Any]
    created_at: str
    git_commit: str
    rows: list[AbRow]
