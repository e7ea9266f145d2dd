"""`report.md` of a bench run: the summary, per-subject tables, latency and a per-sample table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from localroute.evaluation.reports.summary import GroupSummary, RunSummary
from localroute.evaluation.stats import Quantiles
from localroute.evaluation.suites.store import Run


def cell(value: object, width: int = 60) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: Sequence[Sequence[object]], width: int = 60) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v, width) for v in row) + " |" for row in rows]
    return lines


def num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def group_rows(groups: list[GroupSummary]) -> list[list[object]]:
    return [[g.name, g.n_samples, g.n_correct, g.accuracy.fmt(), g.n_errors, g.n_ungraded,
             num(g.mean_score)] for g in groups]


GROUP_HEADERS = ["group", "samples", "correct", "accuracy [95% CI]", "inference errors",
                 "ungraded", "mean score"]


def quantile_row(name: str, q: Quantiles, digits: int = 2) -> list[object]:
    return [name, q.n, num(q.mean, digits), num(q.p50, digits), num(q.p90, digits),
            num(q.p99, digits), num(q.max, digits)]


def render_md(run: Run, s: RunSummary) -> str:
    m = run.manifest
    lines = [
        f"# Bench `{m.suite}` — role `{m.role}` (model `{m.model}`)", "",
        f"Run `{m.run_id}` in `{run.root}`, started {m.created_at}.", "",
        *table(["setting", "value"], [
            ["model / backend / quantization", f"{m.model} / {m.backend} / {m.quantization}"],
            ["endpoint", m.endpoint or "embedded"],
            ["profile (config file)", f"{m.profile} ({m.config_file})"],
            ["sampling", ", ".join(f"{k}={v}" for k, v in m.sampling.items())],
            ["samples per item / items", f"{m.samples_per_item} / {len(m.items)}"],
            ["dataset", f"{m.dataset.get('path')} (sha256 {str(m.dataset.get('sha256'))[:16]}…)"],
            ["grader", m.grader_version + (" (regraded)" if run.regraded else "")],
            ["config hash / git commit", f"{m.config_hash} / {m.git_commit}"],
            ["sessions", "; ".join(f"{x.started_at} {x.status} ({x.rows_written} rows)"
                                   for x in m.sessions)],
        ], width=400),
    ]
    sandbox = m.suite_extra.get("sandbox")
    if isinstance(sandbox, dict):
        active = [k for k in ("uid_drop", "user_namespace", "no_capabilities", "net_namespace",
                              "pid_namespace", "mount_namespace") if sandbox.get(k)]
        lines += ["", f"Sandbox protections: {', '.join(active) or 'none of the namespaces'}; "
                  f"rlimits {', '.join(sandbox.get('rlimits', []))}."]
        missing = sandbox.get("missing") or {}
        if missing:
            lines += ["", "**Weak sandbox** (`--allow-weak-sandbox`), graded without: "
                      + "; ".join(f"{k} ({v})" for k, v in missing.items())]
    lines += [
        "", "## Summary", "",
        *table(["metric", "value"], [
            ["accuracy (Wilson 95% CI)", s.accuracy.fmt()],
            *[[k, num(v, 3)] for k, v in s.pass_at_k.items()],
            ["mean score", num(s.mean_score, 3)],
            ["items / samples", f"{s.n_items} / {s.n_samples}"],
            ["inference errors", f"{s.n_errors} "
             + (str(s.errors_by_kind) if s.errors_by_kind else "")],
            ["ungraded (grader could not decide)", s.n_ungraded],
            ["verdicts", ", ".join(f"{k}: {v}" for k, v in sorted(s.verdicts.items()))],
        ]),
        "", "Accuracy counts inference errors and undecided grades as not correct.",
        "", "## Per subject", "", *table(GROUP_HEADERS, group_rows(s.per_subject)),
    ]
    if s.per_level:
        lines += ["", "## Per level", "", *table(GROUP_HEADERS, group_rows(s.per_level))]
    lines += [
        "", "## Latency and tokens", "",
        *table(["", "n", "mean", "p50", "p90", "p99", "max"], [
            quantile_row("latency (s)", s.latency_s),
            quantile_row("completion tokens", s.completion_tokens, 0),
        ]),
        "", f"Throughput: {num(s.tokens_per_s, 1)} completion tokens/s of model time.",
        "", "## Samples", "",
        "Prompts, reasoning, outputs and grader traces are in `report.html`.", "",
        *table(["item", "sample", "verdict", "extracted", "latency s", "tokens"], [
            [r.item_id, r.sample, r.grade.verdict if r.grade else f"error: {r.error.kind}"
             if r.error else "?", r.grade.extracted if r.grade else "", num(r.latency_s),
             r.completion_tokens] for r in sorted(run.rows, key=lambda r: (r.item_id, r.sample))
        ]),
    ]
    return "\n".join(lines) + "\n"


def write_md_report(run: Run, summary: RunSummary) -> Path:
    path = Path(run.root) / "report.md"
    path.write_text(render_md(run, summary), encoding="utf-8")
    return path
