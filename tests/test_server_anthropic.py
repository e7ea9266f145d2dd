"""The Anthropic Messages API (`POST /v1/messages`) of `localroute serve` (a real subprocess) in
front of the real llama.cpp server, with the official `anthropic` SDK as the client; the fault
proxy between them only where a test needs the model to think (SmolLM2 does not), and says so
(docs/server.md, "Anthropic Messages API")."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.faultproxy import Fault, FaultProxy
from tests.support.servers import MODEL_ALIAS, LlamaServer
from tests.test_server import Serve, write_config

KEY = "anthropic-test-key"
STORY = "Tell me a story about a dragon"  # `auto` routes it to the router role, no validation
WEATHER: Any = {"name": "get_weather", "description": "Current weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}
FORCE_WEATHER: Any = {"type": "tool", "name": "get_weather"}
ASK_WEATHER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def proxy(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_fault(proxy: FaultProxy) -> Iterator[None]:
    yield
    proxy.clear()


@pytest.fixture(scope="module")
def served(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    config = write_config(tmp_path_factory.mktemp("anthropic") / "models.yaml", proxy.base_url)
    server = Serve(config, env={"LOCALROUTE_API_KEY": KEY})
    yield server
    server.stop()


def client(served: Serve, **kwargs: Any) -> anthropic.Anthropic:
    """The SDK as a user points it at localroute: the server's root URL, the key as api_key
    (sent as `x-api-key`) unless the test passes auth_token (sent as a bearer token)."""
    kwargs.setdefault("api_key", KEY)
    return anthropic.Anthropic(base_url=served.url, max_retries=0, timeout=60.0, **kwargs)


def extra(obj: Any) -> dict[str, Any]:
    summary: dict[str, Any] = (obj.model_extra or {})["localroute"]
    return summary


# ---- answers ------------------------------------------------------------------------------

def test_auto_answers_as_an_anthropic_message(served: Serve) -> None:
    raw = client(served).messages.with_raw_response.create(
        model="auto", max_tokens=32, system="You are a storyteller.",
        messages=[{"role": "user", "content": STORY}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    texts = [b for b in message.content if b.type == "text"]
    assert len(texts) == 1 and texts[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.model == MODEL_ALIAS
    # The routing summary rides in a field SDKs ignore, and in the same headers as OpenAI's.
    routed = extra(message)
    assert routed["route"] == "router" and routed["role"] == "router"
    assert message.id == f"msg_{routed['trace_id']}"
    assert raw.headers["x-localroute-trace-id"] == routed["trace_id"]


def test_a_role_answers_directly_with_a_bearer_key(served: Serve) -> None:
    message = client(served, api_key=None, auth_token=KEY).messages.create(
        model="router", max_tokens=8, messages=[{"role": "user", "content": "Say hello"}],
        stop_sequences=["\n\n"],
        extra_body={"temperature": 0.0})  # older SDKs and other clients still send it
    assert extra(message)["route"] == "direct" and extra(message)["decided_by"] == "request"
    assert message.content and message.content[0].type == "text"


def test_auto_streams_anthropic_events(served: Serve) -> None:
    deltas: list[str] = []
    with client(served).messages.stream(
            model="auto", max_tokens=48,
            messages=[{"role": "user", "content": STORY}]) as stream:
        for text in stream.text_stream:
            deltas.append(text)
        final = stream.get_final_message()
    assert len(deltas) >= 5, deltas  # token by token, not one whole block
    text = "".join(deltas)
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_the_raw_event_sequence_carries_the_routing_summary(served: Serve) -> None:
    events = list(client(served).messages.create(
        model="auto", max_tokens=16, stream=True,
        messages=[{"role": "user", "content": STORY}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and "content_block_delta" in kinds
    assert kinds[-3] == "content_block_stop"
    started, ended = extra(events[0].message), extra(events[-2])
    assert started["role"] == "router"
    assert ended["trace_id"] == started["trace_id"] and ended["validation"] == "skipped"


def test_thinking_arrives_as_thinking_blocks(served: Serve, proxy: FaultProxy) -> None:
    # SmolLM2 does not think: the proxy puts a <think> block in front of its answer, which the
    # client splits off as reasoning, as it does for models that think inline.
    proxy.set_fault(Fault(kind="inject", inject="<think>dragons breathe fire</think>"))
    with client(served).messages.stream(
            model="reasoning", max_tokens=16,
            messages=[{"role": "user", "content": STORY}]) as stream:
        thinking = [e.thinking for e in stream if e.type == "thinking"]
        final = stream.get_final_message()
    assert "".join(thinking).strip() == "dragons breathe fire"
    kinds = [b.type for b in final.content]
    assert kinds[0] == "thinking" and "text" in kinds
    block = final.content[0]
    assert block.type == "thinking" and block.thinking.strip() == "dragons breathe fire"
    assert all("<think>" not in b.text for b in final.content if b.type == "text")


# ---- tools --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["router", "auto"])
def test_a_forced_tool_comes_back_as_a_tool_use_block(served: Serve, model: str) -> None:
    message = client(served).messages.create(
        model=model, max_tokens=48, messages=ASK_WEATHER, tools=[WEATHER],
        tool_choice=FORCE_WEATHER)
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert len(uses) >= 1
    use = uses[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.id
    assert isinstance(use.input, dict) and "__invalid_json__" not in use.input


def test_a_streamed_tool_call_is_assembled_by_the_sdk(served: Serve) -> None:
    with client(served).messages.stream(
            model="router", max_tokens=48, messages=ASK_WEATHER, tools=[WEATHER],
            tool_choice=FORCE_WEATHER) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.type == "tool_use" and use.name == "get_weather"
    assert isinstance(use.input, dict) and "__invalid_json__" not in use.input


def test_a_tool_result_goes_back_to_the_model(served: Serve) -> None:
    sdk = client(served)
    first = sdk.messages.create(model="router", max_tokens=48, messages=ASK_WEATHER,
                                tools=[WEATHER], tool_choice=FORCE_WEATHER)
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.type == "tool_use"
    turns: Any = [*ASK_WEATHER, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": use.id,
                       "content": "18 degrees and sunny"}]}]
    second = sdk.messages.create(model="router", max_tokens=24, messages=turns,
                                 tools=[WEATHER], tool_choice={"type": "none"})
    # With tools refused, the model answers in words after reading the tool's result.
    assert second.stop_reason in ("end_turn", "max_tokens")
    texts = [b for b in second.content if b.type == "text"]
    assert texts and texts[0].type == "text" and texts[0].text.strip()
    # Counted by the server: the tool result made the prompt longer than the question alone.
    assert second.usage.input_tokens > first.usage.input_tokens


def test_count_tokens_estimates_the_prompt(served: Serve) -> None:
    sdk = client(served)
    short = sdk.messages.count_tokens(model="auto", messages=ASK_WEATHER)
    longer = sdk.messages.count_tokens(model="auto", messages=ASK_WEATHER, tools=[WEATHER])
    assert 0 < short.input_tokens < longer.input_tokens


# ---- auth and errors ----------------------------------------------------------------------

def test_no_key_is_refused_in_anthropics_error_shape(served: Serve) -> None:
    raw = httpx.post(served.url + "/v1/messages", timeout=10.0,
                     json={"model": "auto", "max_tokens": 8,
                           "messages": [{"role": "user", "content": "hi"}]})
    assert raw.status_code == 401
    body = raw.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert "x-api-key" in body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        client(served, api_key="wrong").messages.create(
            model="auto", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


@pytest.mark.parametrize(("body", "status", "kind", "named"), [
    ({"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
     400, "invalid_request_error", "max_tokens"),
    ({"model": "auto", "max_tokens": 8, "temperature": 1.5,
      "messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error",
     "temperature"),
    ({"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}]}]},
     400, "invalid_request_error", "image"),
    ({"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     400, "invalid_request_error", "web_search_20250305"),
    ({"model": "no-such-model", "max_tokens": 8,
      "messages": [{"role": "user", "content": "hi"}]}, 404, "not_found_error", "no-such-model"),
])
def test_invalid_requests_get_anthropic_errors(served: Serve, body: dict[str, Any], status: int,
                                               kind: str, named: str) -> None:
    raw = httpx.post(served.url + "/v1/messages", json=body, timeout=10.0,
                     headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert raw.status_code == status, raw.text
    error = raw.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert named in error["error"]["message"]


def test_the_sdk_raises_its_own_error_types(served: Serve) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(served).messages.create(model="auto", max_tokens=8,
                                       extra_body={"temperature": 1.5},
                                       messages=[{"role": "user", "content": "hi"}])
    assert "temperature" in str(bad.value)
    with pytest.raises(anthropic.NotFoundError):
        client(served).messages.create(model="nope", max_tokens=8,
                                       messages=[{"role": "user", "content": "hi"}])


def test_a_non_json_body_is_refused_in_anthropics_shape(served: Serve) -> None:
    raw = httpx.post(served.url + "/v1/messages", content=b"{not json", timeout=10.0,
                     headers={"x-api-key": KEY, "content-type": "application/json"})
    assert raw.status_code == 400
    assert json.loads(raw.text)["error"]["type"] == "invalid_request_error"



def _gate(served: Serve, name: str) -> float:
    return served.metrics(headers={"x-api-key": KEY})[("localroute_gate_in_flight",
                                                       (("gate", name),))]


def test_a_client_that_leaves_mid_stream_frees_its_slot(served: Serve, proxy: FaultProxy) -> None:
    # Paced by the proxy so the answer is still being written when the client leaves.
    proxy.set_fault(Fault(kind="trickle", event_delay=0.1))
    with httpx.stream("POST", served.url + "/v1/messages", timeout=60.0,
                      headers={"x-api-key": KEY},
                      json={"model": "auto", "max_tokens": 400, "stream": True,
                            "messages": [{"role": "user", "content": STORY}]}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept referenced: dropping it closes the connection
        while "text_delta" not in next(lines):
            pass  # until the model is writing
        assert _gate(served, "router") == 1
    left = time.monotonic()
    deadline = left + 5
    while _gate(served, "router") != 0:
        assert time.monotonic() < deadline, "the router's slot was not freed within 5 s"
        time.sleep(0.05)
