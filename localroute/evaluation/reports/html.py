"""`report.html` of a bench run: one self-contained file (inline CSS and SVG, no external assets).

Jinja2 with autoescaping renders it, because model outputs are arbitrary text and may contain
markup that must show as text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from localroute.evaluation.reports.markdown import num
from localroute.evaluation.reports.summary import RunSummary
from localroute.evaluation.reports.svg import histogram_svg
from localroute.evaluation.suites.store import Run

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f3f3f3}pre{white-space:pre-wrap;
background:#f7f7f7;padding:.5rem;border-radius:4px;max-height:30rem;overflow:auto}
details{border:1px solid #ddd;border-radius:4px;margin:.25rem 0;padding:.25rem .5rem}
summary{cursor:pointer}.ok{color:#1a7f37}.bad{color:#b42318}.undecided{color:#9a6700}
.small{color:#666;font-size:.9em}
"""


def environment() -> Environment:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["num"] = num
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    return env


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>{{ css }}</style></head><body>
<h1>{{ title }}</h1>
<p class="small">Run <code>{{ m.run_id }}</code> in <code>{{ root }}</code>, started {{ m.created_at }}.
Grader {{ m.grader_version }}{% if regraded %} (regraded){% endif %}.</p>
<table>
<tr><th>model / backend / quantization</th><td>{{ m.model }} / {{ m.backend }} / {{ m.quantization }}</td></tr>
<tr><th>endpoint</th><td>{{ m.endpoint or "embedded" }}</td></tr>
<tr><th>profile (config)</th><td>{{ m.profile }} ({{ m.config_file }})</td></tr>
<tr><th>sampling</th><td>{% for k, v in m.sampling.items() %}{{ k }}={{ v }} {% endfor %}</td></tr>
<tr><th>dataset</th><td>{{ m.dataset.path }} <span class="small">sha256 {{ m.dataset.sha256 }}</span></td></tr>
<tr><th>config hash / git commit</th><td>{{ m.config_hash }} / {{ m.git_commit }}</td></tr>
<tr><th>sessions</th><td>{% for x in m.sessions %}{{ x.started_at }} {{ x.status }} ({{ x.rows_written }} rows)<br>{% endfor %}</td></tr>
{% if m.suite_extra.sandbox %}<tr><th>sandbox</th><td><pre>{{ m.suite_extra.sandbox | pretty }}</pre></td></tr>{% endif %}
</table>
<h2>Summary</h2>
<table>
<tr><th>accuracy (Wilson 95% CI)</th><td>{{ s.accuracy.fmt() }}</td></tr>
{% for k, v in s.pass_at_k.items() %}<tr><th>{{ k }}</th><td>{{ v | num(3) }}</td></tr>{% endfor %}
<tr><th>mean score</th><td>{{ s.mean_score | num(3) }}</td></tr>
<tr><th>items / samples</th><td>{{ s.n_items }} / {{ s.n_samples }}</td></tr>
<tr><th>inference errors</th><td>{{ s.n_errors }} {% for k, v in s.errors_by_kind.items() %}{{ k }}={{ v }} {% endfor %}</td></tr>
<tr><th>ungraded</th><td>{{ s.n_ungraded }}</td></tr>
<tr><th>verdicts</th><td>{% for k, v in s.verdicts.items() | sort %}{{ k }}: {{ v }}<br>{% endfor %}</td></tr>
</table>
<p class="small">Accuracy counts inference errors and undecided grades as not correct.</p>
{% for title, groups in [("Per subject", s.per_subject), ("Per level", s.per_level)] if groups %}
<h2>{{ title }}</h2>
<table><tr><th>group</th><th>samples</th><th>correct</th><th>accuracy [95% CI]</th><th>inference errors</th><th>ungraded</th><th>mean score</th></tr>
{% for g in groups %}<tr><td>{{ g.name }}</td><td>{{ g.n_samples }}</td><td>{{ g.n_correct }}</td><td>{{ g.accuracy.fmt() }}</td><td>{{ g.n_errors }}</td><td>{{ g.n_ungraded }}</td><td>{{ g.mean_score | num }}</td></tr>{% endfor %}
</table>{% endfor %}
<h2>Latency</h2>
<table><tr><th></th><th>n</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>
{% for name, q in [("latency (s)", s.latency_s), ("completion tokens", s.completion_tokens)] %}
<tr><td>{{ name }}</td><td>{{ q.n }}</td><td>{{ q.mean | num }}</td><td>{{ q.p50 | num }}</td><td>{{ q.p90 | num }}</td><td>{{ q.p99 | num }}</td><td>{{ q.max | num }}</td></tr>{% endfor %}
</table>
<p>Throughput {{ s.tokens_per_s | num(1) }} completion tokens/s of model time.</p>
{{ latency_svg | safe }}
<h2>Samples</h2>
{% for r in rows %}
<details><summary><code>{{ r.item_id }}</code> #{{ r.sample }} —
{% if r.error %}<span class="bad">error {{ r.error.kind }}</span>
{% elif r.grade.correct %}<span class="ok">{{ r.grade.verdict }}</span>
{% elif r.grade.correct is none %}<span class="undecided">{{ r.grade.verdict }}</span>
{% else %}<span class="bad">{{ r.grade.verdict }}</span>{% endif %}
<span class="small">{{ r.subject }} · {{ r.latency_s | num }} s · {{ r.completion_tokens }} tokens</span></summary>
<h4>Prompt</h4>{% for msg in r.messages %}<pre><b>{{ msg.role }}</b>: {{ msg.content }}</pre>{% endfor %}
{% if r.reasoning %}<h4>Reasoning</h4><pre>{{ r.reasoning }}</pre>{% endif %}
<h4>Output</h4><pre>{{ r.output }}</pre>
{% if r.error %}<h4>Error</h4><pre>{{ r.error.message }}</pre>{% endif %}
{% if r.grade %}<h4>Extracted answer</h4><pre>{{ r.grade.extracted }}</pre>
<h4>Grader trace</h4><pre>{{ r.grade.trace | pretty }}</pre>{% endif %}
</details>{% endfor %}
</body></html>
"""  # noqa: E501


def render_html(run: Run, s: RunSummary) -> str:
    m = run.manifest
    latencies = [r.latency_s for r in run.rows if r.error is None and r.latency_s is not None]
    context: dict[str, Any] = {
        "title": f"Bench {m.suite} — role {m.role} ({m.model})",
        "css": CSS, "m": m, "s": s, "root": run.root, "regraded": run.regraded,
        "rows": sorted(run.rows, key=lambda r: (r.item_id, r.sample)),
        "latency_svg": histogram_svg(latencies, "latency per sample (s)"),
    }
    return environment().from_string(PAGE).render(**context)


def write_html_report(run: Run, summary: RunSummary) -> Path:
    path = Path(run.root) / "report.html"
    path.write_text(render_html(run, summary), encoding="utf-8")
    return path
