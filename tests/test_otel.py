"""OpenTelemetry export (issue 16, point 5): requests through a real `localroute serve` and real
`localroute ask` subprocesses arrive at a real OTLP/HTTP receiver on loopback (tests/support/
otlp.py, decoding with opentelemetry-proto's classes) as one trace each, with the span tree the
telemetry store holds for the same trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from localroute.config.loader import ConfigError
from localroute.config.telemetry import OtelSettings, StoreSettings, load_telemetry_config
from localroute.telemetry import events as ev
from localroute.telemetry.otel import OtelUnavailable, otel_target
from localroute.telemetry.otel_spans import SpanExporter
from localroute.telemetry.store import EventStore
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.servers import MODEL_ALIAS, LlamaServer, free_port
from tests.test_server import Serve, write_config

STATES = {"INIT", "ROUTING_DECISION", "MODEL_SELECTION", "LLM_CALL", "VALIDATION",
          "SYNTHESIS"}
CANARY = "zqx-otel-canary.txt"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.stop()


def localroute(*args: str, env: dict[str, str], cwd: Path,
               prelude: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess with none of the person's LOCALROUTE_ or OTEL_ settings;
    `prelude` runs first in the interpreter (to hide a package)."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("LOCALROUTE_", "OTEL_"))}
    code = f"{prelude}\nfrom localroute.cli.main import run\nrun()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=180, env={**environ, **env}, cwd=cwd)


def by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def text_of(spans: list[ReceivedSpan]) -> str:
    """Every name, attribute value and status message the receiver got."""
    return json.dumps([[s.name, s.status_message, s.attributes] for s in spans], default=str)


def test_a_served_request_is_one_trace_with_the_recorded_span_tree(
        llama_server: LlamaServer, receiver: OtlpReceiver, tmp_path: Path) -> None:
    config = write_config(tmp_path / "models.yaml", llama_server.base_url)
    store_url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    # A 10-minute batch delay: the spans can only leave in the flush when the server stops.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000",
           "LOCALROUTE_TELEMETRY_URL": store_url}
    server = Serve(config, env=env)
    try:
        completion = server.client().chat.completions.create(
            model="auto", max_tokens=8, messages=[{"role": "user", "content": "Write a Python "
                                                   "function that adds two numbers."}])
        summary: dict[str, Any] = (completion.model_extra or {})["localroute"]
        assert receiver.spans == []  # nothing yet: the batch waits
    finally:
        server.stop()  # SIGTERM: uvicorn shuts down, then the exit flush sends the batch
    spans = receiver.wait_for(1, timeout=5)
    assert spans, f"no span arrived; server output:\n{server.output()}"
    assert receiver.content_types == {"application/x-protobuf"}

    assert {s.trace_id for s in spans} == {summary["trace_id"]}  # one trace, the request's id
    ids = by_id(spans)
    assert len(ids) == len(spans)
    roots = [s for s in spans if s.parent_span_id is None]
    assert [r.name for r in roots] == ["request"]
    root = roots[0]
    assert root.resource["service.name"] == "localroute" and root.scope == "localroute"
    assert root.attributes["localroute.state"] == "COMPLETED" and not root.error
    assert root.attributes["localroute.route"] == summary["route"] == "coding"
    assert root.attributes["localroute.role"] == summary["role"]
    assert root.attributes["localroute.decided_by"] == summary["decided_by"]
    assert root.attributes["localroute.validation"] == summary["validation"]
    for s in spans:  # a whole tree: every parent is a span of the trace
        assert s.parent_span_id is None or s.parent_span_id in ids, s
        assert s.end_ns >= s.start_ns

    states = [s for s in spans if s.attributes["localroute.event"] == "state.transition"]
    assert {s.name for s in states} >= STATES
    assert all(s.parent_span_id == root.span_id for s in states)  # all under the request

    def under(event: str) -> tuple[list[ReceivedSpan], set[str]]:
        """The spans of `event` and the names of the spans they hang under."""
        found = [s for s in spans if s.attributes["localroute.event"] == event]
        return found, {ids[s.parent_span_id or ""].name for s in found}

    decisions, parents = under("routing.decision")
    assert len(decisions) == 1 and parents == {"ROUTING_DECISION"}
    assert decisions[0].attributes["localroute.decided_by"] == summary["decided_by"]
    selections, parents = under("routing.role_selection")
    assert len(selections) == 1 and parents == {"MODEL_SELECTION"}
    assert selections[0].attributes["localroute.role"] == summary["role"]
    calls, parents = under("model.call")
    assert "LLM_CALL" in parents and parents <= {"ROUTING_DECISION", "LLM_CALL", "VALIDATION"}
    answer = next(c for c in calls if ids[c.parent_span_id or ""].name == "LLM_CALL")
    assert answer.kind == Span.SPAN_KIND_CLIENT
    assert answer.attributes["localroute.model"] == MODEL_ALIAS == summary["model"]
    assert answer.attributes["gen_ai.request.model"] == MODEL_ALIAS
    assert answer.attributes["localroute.role"] == summary["role"]
    assert answer.attributes["gen_ai.usage.input_tokens"] > 0
    assert 0 < answer.attributes["gen_ai.usage.output_tokens"] <= 8  # max_tokens above
    assert answer.attributes["localroute.completion_tokens"] == (
        answer.attributes["gen_ai.usage.output_tokens"])
    # The coding route is validated (modes.yaml: validation.skip_routes is tool and router).
    verdicts, parents = under("validation.verdict")
    assert verdicts and parents == {"VALIDATION"}
    assert {v.attributes["localroute.verdict"] for v in verdicts} <= {"passed", "failed"}

    # The same tree as the store's (what `localroute telemetry trace` shows): each event one
    # span with its own span id, parent and duration.
    store = EventStore(store_url)
    try:
        rows = store.select(trace_id=summary["trace_id"])
    finally:
        store.close()
    assert {(r["span_id"], r["parent_span_id"], r["event"]) for r in rows} == {
        (s.span_id, s.parent_span_id, s.attributes["localroute.event"]) for s in spans}
    for r in rows:
        took_ms = (ids[r["span_id"]].end_ns - ids[r["span_id"]].start_ns) / 1e6
        assert abs(took_ms - (r["duration_ms"] or 0.0)) < 0.01, r


def _ask(question: str, *, receiver: OtlpReceiver, tmp_path: Path, record_queries: bool = True,
         prelude: str = "", extra_env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    """`localroute ask --json` against a dead model server (tool answers work, model calls
    fail), the store off, export configured by telemetry.yaml's key."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / CANARY).write_text("nothing to see\n")
    settings = tmp_path / f"telemetry-{record_queries}.yaml"
    settings.write_text(yaml.safe_dump({"version": 1, "telemetry": {
        "enabled": False, "record_queries": record_queries,
        "otel": {"endpoint": receiver.endpoint}}}), encoding="utf-8")
    config = write_config(tmp_path / "models.yaml", f"http://127.0.0.1:{free_port()}/v1")
    env = {"LOCALROUTE_STATE_DIR": str(tmp_path / "state"),
           "LOCALROUTE_TELEMETRY_CONFIG": str(settings), **(extra_env or {})}
    return localroute("--config", str(config), "--profile", "test", "ask", question, "--json",
                      env=env, cwd=work, prelude=prelude)


