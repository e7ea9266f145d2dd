"""Bench runs against the real llama.cpp server (SmolLM2: low scores; the pipeline is the point):
a run killed mid-way and resumed, regrading, reports, compare, and the suites' graders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from localroute.config.schema import ResolvedRole
from localroute.evaluation.reports.compare import compare_runs
from localroute.evaluation.reports.summary import summarize
from localroute.evaluation.suites.base import BenchItem
from localroute.evaluation.suites.registry import CodeSuite, extract_code, get_suite
from localroute.evaluation.suites.runner import regrade
from localroute.evaluation.suites.store import RunStore, load_run
from localroute.evaluation.suites.system import Scenario, SystemSuite, grade_answer, render_snapshot
from tests.support.paths import EVAL_DATA
from tests.support.servers import MODEL_ALIAS, LlamaServer

LIMIT = 5
KILL_AFTER = 2


def write_config(path: Path, url: str) -> Path:
    path.write_text(
        "# test stack\nversion: 1\nauto_profiles: [t]\nprofiles:\n  t:\n    roles:\n"
        f"      router:\n        id: {MODEL_ALIAS}\n        backend: llamacpp\n"
        f"        endpoint: {url}\n        context_length: 2048\n        max_tokens: 24\n"
        "        temperature: 0.0\n        default_timeout: 60\n"
        "      validation:\n        shares_instance_with: router\n        max_tokens: 48\n",
        encoding="utf-8",
    )
    return path


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "localroute", "--config", str(config), "--profile", "t", *args]


def env() -> dict[str, str]:
    return {**os.environ, "LOCALROUTE_DATA_DIR": str(EVAL_DATA)}


@pytest.fixture(scope="module")
def run_dir(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A math run killed (SIGKILL) after KILL_AFTER samples, then resumed to the end."""
    root = tmp_path_factory.mktemp("bench")
    config = write_config(root / "models.yaml", llama_server.base_url)
    out = root / "run"
    args = cli(config, "bench", "math", "--role", "router", "--limit", str(LIMIT), "--out",
               str(out))
    proc = subprocess.Popen(args, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = out / "samples.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if samples.is_file() and samples.read_text().count("\n") >= KILL_AFTER:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr}"
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: CLI and grader workers
    finally:
        proc.wait(30)
    killed_at = samples.read_text().count("\n")
    assert KILL_AFTER <= killed_at < LIMIT
    done = subprocess.run([*args, "--resume", "--json"], env=env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["written"] == LIMIT - killed_at and result["skipped"] == killed_at
    (root / "killed_at").write_text(str(killed_at))
    return out


def test_resumed_run_has_every_sample_once(run_dir: Path) -> None:
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    keys = Counter(row["key"] for row in lines)
    assert len(keys) == LIMIT and max(keys.values()) == 1
    items = [json.loads(x)["id"] for x in (EVAL_DATA / "math500_subset.jsonl").open()][:LIMIT]
    assert sorted(row["item_id"] for row in lines) == sorted(items)
    manifest = RunStore(run_dir).read_manifest()
    assert [s.status for s in manifest.sessions] == ["interrupted", "completed"]
    assert manifest.sessions[1].rows_written == LIMIT - int(
        (run_dir.parent / "killed_at").read_text())
    assert manifest.model == MODEL_ALIAS and manifest.backend == "llamacpp"
    assert manifest.dataset["sha256"] and manifest.grader_version.startswith("localroute-math")
    assert manifest.sampling["max_tokens"] == 24 and manifest.sampling["protocol"] == "role"
    assert len(manifest.git_commit) >= 7
    for row in lines:  # everything about a sample is logged
        assert row["messages"][0]["content"].endswith("within \\boxed{}.")
        assert row["grade"]["verdict"] in ("equivalent", "not_equivalent", "no_answer")
        assert row["latency_s"] > 0 and row["completion_tokens"] > 0


def test_regrade_gives_the_same_grades(run_dir: Path) -> None:
    before = {r.key: r.grade for r in load_run(run_dir).rows}
    result, changed = regrade(run_dir)
    assert changed == 0 and result.status == "regraded"
    regraded = RunStore(run_dir).read_rows(run_dir / "regraded.jsonl")
    assert len(regraded) == LIMIT
    for row in regraded:
        old = before[row.key]
        assert old is not None and row.grade is not None
        assert (row.grade.correct, row.grade.verdict, row.grade.extracted) == (
            old.correct, old.verdict, old.extracted)
    assert RunStore(run_dir).read_manifest().regrades[-1]["changed"] == 0


def test_reports_hold_the_figures(run_dir: Path) -> None:
    run = load_run(run_dir)
    summary = summarize(run)
    md = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert summary.accuracy.fmt() in md and summary.accuracy.fmt() in html
    assert "Algebra" in md and "## Per subject" in md and "p50" in md
    assert "<svg" in html and "latency per sample" in html
    for row in run.rows:  # per-sample drill-down
        assert row.item_id in html and row.item_id in md
    assert "<script" not in html and "<link" not in html and 'src="' not in html
    assert 'href="http' not in html


def test_compare_a_run_with_itself(run_dir: Path) -> None:
    run = load_run(run_dir)
    c = compare_runs(run, run)
    assert c.delta_accuracy == 0.0 and c.paired.pairs == LIMIT
    assert c.paired.only_a == c.paired.only_b == 0 and c.paired.sign_test_p is None


def test_resume_refuses_a_different_config(run_dir: Path, llama_server: LlamaServer) -> None:
    config = write_config(run_dir.parent / "models.yaml", llama_server.base_url)
    base = cli(config, "bench", "math", "--role", "router", "--limit", "1", "--out", str(run_dir))
    other = subprocess.run([*base, "--resume", "--temperature", "0.5"], env=env(),
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "holds a run with config" in other.stderr
    fresh = subprocess.run(base, env=env(), capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 2 and "pass --resume" in fresh.stderr


def test_system_rubric_grades_facts_and_forbidden_claims() -> None:
    suite = get_suite("system")
    items = suite.load(suite.default_path())
    assert len(items) == 20 and len({i.id for i in items}) == 20
    item = next(i for i in items if i.id == "sys-01")
    scenario = Scenario.model_validate(item.data)
    assert "python train.py" in render_snapshot(scenario.snapshot)
    good = "The CPU is saturated: python train.py uses 392% of the 4 cores."
    assert grade_answer(scenario, good).verdict == "correct"
    assert grade_answer(scenario, good).score == 1.0
    bad = good + " Also you are running out of memory."
    graded = grade_answer(scenario, bad)
    assert graded.verdict == "forbidden_claim" and graded.correct is False and graded.score == 0
    half = grade_answer(scenario, "The load is high.")
    assert half.verdict == "missing_facts" and half.score == 0.5
    assert grade_answer(scenario, "<think>python train.py</think>").verdict == "no_answer"
    messages = SystemSuite().messages(item, suite.sampling(_role()))
    assert messages[0]["role"] == "system" and "Why is this machine slow?" in messages[1]["content"]


def _role() -> ResolvedRole:
    from tests.conftest import make_profile

    return make_profile({"router": {"id": "m", "backend": "embedded"}}).role("router")


def test_extract_code_strips_fences() -> None:
    fenced = "Here:\n```python\ndef f(x):\n    return x\n```\nDone."
    assert extract_code(fenced, "f") == "def f(x):\n    return x"
    two = "```python\nimport math\n```\ntext\n```py\ndef g():\n    return 1\n```"
    assert extract_code(two, "g") == "def g():\n    return 1"
    assert extract_code(two, "h") == "import math\n\ndef g():\n    return 1"
    truncated = "```python\ndef f(x):\n    return x"
    assert extract_code(truncated, "f") == "def f(x):\n    return x"
    assert extract_code("    return x\n", "f") == "    return x"


def test_code_suite_grades_completions_in_the_sandbox() -> None:
    suite = CodeSuite()
    items = {i.id: i for i in suite.load(EVAL_DATA / "code_subset.jsonl")}
    item: BenchItem = items["HumanEval/3"]
    right = ("```python\ndef below_zero(operations):\n    balance = 0\n    for op in operations:\n"
             "        balance += op\n        if balance < 0:\n            return True\n"
             "    return False\n```")
    wrong = "```python\ndef below_zero(operations):\n    return False\n```"
    grades = suite.grade_many([(item, right), (item, wrong)])
    assert [g.verdict for g in grades] == ["passed", "failed"]
    assert grades[0].correct is True and grades[1].correct is False
    assert grades[0].extracted is not None and "```" not in grades[0].extracted
    assert "sandbox" in suite.manifest_extra()
