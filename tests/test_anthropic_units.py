"""The Anthropic <-> OpenAI mapping of `/v1/messages` as pure functions (the end-to-end tests
with the `anthropic` SDK and a real model are in tests/test_server_anthropic.py): what each
block becomes, and the event sequence a stream of OpenAI chunks turns into."""

from __future__ import annotations

import json
from typing import Any

from localroute.server.anthropic_format import EventTranslator, message
from localroute.server.anthropic_schemas import MessagesRequest


def _request(**fields: Any) -> MessagesRequest:
    return MessagesRequest.model_validate({"model": "auto", "max_tokens": 64, **fields})


def test_a_tool_round_maps_to_openai_messages_in_order() -> None:
    req = _request(
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should call the tool", "signature": "x"},
                {"type": "tool_use", "id": "call_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1",
                 "content": [{"type": "text", "text": "18 C"}]},
                {"type": "text", "text": "And tomorrow?"}]},
        ],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": "get_weather"}, stop_sequences=["END"])
    out = req.to_openai()
    msgs = [m.model_dump(exclude_none=True) for m in out.messages]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "user"]
    assert msgs[0]["content"] == "Be brief."
    # Thinking is not sent back; the tool call keeps its id and its input as JSON text.
    assert msgs[2]["content"] == ""
    call = msgs[2]["tool_calls"][0]
    assert call["id"] == "call_1" and json.loads(call["function"]["arguments"]) == {
        "city": "Paris"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}
    assert msgs[4]["content"] == "And tomorrow?"
    assert out.tools == [{"type": "function", "function": {
        "name": "get_weather", "description": "", "parameters": {"type": "object"}}}]
    assert out.passthrough() == {
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stop": ["END"]}
    assert out.token_limit == 64 and not out.stream


def test_a_failed_tool_result_says_so_and_any_means_required() -> None:
    req = _request(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "no such city",
         "is_error": True}]}], tool_choice={"type": "any"}, stream=True)
    out = req.to_openai()
    assert out.messages[0].content == "error: no such city"
    assert out.passthrough()["tool_choice"] == "required"
    assert out.include_usage  # the usage chunk feeds the final message_delta


def test_a_completion_becomes_thinking_text_and_tool_use_blocks() -> None:
    completion = {
        "model": "m", "localroute": {"trace_id": "abc"},
        "choices": [{"finish_reason": "tool_calls", "message": {
            "content": "Let me look.", "reasoning_content": "hmm",
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{broken"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    out = message(completion)
    assert out["id"] == "msg_abc" and out["stop_reason"] == "tool_use"
    assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use"]
    # Broken arguments stay visible rather than vanishing.
    assert out["content"][2]["input"] == {"__invalid_json__": "{broken"}
    assert out["usage"] == {"input_tokens": 7, "output_tokens": 3}


def _events(translator: EventTranslator, *chunks: Any) -> list[dict[str, Any]]:
    out: list[bytes] = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, bytes) else json.dumps(chunk).encode()
        out += translator.feed(data)
    events = []
    for raw in out:
        name, data = raw.decode().strip().split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"delta": delta, "finish_reason": finish}], **extra}


def test_a_stream_opens_one_block_per_kind_in_order() -> None:
    events = _events(
        EventTranslator(),
        _chunk({"role": "assistant", "content": ""}, localroute={"trace_id": "t1"}),
        _chunk({"reasoning_content": "think "}), _chunk({"reasoning_content": "more"}),
        _chunk({"content": "Hi"}), _chunk({"content": " there"}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {
            "name": "f", "arguments": "{\"a\": 1}"}}]}),
        _chunk({}, "tool_calls", localroute={"trace_id": "t1", "validation": "skipped"}),
        {"model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}},
        b"[DONE]")
    kinds = [e["type"] for e in events]
    assert kinds == ["message_start",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert events[0]["message"]["id"] == "msg_t1"
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [
        (0, "thinking"), (1, "text"), (2, "tool_use")]
    assert events[10]["delta"] == {"type": "input_json_delta", "partial_json": "{\"a\": 1}"}
    final = events[-2]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {"input_tokens": 5, "output_tokens": 9}
    assert final["localroute"]["validation"] == "skipped"


def test_an_error_chunk_ends_the_stream_with_an_error_event() -> None:
    translator = EventTranslator()
    events = _events(translator, _chunk({"content": "partial"}),
                     {"error": {"message": "window check failed", "type": "server_error",
                                "code": "validation_failed"}},
                     b"[DONE]")
    assert [e["type"] for e in events] == ["message_start", "content_block_start",
                                           "content_block_delta", "error"]
    assert events[-1]["error"]["type"] == "api_error"
    assert "window check failed" in events[-1]["error"]["message"]
    assert translator.finish() == []  # nothing after the error, not even message_stop