def test_a_failed_request_is_an_error_span_with_its_reason(
        receiver: OtlpReceiver, tmp_path: Path) -> None:
    done = _ask("Write a Python function that adds two numbers.", receiver=receiver,
                tmp_path=tmp_path)
    assert done.returncode == 1, done.stderr  # the model server is not there
    answer = json.loads(done.stdout)
    assert answer["state"] == "FAILED" and answer["error"]
    spans = receiver.wait_for(1, timeout=5)  # sent by the exit flush of the CLI
    assert {s.trace_id for s in spans} == {answer["trace_id"]}  # the store was off: still sent
    root = next(s for s in spans if s.parent_span_id is None)
    assert root.name == "request" and root.error
    assert root.status_message == answer["error"]
    assert root.attributes["localroute.state"] == "FAILED"
    failed_calls = [s for s in spans if s.name == "model.call" and s.error]
    assert failed_calls and all(s.status_message for s in failed_calls)
    assert all(s.attributes["localroute.ok"] is False for s in failed_calls)
    failed_states = [s for s in spans if s.attributes["localroute.event"] == "state.transition"
                     and s.attributes["localroute.next_state"] == "FAILED"]
    assert len(failed_states) == 1 and failed_states[0].error
    assert not [s for s in spans if s.error and s not in (root, *failed_calls, *failed_states)]


def test_record_queries_false_sends_nothing_from_the_query(tmp_path: Path) -> None:
    # Recorded, the file name is in the spans (the query, the step detail quoting the tool's
    # arguments): the check below can fail.
    sent: dict[bool, str] = {}
    for record_queries in (True, False):
        receiver = OtlpReceiver()
        try:
            work = tmp_path / "work"
            done = _ask(f"cat {work / CANARY}", receiver=receiver, tmp_path=tmp_path,
                        record_queries=record_queries)
            assert done.returncode == 0, done.stderr
            spans = receiver.wait_for(1, timeout=5)
            assert {s.name for s in spans} >= {"request", "tool.call"}
            sent[record_queries] = text_of(spans)
        finally:
            receiver.stop()
    assert CANARY in sent[True] and "localroute.query" in sent[True]
    assert CANARY not in sent[False] and "localroute.query" not in sent[False]
    assert "[redacted]" in sent[False]


