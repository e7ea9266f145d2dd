"""Figures and files of an A/B run: objective grades, latency/tokens, report.md/html, and the
experiment record (hypothesis, setup, results, decision)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localroute.evaluation.ab import AbResult, AbRow
from localroute.evaluation.reports.html import CSS, environment
from localroute.evaluation.reports.markdown import num, table
from localroute.evaluation.reports.svg import histogram_svg
from localroute.evaluation.stats import quantiles, wilson

SIGNIFICANCE = 0.05


def objective(rows: list[AbRow]) -> dict[str, Any]:
    """Graders' accuracy for both sides and how often the judge sided with the grader."""
    graded = [r for r in rows if r.a.grade is not None or r.b.grade is not None]
    if not graded:
        return {}
    out: dict[str, Any] = {}
    for side in ("a", "b"):
        correct = sum(bool(getattr(r, side).grade and getattr(r, side).grade.correct)
                      for r in rows)
        out[side] = wilson(correct, len(rows)).model_dump()
    # Where exactly one side is objectively right, did the final verdict pick it?
    split = [r for r in rows if bool(r.a.grade and r.a.grade.correct)
             != bool(r.b.grade and r.b.grade.correct)]
    agree = sum((r.outcome == "win") == bool(r.b.grade and r.b.grade.correct)
                and r.outcome != "tie" for r in split)
    out["split_queries"] = len(split)
    out["judge_agrees_with_grader"] = agree
    return out


