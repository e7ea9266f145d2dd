"""Model calls, validation verdicts and the CLI views, with the real llama.cpp server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from localroute.cli.main import app
from localroute.config.modes import load_modes
from localroute.config.telemetry import StoreSettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.routing.classifier import RouteClassifier
from localroute.telemetry.emitter import Telemetry
from localroute.telemetry.stats import compute_stats
from tests.conftest import make_profile, server_role
from tests.support.servers import LlamaServer


@pytest.fixture
def telemetry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    monkeypatch.setenv("LOCALROUTE_TELEMETRY_URL", url)  # what the CLI commands read
    tel = Telemetry(StoreSettings(url=url, batch_window_ms=20))
    yield tel
    tel.close()


async def test_model_calls_and_validation_are_recorded_and_shown(
    llama_server: LlamaServer, telemetry: Telemetry
) -> None:
    roles = {r: server_role(llama_server.base_url, max_tokens=8) for r in ("router", "coding")}
    base = load_modes()
    modes = base.model_copy(update={"validation": base.validation.model_copy(
        update={"use_model": False})})
    orch = build_orchestrator(make_profile(roles), modes=modes, classifier=RouteClassifier.load(),
                              telemetry=telemetry,
                              telemetry_config=TelemetryConfig(telemetry=telemetry.settings))
    try:
        ctx = await orch.run(ExecutionContext(
            messages=[{"role": "user", "content": "Write a Python function that adds two "
                       "numbers."}], channel="code", allow_router_model=False))
    finally:
        await orch.deps.client.aclose()
    assert telemetry.flush()
    rows = telemetry.store.select(trace_id=ctx.trace_id)
    calls = [r for r in rows if r["event"] == "model.call"]
    assert len(calls) == ctx.llm_calls >= 1
    call = calls[0]
    assert call["role"] == "coding" and call["ok"] and call["data"]["backend"] == "llamacpp"
    assert call["data"]["completion_tokens"] > 0 and call["data"]["tokens_per_s"] > 0
    assert call["data"]["finish_reason"] in ("length", "stop") and call["data"]["attempts"] >= 1
    llm_spans = {r["span_id"] for r in rows if r["event"] == "state.transition"
                 and r["data"]["state"] == "LLM_CALL"}
    assert call["parent_span_id"] in llm_spans  # attached to the step that made it
    verdicts = [r for r in rows if r["event"] == "validation.verdict"]
    assert len(verdicts) == ctx.validation_attempts >= 1
    assert [v["data"]["attempt"] for v in verdicts] == list(range(1, len(verdicts) + 1))
    selection = next(r for r in rows if r["event"] == "routing.role_selection")
    assert selection["role"] == "coding" and selection["data"]["task_type"].startswith("coding/")

    stats = compute_stats(telemetry.store, 3600)
    assert stats["tokens_by_role"]["coding"]["completion"] > 0
    assert stats["latency_ms"]["by_role"]["coding"]["p50"] > 0
    assert stats["validation"]["verdicts"] == len(verdicts)

    runner = CliRunner()
    result = runner.invoke(app, ["stats", "--json", "--last", "1h"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for name in ("routing_overhead_ms", "direct_tool_execution_rate", "validation_catch_rate",
                 "task_success_rate"):
        assert name in data["adr"]
    assert data["requests"] == 1 and data["adr"]["task_success_rate"] is not None
    shown = runner.invoke(app, ["telemetry", "trace", ctx.trace_id])
    assert shown.exit_code == 0, shown.output
    for text in ("request.outcome", "LLM_CALL", "model.call", "validation.verdict"):
        assert text in shown.output
    listed = runner.invoke(app, ["telemetry", "query", "--event", "model.call", "--json"])
    assert [r["trace_id"] for r in json.loads(listed.output)] == [ctx.trace_id] * len(calls)
    said = runner.invoke(app, ["feedback", ctx.trace_id, "bad", "--note", "too short"])
    assert said.exit_code == 0 and "recorded: bad" in said.output
    assert compute_stats(telemetry.store, 3600)["feedback"] == {"bad": 1}
