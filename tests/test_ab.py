"""A/B runs against the real llama.cpp server: both orders judged, objective grades beside the
judge's, files and the experiment record written; a dead side loses without a judge."""

from __future__ import annotations

import json
from pathlib import Path

from localroute.config.schema import ResolvedProfile
from localroute.evaluation.ab.report import write_ab, write_experiment_record
from localroute.evaluation.ab.run import AbOptions, run_ab
from localroute.evaluation.stats import ab_stats
from tests.conftest import make_profile, server_role
from tests.support.servers import MODEL_ALIAS, LlamaServer, free_port


def profile(url: str) -> ResolvedProfile:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return make_profile({
        "router": server_role(url, max_tokens=24),
        "validation": {"shares_instance_with": "router", "max_tokens": 96, "temperature": 0.0},
        "coding": server_role(dead, retries=0, default_timeout=2),
    })


async def test_ab_on_math_judges_both_orders(llama_server: LlamaServer, tmp_path: Path) -> None:
    options = AbOptions(a="router", b=MODEL_ALIAS, base_role="router", suite="math", limit=1,
                        max_tokens=24, out=tmp_path / "ab")
    result = await run_ab(profile(llama_server.base_url), options)
    assert result.b["model"] == MODEL_ALIAS and result.judge["role"] == "validation"
    assert len(result.rows) == 1
    for row in result.rows:
        assert [j.order for j in row.judge] == ["ab", "ba"]
        assert row.reference and row.a.grade is not None and row.b.grade is not None
        assert all(j.preferred in ("a", "b", "tie", "invalid") for j in row.judge)
        agreed = row.judge[0].preferred == row.judge[1].preferred != "invalid"
        assert row.consistent is (agreed if "invalid" not in
                                  (row.judge[0].preferred, row.judge[1].preferred) else None)
        if not agreed:
            assert row.outcome == "tie"
    expected = ab_stats([r.outcome for r in result.rows],
                        [r.consistent for r in result.rows if r.consistent is not None])
    assert result.stats == expected
    assert result.objective["a"]["trials"] == 1 and "judge_agrees_with_grader" in result.objective
    assert result.figures["a"]["latency_s"]["n"] == 1

    out = write_ab(result)
    rows = [json.loads(x) for x in (out / "ab.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["judge"][0]["order"] == "ab"
    md = (out / "report.md").read_text()
    assert f"{result.stats.wins} / {result.stats.ties} / {result.stats.losses}" in md
    html = (out / "report.html").read_text()
    assert "<svg" in html and rows[0]["id"] in html and "<script" not in html
    record = write_experiment_record(result, tmp_path / "E-004.md", "E-004: test", "B >= A.")
    text = record.read_text()
    for section in ("## Hypothesis", "## Setup", "## Results", "## Decision"):
        assert section in text
    assert "keep A" in text or "adopt B" in text


async def test_a_side_that_fails_loses_without_a_judge(
        llama_server: LlamaServer, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "hello", "query": "Say hello."}) + "\n")
    options = AbOptions(a="coding", b="router", queries=queries, out=tmp_path / "ab")
    result = await run_ab(profile(llama_server.base_url), options)
    row = result.rows[0]
    assert row.a.error is not None and row.b.error is None and row.b.output
    assert row.outcome == "win" and row.judge == [] and row.consistent is None
    assert result.figures["a"]["errors"] == 1 and result.stats.wins == 1
    assert result.objective == {}  # a queries file has no grader