def figures(rows: list[AbRow]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for side in ("a", "b"):
        answers = [getattr(r, side) for r in rows]
        ok = [x for x in answers if x.error is None]
        latency = [x.latency_s for x in ok if x.latency_s is not None]
        tokens = [x.completion_tokens for x in ok]
        data[side] = {
            "errors": len(answers) - len(ok),
            "latency_s": quantiles(latency).model_dump(),
            "completion_tokens": quantiles([float(t) for t in tokens]).model_dump(),
            "tokens_per_s": (sum(tokens) / sum(latency)) if sum(latency) > 0 else None,
        }
    data["judge_invalid"] = sum(j.preferred == "invalid" for r in rows for j in r.judge)
    return data


def decision(result: AbResult) -> str:
    s = result.stats
    if s.sign_test_p is not None and s.sign_test_p < SIGNIFICANCE and s.win_rate.rate is not None:
        if s.win_rate.rate > 0.5:
            return f"adopt B ({result.b['model']}): the judge prefers it significantly " \
                   f"(p = {s.sign_test_p:.4f})"
        return f"keep A ({result.a['model']}): the judge prefers it significantly " \
               f"(p = {s.sign_test_p:.4f})"
    p = "n/a" if s.sign_test_p is None else f"{s.sign_test_p:.4f}"
    return f"keep A ({result.a['model']}): no significant difference (sign test p = {p}); " \
           "collect more queries before changing the model"


def _side_rows(result: AbResult) -> list[list[object]]:
    f, o = result.figures, result.objective
    rows: list[list[object]] = []
    for side in ("a", "b"):
        meta, fig = getattr(result, side), f[side]
        acc = "—"
        if side in o:
            acc = f"{o[side]['successes']}/{o[side]['trials']}"
        rows.append([side.upper(), meta["model"], meta["role"], acc, fig["errors"],
                     num(fig["latency_s"]["p50"]), num(fig["latency_s"]["p90"]),
                     num(fig["completion_tokens"]["mean"], 0), num(fig["tokens_per_s"], 1)])
    return rows


def render_ab_md(result: AbResult) -> str:
    s = result.stats
    lines = [
        f"# A/B: A `{result.a['model']}` vs B `{result.b['model']}`", "",
        f"Suite `{result.suite or 'queries file'}`, {s.n} queries; judge role "
        f"`{result.judge['role']}` (`{result.judge['model']}`), temperature 0, both orders, "
        "blind (names and reasoning removed). Verdicts are from B's side.", "",
        *table(["B vs A", "value"], [
            ["wins / ties / losses", f"{s.wins} / {s.ties} / {s.losses}"],
            ["win rate of decisive queries (Wilson 95% CI)", s.win_rate.fmt()],
            ["score (wins + ties/2) / n", num(s.score, 3)],
            ["sign test p (two-sided, exact)", num(s.sign_test_p, 4)],
            ["judge order consistency", f"{num(s.order_consistency, 3)} of {s.order_pairs} "
             "queries judged in both orders"],
            ["judge answers that were not valid", result.figures["judge_invalid"]],
        ]), "",
        "## Sides", "",
        *table(["side", "model", "role", "graded correct", "inference errors", "latency p50 s",
                "latency p90 s", "completion tokens mean", "tokens/s"], _side_rows(result)),
    ]
    o = result.objective
    if o:
        lines += ["", f"Objective grades: A {wilson(o['a']['successes'], o['a']['trials']).fmt()}"
                  f", B {wilson(o['b']['successes'], o['b']['trials']).fmt()}. Where exactly one "
                  f"side was graded correct ({o['split_queries']} queries) the judge's final "
                  f"verdict picked it {o['judge_agrees_with_grader']} times."]
    lines += ["", "## Queries", "", *table(
        ["query", "A grade", "B grade", "judge A-first", "judge B-first", "outcome"],
        [[r.id, r.a.grade.verdict if r.a.grade else (r.a.error or "—"),
          r.b.grade.verdict if r.b.grade else (r.b.error or "—"),
          *(j.preferred for j in r.judge), *(["—", "—"] if not r.judge else []), r.outcome]
         for r in result.rows])]
    lines += ["", f"Decision by the rule (sign test at {SIGNIFICANCE}): {decision(result)}."]
    return "\n".join(lines) + "\n"


AB_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>{{ css }}</style></head><body><h1>{{ title }}</h1>
<pre>{{ summary_md }}</pre>
<h2>Latency</h2>{{ svg | safe }}
<h2>Queries</h2>{% for r in rows %}<details><summary><code>{{ r.id }}</code> — {{ r.outcome }}</summary>
<h4>Prompt</h4>{% for m in r.messages %}<pre><b>{{ m.role }}</b>: {{ m.content }}</pre>{% endfor %}
{% if r.reference %}<h4>Reference</h4><pre>{{ r.reference }}</pre>{% endif %}
<h4>A</h4><pre>{{ r.a.output or r.a.error }}</pre>{% if r.a.grade %}<pre>{{ r.a.grade.verdict }} {{ r.a.grade.trace | pretty }}</pre>{% endif %}
<h4>B</h4><pre>{{ r.b.output or r.b.error }}</pre>{% if r.b.grade %}<pre>{{ r.b.grade.verdict }} {{ r.b.grade.trace | pretty }}</pre>{% endif %}
<h4>Judge</h4>{% for j in r.judge %}<pre>{{ j.order }}: {{ j.preferred }} — {{ j.reason }}</pre>{% endfor %}
</details>{% endfor %}</body></html>
"""  # noqa: E501


def render_ab_html(result: AbResult) -> str:
    series = [(side.upper(), [x.latency_s for r in result.rows
                              if (x := getattr(r, side)).error is None and x.latency_s is not None])
              for side in ("a", "b")]
    return environment().from_string(AB_PAGE).render(
        title=f"A/B {result.a['model']} vs {result.b['model']}", css=CSS,
        summary_md=render_ab_md(result), rows=result.rows,
        svg=histogram_svg([], "latency per answer (s)", series=series),
    )


def write_ab(result: AbResult) -> Path:
    out = Path(result.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in result.rows),
                                  encoding="utf-8")
    meta = result.model_dump(mode="json", exclude={"rows"})
    (out / "manifest.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    (out / "report.md").write_text(render_ab_md(result), encoding="utf-8")
    (out / "report.html").write_text(render_ab_html(result), encoding="utf-8")
    return out


def write_experiment_record(result: AbResult, path: Path, title: str, hypothesis: str) -> Path:
    """The experiment record: hypothesis, setup, results, decision (rewritten on each run)."""
    a, b, s = result.a, result.b, result.stats
    setup = [
        f"- A (current): `{a['model']}` as role `{a['role']}` ({a['backend']}, "
        f"{a['quantization']}), sampling {a['sampling']}",
        f"- B (candidate): `{b['model']}` as role `{b['role']}` ({b['backend']}, "
        f"{b['quantization']}), sampling {b['sampling']}",
        f"- Queries: suite `{result.suite or 'queries file'}`, {s.n} queries",
        f"- Judge: role `{result.judge['role']}` (`{result.judge['model']}`), temperature 0, both "
        "orders, blind; a disagreement between orders is a tie",
        f"- Run: `{result.out}` at {result.created_at}, git {result.git_commit}",
    ]
    text = "\n".join([
        f"# {title}", "", "## Hypothesis", "", hypothesis, "", "## Setup", "", *setup, "",
        "## Results", "", render_ab_md(result).split("\n", 2)[2].rsplit("\nDecision", 1)[0],
        "## Decision", "", decision(result) + ".", "",
        "_Generated by `localroute ab ... --record`; rerun to refresh._", "",
    ])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
