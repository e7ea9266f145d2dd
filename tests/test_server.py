"""`localroute serve` as a real subprocess in front of the real llama.cpp server, driven by the
official `openai` SDK (and raw HTTP where the SDK hides what is checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import (
    MODEL_ALIAS,
    LlamaServer,
    free_port,
    stop_process,
    wait_for_http,
)

ROLES = ("router", "reasoning", "coding", "coding_large_context", "summarization")
WEATHER_TOOL: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def write_config(path: Path, url: str, **extra_roles: dict[str, Any]) -> Path:
    """A models.yaml whose roles all use the llama.cpp server at `url`, one slot each."""
    role = {"id": MODEL_ALIAS, "backend": "llamacpp", "endpoint": url, "context_length": 2048,
            "max_concurrency": 1, "max_tokens": 16, "temperature": 0.0, "retries": 0}
    roles: dict[str, Any] = {name: dict(role) for name in ROLES}
    roles["validation"] = {"shares_instance_with": "router", "max_tokens": 48}
    roles.update(extra_roles)
    config = {"version": 1, "auto_profiles": ["test"], "profiles": {"test": {"roles": roles}}}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Serve:
    """`python -m localroute serve` on a free port; stopped on close."""

    def __init__(self, config: Path, *args: str, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None, wait: bool = True,
                 preexec: Callable[[], None] | None = None, governed: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        # No profile, config or key from the person's shell; the test run's own state dir
        # (conftest) is kept, so the server's telemetry and governor files stay out of theirs.
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith("LOCALROUTE_") or k == "LOCALROUTE_STATE_DIR"}
        environ.update(env or {})
        # A file, not a pipe: nobody drains a pipe while the server runs, and a full one blocks it.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        if not governed and "--mode" not in args:
            # A busy test machine drives the CPU sensor into ALERT, which refuses heavy roles:
            # these tests are about the API, so the mode is pinned (test_server_governance.py
            # starts the server governed by its sensors).
            args = (*args, "--mode", "NORMAL")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localroute", "--config", str(config), "serve", "--host", host,
             "--port", str(self.port), "--profile", "test", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=environ, preexec_fn=preexec)
        if wait:
            self._wait()

    def _wait(self, timeout: float = 60.0) -> None:
        try:
            wait_for_http(self.url + "/health", self.proc, timeout, "localroute serve")
        except RuntimeError as exc:
            out = self.output()
            self.stop()
            raise RuntimeError(f"{exc}: {out}") from exc

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def client(self, api_key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0,
                             timeout=60.0)

    def metrics(self, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[Any, ...]],
                                                                      float]:
        text = httpx.get(self.url + "/metrics", headers=headers, timeout=5.0).text
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def gate(self, name: str, key: str = "in_flight") -> float:
        metric = "localroute_gate_" + key
        return self.metrics()[(metric, (("gate", name),))]

    def stop(self) -> None:
        stop_process(self.proc)
        if not self.log.closed:
            self.log.close()


@pytest.fixture(scope="module")
def config(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("serve") / "models.yaml", llama_server.base_url)


@pytest.fixture(scope="module")
def served(config: Path) -> Iterator[Serve]:
    server = Serve(config, "--max-messages", "50", "--max-body-bytes", "200000")
    yield server
    server.stop()


def _summary(completion: Any) -> dict[str, Any]:
    extra = completion.model_extra or {}
    summary: dict[str, Any] = extra["localroute"]
    return summary


# ---- chat completions through the SDK ------------------------------------------------------

def test_auto_answers_with_the_routing_summary(served: Serve) -> None:
    raw = served.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "what is 2+2"}], max_tokens=8)
    completion = raw.parse()
    summary = _summary(completion)
    assert completion.choices[0].message.content
    assert summary["route"] == "router" and summary["role"] == "router"
    assert summary["decided_by"] == "classifier" and summary["validation"] == "skipped"
    assert completion.id == f"chatcmpl-{summary['trace_id']}"
    assert completion.model == MODEL_ALIAS and completion.usage is not None
    assert raw.headers["x-localroute-trace-id"] == summary["trace_id"]
    assert raw.headers["x-localroute-route"] == "router"
    assert raw.headers["x-localroute-role"] == "router"
    assert raw.headers["x-localroute-model"] == MODEL_ALIAS
    assert raw.headers["x-localroute-decided-by"] == "classifier"
    assert raw.headers["x-localroute-validation"] == "skipped"


def test_auto_answers_a_tool_question_without_a_model(served: Serve) -> None:
    completion = served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "what time is it"}])
    summary = _summary(completion)
    assert summary["route"] == "tool" and summary["tool"] == "time"
    assert summary["role"] is None and summary["llm_calls"] == 0
    content = completion.choices[0].message.content or ""
    assert time.strftime("%Y") in content


def test_auto_streams(served: Serve) -> None:
    chunks = list(served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "what is 2+2"}], max_tokens=8,
        stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert (last.model_extra or {})["localroute"]["route"] == "router"


def test_direct_role_streams_sse_ending_with_done(served: Serve) -> None:
    body = {"model": "router", "stream": True, "max_tokens": 8,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Say hello"}]}
    with httpx.stream("POST", served.base_url + "/chat/completions", json=body,
                      timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-localroute-route"] == "direct"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text.strip()
    finish = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert finish[-1]["localroute"]["role"] == "router"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0


def test_a_configured_model_id_calls_its_role(served: Serve) -> None:
    raw = served.client().chat.completions.with_raw_response.create(
        model=MODEL_ALIAS, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4)
    assert raw.headers["x-localroute-role"] == "router"  # the first role serving that model
    assert raw.headers["x-localroute-decided-by"] == "request"
    assert raw.parse().choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("model", ["router", "auto"])
def test_client_tools_come_back_as_openai_tool_calls(served: Serve, model: str) -> None:
    completion = served.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice=cast(Any, {"type": "function", "function": {"name": "get_weather"}}),
        max_tokens=48)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) >= 1
    call = calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments), dict)


def test_a_streamed_tool_call_arrives_whole(served: Serve) -> None:
    # llama-cpp-python repeats the function name in every delta: the name must not be too.
    chunks = served.client().chat.completions.create(
        model="router", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL], stream=True, max_tokens=48,
        tool_choice=cast(Any, {"type": "function", "function": {"name": "get_weather"}}))
    calls = [c for chunk in chunks if chunk.choices
             for c in chunk.choices[0].delta.tool_calls or []]
    assert len(calls) >= 1
    call = calls[0]
    assert call.function is not None and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments or ""), dict)


@pytest.mark.parametrize("model", ["router", "auto"])
def test_json_schema_output_is_honoured(served: Serve, model: str) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}
    completion = served.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is 2+2? Reply as JSON."}],
        response_format=cast(Any, {"type": "json_schema",
                                   "json_schema": {"name": "Sum", "schema": schema}}),
        max_tokens=40)
    data = json.loads(completion.choices[0].message.content or "")
    assert isinstance(data["answer"], int)


def test_models_lists_auto_roles_and_models(served: Serve) -> None:
    ids = [m.id for m in served.client().models.list()]
    assert ids[0] == "auto"
    assert set(ROLES) | {"validation", MODEL_ALIAS} <= set(ids)


def test_feedback_is_stored_for_a_served_trace(served: Serve) -> None:
    completion = served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "what time is it"}])
    trace = _summary(completion)["trace_id"]
    ok = httpx.post(served.base_url + "/feedback",
                    json={"trace_id": trace, "rating": 1, "note": "right"}).json()
    assert ok["ok"] is True and ok["stored_in"] == "memory"
    # Only traces this server answered: anything else is refused, naming the trace.
    unknown = httpx.post(served.base_url + "/feedback", json={"trace_id": "nope", "rating": -1})
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]["message"]


def test_health_ready_and_metrics(served: Serve) -> None:
    served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "what time is it"}])
    assert httpx.get(served.url + "/health").json()["status"] == "ok"
    ready = httpx.get(served.url + "/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert {r["role"] for r in ready.json()["roles"]} >= set(ROLES)
    text = httpx.get(served.url + "/metrics").text
    assert 'localroute_requests_total{role="none",route="tool",status="200"}' in text
    m = served.metrics()
    assert m[("localroute_tool_only_total", ())] >= 1
    assert m[("localroute_request_latency_seconds_count", (("role", "none"),
                                                           ("route", "tool")))] >= 1
    assert m[("localroute_gate_capacity", (("gate", "router"),))] == 1
    assert ("localroute_router_escalations_total", ()) in m
    assert ("localroute_validation_failures_total", ()) in m


# ---- errors ----------------------------------------------------------------------------------

def _chat(**body: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **body}


MALFORMED: list[tuple[str, Any, int, str]] = [
    ("not json", b"{not json", 400, "invalid_json"),
    ("not an object", b"[1, 2]", 400, "invalid_json"),
    ("no messages", {"model": "auto"}, 422, "invalid_value"),
    ("empty messages", {"model": "auto", "messages": []}, 422, "invalid_value"),
    ("bad role", _chat(messages=[{"role": "robot", "content": "x"}]), 422, "invalid_value"),
    ("max_tokens not a number", _chat(max_tokens="lots"), 422, "invalid_value"),
    ("max_tokens zero", _chat(max_tokens=0), 422, "invalid_value"),
    ("bad tool", _chat(tools=[{"type": "function"}]), 422, "invalid_value"),
    ("bad response_format", _chat(response_format={"type": "xml"}), 422, "invalid_value"),
    ("unknown model", _chat(model="gpt-9"), 404, "model_not_found"),
    ("n above 1", _chat(n=2), 400, "unsupported_value"),
    ("image part", _chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]), 400, "unsupported_content"),
    ("no user message", _chat(messages=[{"role": "system", "content": "be brief"}]), 400,
     "invalid_messages"),
    ("too many messages", _chat(messages=[{"role": "user", "content": "x"}] * 51), 413,
     "too_many_messages"),
    ("body too large", _chat(messages=[{"role": "user", "content": "x" * 250_000}]), 413,
     "request_too_large"),
    ("prompt over the context", _chat(model="router",
                                      messages=[{"role": "user", "content": "word " * 20_000}]),
     400, "context_length_exceeded"),
]


@pytest.mark.parametrize(("kind", "body", "status", "code"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_openai_errors(served: Serve, kind: str, body: Any, status: int,
                                              code: str) -> None:
    url = served.base_url + "/chat/completions"
    if isinstance(body, bytes):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    else:
        response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert "Traceback" not in response.text


def test_the_sdk_raises_its_own_error_types(served: Serve) -> None:
    client = served.client()
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match="max_tokens"):
        client.chat.completions.create(model="auto", max_tokens=-1,
                                       messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405),
    ("POST", "/v1/feedback", 415)])
def test_routing_errors_are_openai_errors(served: Serve, method: str, path: str,
                                          status: int) -> None:
    response = httpx.request(method, served.url + path)
    assert response.status_code == status
    assert response.json()["error"]["message"]


# ---- disconnects free their slot ---------------------------------------------------------------

# SmolLM2 at temperature 0 writes this story to the token limit: minutes of generation here.
LONG = {"model": "reasoning", "max_tokens": 1500, "messages": [{"role": "user", "content": (
    "Write a very long story about a dragon and a knight, with many chapters.")}]}


def _wait_gate(served: Serve, gate: str, value: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.gate(gate) == value:
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"gate {gate} did not reach {value} in {timeout} s")


def test_a_client_that_leaves_mid_stream_frees_its_slot(served: Serve) -> None:
    with httpx.stream("POST", served.base_url + "/chat/completions", json={**LONG, "stream": True},
                      timeout=60) as response:
        assert response.status_code == 200
        # Keep the line iterator referenced: dropping it (a `break` out of a for loop) would
        # close the connection before the gauge is read.
        lines = response.iter_lines()
        while '"content": "' not in (line := next(lines)) or '"role"' in line:
            pass  # until the model is generating
        assert served.gate("reasoning") == 1
    left = time.monotonic()
    freed = _wait_gate(served, "reasoning", 0, timeout=5)
    assert freed - left < 5  # 1500 tokens would take far longer than that
    # The backend call was cancelled too, so the model server is free for the next request.
    after = served.client().chat.completions.create(
        model="reasoning", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4)
    assert after.choices[0].finish_reason in ("stop", "length")


def test_a_client_that_gives_up_waiting_frees_its_slot(served: Serve) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(served.base_url + "/chat/completions", json=LONG, timeout=httpx.Timeout(
            5.0, read=1.5))
    _wait_gate(served, "reasoning", 0, timeout=5)


# ---- safety: auth off loopback, lockdown ---------------------------------------------------------

def test_a_public_bind_without_a_key_refuses_to_start(config: Path) -> None:
    server = Serve(config, host="0.0.0.0", wait=False)
    try:
        code = server.proc.wait(30)
        out = server.output()
    finally:
        server.stop()
    assert code == 2
    assert "--api-key" in out and "LOCALROUTE_API_KEY" in out


def test_a_public_bind_with_a_key_requires_it(config: Path) -> None:
    server = Serve(config, host="0.0.0.0", env={"LOCALROUTE_API_KEY": "s3cret"})
    try:
        missing = httpx.get(server.base_url + "/models")
        wrong = httpx.get(server.base_url + "/models", headers={"Authorization": "Bearer nope"})
        assert missing.status_code == 401 and wrong.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(server.url + "/metrics").status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            server.client("nope").models.list()
        ids = [m.id for m in server.client("s3cret").models.list()]
        assert "auto" in ids
    finally:
        server.stop()


def test_lockdown_refuses_inference_and_still_answers_tools(
        config: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    cfg = write_config(tmp_path / "models.yaml", yaml.safe_load(config.read_text())["profiles"]
                       ["test"]["roles"]["router"]["endpoint"],
                       coding={"id": MODEL_ALIAS, "backend": "llamacpp", "endpoint": dead})
    server = Serve(cfg, "--mode", "LOCKDOWN")
    try:
        client = server.client()
        with pytest.raises(openai.InternalServerError) as direct:
            client.chat.completions.create(model="router",
                                           messages=[{"role": "user", "content": "hi"}])
        assert direct.value.status_code == 503 and "LOCKDOWN" in direct.value.message
        with pytest.raises(openai.InternalServerError) as auto:
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "explain recursion"}])
        assert auto.value.status_code == 503 and "LOCKDOWN" in auto.value.message
        tool = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "what time is it"}])
        assert _summary(tool)["route"] == "tool" and _summary(tool)["mode"] == "LOCKDOWN"
        ready = httpx.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        coding = next(r for r in ready.json()["roles"] if r["role"] == "coding")
        assert coding["reachable"] is False
    finally:
        server.stop()
