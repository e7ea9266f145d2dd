"""Figures of one run: accuracy with Wilson intervals, pass@k, per-subject tables, latency.

Accuracy is strict: a sample counts as correct only when it was answered and graded correct, so
inference failures and undecidable grades lower it (they are also counted on their own).
With several samples per item the samples are not independent, so the interval is optimistic;
the per-item pass@k is the figure to compare then.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from pydantic import BaseModel

from localroute.evaluation.stats import Interval, Quantiles, mean_pass_at_k, quantiles, wilson
from localroute.evaluation.suites.store import Run, SampleRow


class GroupSummary(BaseModel):
    name: str
    n_samples: int
    n_correct: int
    n_errors: int
    n_ungraded: int
    accuracy: Interval
    mean_score: float | None


class RunSummary(BaseModel):
    suite: str
    role: str
    model: str
    n_items: int
    n_samples: int
    n_correct: int
    n_errors: int  # inference failures: no output to grade
    n_ungraded: int  # the grader could not decide (timeout, sandbox error)
    errors_by_kind: dict[str, int]
    verdicts: dict[str, int]
    accuracy: Interval
    pass_at_k: dict[str, float | None]
    mean_score: float | None
    per_subject: list[GroupSummary]
    per_level: list[GroupSummary]
    latency_s: Quantiles
    completion_tokens: Quantiles
    tokens_per_s: float | None


def _group(name: str, rows: list[SampleRow]) -> GroupSummary:
    scores = [r.grade.score for r in rows if r.grade is not None]
    correct = sum(r.correct for r in rows)
    return GroupSummary(
        name=name,
        n_samples=len(rows),
        n_correct=correct,
        n_errors=sum(r.error is not None for r in rows),
        n_ungraded=sum(r.grade is not None and r.grade.correct is None for r in rows),
        accuracy=wilson(correct, len(rows)),
        mean_score=sum(scores) / len(rows) if rows else None,
    )


def _groups(rows: Iterable[SampleRow], key: Callable[[SampleRow], str]) -> list[GroupSummary]:
    buckets: dict[str, list[SampleRow]] = defaultdict(list)
    for row in rows:
        buckets[key(row)].append(row)
    return [_group(name, buckets[name]) for name in sorted(buckets)]


def summarize_rows(rows: list[SampleRow], suite: str, role: str, model: str,
                   samples_per_item: int) -> RunSummary:
    per_item: dict[str, list[SampleRow]] = defaultdict(list)
    for row in rows:
        per_item[row.item_id].append(row)
    ks = sorted({1, samples_per_item})
    pass_k: dict[str, float | None] = {}
    for k in ks:
        eligible = [(len(v), sum(r.correct for r in v)) for v in per_item.values() if len(v) >= k]
        pass_k[f"pass@{k}"] = mean_pass_at_k(eligible, k)
    answered = [r for r in rows if r.error is None]
    latencies = [r.latency_s for r in answered if r.latency_s is not None]
    total_time = sum(latencies)
    tokens = [r.completion_tokens for r in answered]
    overall = _group("all", rows)
    return RunSummary(
        suite=suite,
        role=role,
        model=model,
        n_items=len(per_item),
        n_samples=len(rows),
        n_correct=overall.n_correct,
        n_errors=overall.n_errors,
        n_ungraded=overall.n_ungraded,
        errors_by_kind=dict(Counter(r.error.kind for r in rows if r.error is not None)),
        verdicts=dict(Counter(r.grade.verdict if r.grade else "inference_error" for r in rows)),
        accuracy=overall.accuracy,
        pass_at_k=pass_k,
        mean_score=overall.mean_score,
        per_subject=_groups(rows, lambda r: r.subject),
        per_level=_groups((r for r in rows if r.level is not None), lambda r: f"level {r.level}"),
        latency_s=quantiles(latencies),
        completion_tokens=quantiles([float(t) for t in tokens]),
        tokens_per_s=(sum(tokens) / total_time) if total_time > 0 else None,
    )


def summarize(run: Run) -> RunSummary:
    m = run.manifest
    return summarize_rows(run.rows, m.suite, m.role, m.model, m.samples_per_item)