def test_without_the_sdk_a_configured_endpoint_says_which_extra(
        receiver: OtlpReceiver, tmp_path: Path) -> None:
    # The SDK hidden from the interpreter, as on an install without the otel extra (the API
    # alone may be there: FastAPI depends on it).
    done = _ask("what time is it", receiver=receiver, tmp_path=tmp_path,
                prelude="import sys; sys.modules['opentelemetry.sdk'] = None")
    assert done.returncode == 0, done.stderr  # the request runs on
    assert json.loads(done.stdout)["state"] == "COMPLETED"
    said = [line for line in done.stderr.splitlines() if "OpenTelemetry" in line]
    assert len(said) == 1, done.stderr
    assert "pip install 'localroute[otel]'" in said[0] and "telemetry.otel.endpoint" in said[0]
    assert receiver.spans == [] and receiver.requests == 0


def test_an_unsupported_protocol_is_refused_by_name(
        receiver: OtlpReceiver, tmp_path: Path) -> None:
    done = _ask("what time is it", receiver=receiver, tmp_path=tmp_path,
                extra_env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert done.returncode == 0, done.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in done.stderr
    assert "HTTP/protobuf only" in done.stderr
    assert receiver.requests == 0


def test_a_receiver_that_is_down_is_given_up_on_at_exit(tmp_path: Path) -> None:
    dead = OtlpReceiver()
    dead.stop()  # its port now refuses connections
    done = _ask("what time is it", receiver=dead, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "COMPLETED"
    assert f"OpenTelemetry spans not sent to {dead.endpoint}/v1/traces" in done.stderr


def test_a_sampled_trace_is_sent_whole_or_not_at_all(
        receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's own sampler by its standard variables: half the traces, chosen by trace id at
    # the root; below it each span follows its parent's flag, which localroute sets.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    exporter = SpanExporter(receiver.endpoint + "/v1/traces")
    traces = []
    for _ in range(40):  # children first, the request last: the order the recorder emits in
        trace, root, step = ev.new_trace_id(), ev.new_span_id(), ev.new_span_id()
        traces.append(trace)
        exporter.put(ev.tool_call(trace, step, tool="time", ok=True, elapsed_ms=0.2, error=None,
                                  direct=True))
        exporter.put(ev.state_transition(
            trace, step, root, state="TOOL_ONLY_EXECUTION", next_state="SYNTHESIS",
            started_ms=1.0, elapsed_ms=0.5, detail="tool time({}) ok", role=None, route="tool"))
        exporter.put(ev.request_outcome(
            trace, root, state="COMPLETED", success=True, mode="NORMAL", route="tool", role=None,
            selected_role=None, static_role=None, task_type=None, decided_by="classifier",
            validation="skipped", llm_calls=0, tools_used=["time"], fallbacks=0, error=None,
            total_ms=1.0, timings_ms={}, query=None, channel=None))
    try:
        assert exporter.flush()
    finally:
        exporter.close()
    sent: dict[str, set[str]] = {}
    for s in receiver.spans:
        sent.setdefault(s.trace_id, set()).add(s.name)
    assert 0 < len(sent) < len(traces)  # some sampled out (2 x 0.5^40 that all or none are)
    assert set(sent) <= set(traces)
    assert all(names == {"request", "TOOL_ONLY_EXECUTION", "tool.call"}
               for names in sent.values())


def test_endpoint_precedence() -> None:
    settings = StoreSettings(otel=OtelSettings(endpoint="http://file:4318/"))

    def url(env: dict[str, str], given: StoreSettings = settings) -> str | None:
        target = otel_target(given, env=env)
        return target.url if target else None

    assert url({}, StoreSettings()) is None
    assert url({}) == "http://file:4318/v1/traces"
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318"}
    assert url(base) == "http://base:4318/v1/traces"
    full = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://full:9/x"}
    assert url(full) == "http://full:9/x"
    assert url({**full, "OTEL_SDK_DISABLED": "true"}) is None
    # The traces-specific protocol decides over the general one.
    mixed = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert otel_target(settings, env=mixed) is not None
    with pytest.raises(OtelUnavailable, match="OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318'"):
        otel_target(settings, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"})


def test_a_bad_endpoint_key_names_the_key_and_value(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "telemetry": {
        "otel": {"endpoint": "localhost:4318"}}}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_telemetry_config(path, env={})
    message = str(caught.value)
    assert "otel" in message and "endpoint" in message and "'localhost:4318'" in message
    assert "http://localhost:4318" in message  # what to write instead
