"""The command line as a person runs it: real subprocesses, no model server needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import DEV_SET


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "localroute", *args], capture_output=True,
                          text=True, timeout=300, env=full_env)


def test_models_lists_unreachable_roles_and_exits_0() -> None:
    done = cli("models", "--profile", "m4max", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["roles"]) == 7
    assert all(r["reachable"] is False for r in data["roles"])


def test_doctor_exits_nonzero_naming_what_is_down() -> None:
    done = cli("doctor", "--profile", "m4max")
    assert done.returncode == 1
    assert "router: lmstudio at http://localhost:1234/v1: not answering" in done.stdout
    assert "lms server start" in done.stdout


def test_ask_tool_question_needs_no_server() -> None:
    done = cli("ask", "how much disk space is free?", "--json", "--profile", "m4max")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["route"], data["tool"], data["llm_calls"], data["state"]) == (
        "tool", "disk", 0, "COMPLETED")
    assert "free" in data["reply"]


def test_lockdown_refusal_exits_1_with_the_reason() -> None:
    done = cli("ask", "write a poem about rain", "--mode", "lockdown", "--profile", "m4max")
    assert done.returncode == 1
    assert "LOCKDOWN refuses model inference" in done.stderr


def test_ask_runs_in_the_persisted_manual_mode(tmp_path: Path) -> None:
    state = {"LOCALROUTE_STATE_DIR": str(tmp_path)}
    pinned = cli("mode", "set", "LOCKDOWN", "--reason", "incident", env=state)
    assert pinned.returncode == 0, pinned.stderr
    done = cli("ask", "write a poem about rain", "--json", "--profile", "m4max", env=state)
    assert done.returncode == 1
    assert json.loads(done.stdout)["mode"] == "LOCKDOWN"
    assert cli("mode", "set", "auto", env=state).returncode == 0
    again = cli("ask", "how much disk space is free?", "--json", "--profile", "m4max", env=state)
    assert again.returncode == 0 and json.loads(again.stdout)["mode"] == "NORMAL"


def test_bad_mode_is_a_usage_error() -> None:
    done = cli("ask", "hi", "--mode", "panic")
    assert done.returncode == 2
    assert "--mode: unknown mode 'panic'; use one of NORMAL" in done.stderr


def test_route_prints_both_stages() -> None:
    done = cli("route", "Prove that there are infinitely many primes.", "--no-model", "--json",
               "--profile", "m4max")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["decision"]["route"] == "reasoning"
    assert data["selection"]["role"] == "reasoning"


def test_graph_prints_mermaid() -> None:
    done = cli("graph")
    assert done.returncode == 0 and done.stdout.startswith("stateDiagram-v2")


def test_eval_routing_json_has_the_documented_keys() -> None:
    done = cli("eval", "routing", str(DEV_SET), "--no-model", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    for key in ("accuracy", "n", "per_route", "confusion", "bypass_rate", "escalation_rate"):
        assert key in data
    assert set(data["latency_ms"]) == {"p50", "p99"}
    assert data["n"] == 302 and data["escalation_rate"] == 0.0
    # The shipped classifier was trained on these rows: in-sample, it must be near perfect.
    assert data["accuracy"] >= 0.98


def test_eval_routing_cv_requires_no_model() -> None:
    done = cli("eval", "routing", str(DEV_SET), "--cv", "5")
    assert done.returncode == 2 and "add --no-model" in done.stderr


def test_stats_count_eval_routing_decisions_and_ask_calls(tmp_path: object) -> None:
    env = {"LOCALROUTE_STATE_DIR": str(tmp_path)}
    dev = str(DEV_SET)
    assert cli("eval", "routing", dev, "--no-model", "--json", env=env).returncode == 0
    assert cli("ask", "how much memory is free?", "--profile", "m4max", env=env).returncode == 0
    done = cli("stats", "--json", env=env)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert sum(stats["decided_by"].values()) == 303  # 302 evaluated + 1 asked
    assert stats["requests"] == 1 and stats["adr"]["direct_tool_execution_rate"] == 1.0
    assert stats["router_model_escalation_rate"] == 0.0
