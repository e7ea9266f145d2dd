"""Two bench runs side by side (`localroute report compare RUN_A RUN_B`).

Besides the two summaries, samples present in both runs (same item and sample index) are paired:
the discordant pairs (right in one run only) decide an exact sign test (McNemar's test).
"""

from __future__ import annotations

from pydantic import BaseModel

from localroute.evaluation.reports.markdown import num, quantile_row, table
from localroute.evaluation.reports.summary import RunSummary, summarize
from localroute.evaluation.stats import Interval, sign_test
from localroute.evaluation.suites.store import Run


class Paired(BaseModel):
    pairs: int
    both: int
    only_a: int
    only_b: int
    neither: int
    sign_test_p: float | None


class SubjectRow(BaseModel):
    subject: str
    a: Interval | None
    b: Interval | None


class Comparison(BaseModel):
    a_root: str
    b_root: str
    a: RunSummary
    b: RunSummary
    delta_accuracy: float | None  # b - a
    paired: Paired
    per_subject: list[SubjectRow]


def compare_runs(run_a: Run, run_b: Run) -> Comparison:
    if run_a.manifest.suite != run_b.manifest.suite:
        raise ValueError(
            f"{run_a.root} is a '{run_a.manifest.suite}' run but {run_b.root} is a "
            f"'{run_b.manifest.suite}' run; compare runs of the same suite"
        )
    a, b = summarize(run_a), summarize(run_b)
    by_a = {(r.item_id, r.sample): r.correct for r in run_a.rows}
    by_b = {(r.item_id, r.sample): r.correct for r in run_b.rows}
    common = sorted(set(by_a) & set(by_b))
    both = sum(by_a[k] and by_b[k] for k in common)
    only_a = sum(by_a[k] and not by_b[k] for k in common)
    only_b = sum(by_b[k] and not by_a[k] for k in common)
    subjects_a = {g.name: g.accuracy for g in a.per_subject}
    subjects_b = {g.name: g.accuracy for g in b.per_subject}
    rate_a, rate_b = a.accuracy.rate, b.accuracy.rate
    return Comparison(
        a_root=run_a.root, b_root=run_b.root, a=a, b=b,
        delta_accuracy=None if rate_a is None or rate_b is None else rate_b - rate_a,
        paired=Paired(pairs=len(common), both=both, only_a=only_a, only_b=only_b,
                      neither=len(common) - both - only_a - only_b,
                      sign_test_p=sign_test(only_b, only_a)),
        per_subject=[SubjectRow(subject=s, a=subjects_a.get(s), b=subjects_b.get(s))
                     for s in sorted(set(subjects_a) | set(subjects_b))],
    )


def render_compare_md(c: Comparison) -> str:
    a, b = c.a, c.b
    lines = [
        f"# Compare `{a.suite}`: A `{a.model}` ({a.role}) vs B `{b.model}` ({b.role})", "",
        f"A: `{c.a_root}`  ", f"B: `{c.b_root}`", "",
        *table(["metric", "A", "B"], [
            ["accuracy (Wilson 95% CI)", a.accuracy.fmt(), b.accuracy.fmt()],
            *[[k, num(a.pass_at_k.get(k), 3), num(b.pass_at_k.get(k), 3)]
              for k in dict.fromkeys([*a.pass_at_k, *b.pass_at_k])],
            ["mean score", num(a.mean_score, 3), num(b.mean_score, 3)],
            ["items / samples", f"{a.n_items} / {a.n_samples}", f"{b.n_items} / {b.n_samples}"],
            ["inference errors", a.n_errors, b.n_errors],
            ["ungraded", a.n_ungraded, b.n_ungraded],
            ["latency p50 / p90 (s)", f"{num(a.latency_s.p50)} / {num(a.latency_s.p90)}",
             f"{num(b.latency_s.p50)} / {num(b.latency_s.p90)}"],
            ["completion tokens mean", num(a.completion_tokens.mean, 0),
             num(b.completion_tokens.mean, 0)],
            ["tokens/s", num(a.tokens_per_s, 1), num(b.tokens_per_s, 1)],
        ]),
        "", f"Accuracy B − A: {num(_points(c.delta_accuracy), 1)} points.", "",
        "## Paired samples", "",
        *table(["pairs", "both right", "only A right", "only B right", "neither",
                "sign test p (discordant pairs)"],
               [[c.paired.pairs, c.paired.both, c.paired.only_a, c.paired.only_b,
                 c.paired.neither, num(c.paired.sign_test_p, 4)]]),
        "", "## Per subject", "",
        *table(["subject", "A", "B"], [
            [r.subject, r.a.fmt() if r.a else "—", r.b.fmt() if r.b else "—"]
            for r in c.per_subject
        ]),
        "", "## Latency (s)", "",
        *table(["", "n", "mean", "p50", "p90", "p99", "max"],
               [quantile_row("A", a.latency_s), quantile_row("B", b.latency_s)]),
    ]
    return "\n".join(lines) + "\n"


def _points(delta: float | None) -> float | None:
    return None if delta is None else delta * 100
