"""The OpenAI wire format read straight from JSON: fields of the wrong type (the body is the model
server's, so untrusted) never raise, and streamed tool-call pieces join by index. The real
server's answers go through the same code in test_client_faults.py and test_server.py."""

from __future__ import annotations

from typing import Any

from localroute.backends import wire
from localroute.backends.base import ChatRequest


def test_request_body_puts_extra_fields_on_top_and_drops_a_lone_tool_choice() -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}],
                          max_tokens=5, temperature=0.0,
                          extra_body={"tool_choice": "auto", "seed": 7, "temperature": 0.5})
    body = wire.request_body(request, None, stream=True)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 5, "temperature": 0.5, "seed": 7, "stream": True}


def test_a_completion_with_fields_of_the_wrong_type_reads_as_empty() -> None:
    data: dict[str, Any] = {"model": 3, "usage": {"prompt_tokens": "x", "completion_tokens": 2},
                            "choices": [{"finish_reason": 1, "message": {
                                "content": ["not", "text"], "reasoning_content": "why",
                                "tool_calls": [None, {"id": "c1", "function": {
                                    "name": "clock", "arguments": "{not json"}}]}}]}
    choice = wire.first_choice(data)
    assert choice is not None
    raw = wire.completion(data, choice, "fallback-model", ["note"])
    assert raw.content == "" and raw.reasoning == "why" and raw.finish_reason is None
    assert raw.model == "fallback-model" and raw.notes == ["note"]
    assert raw.usage is not None
    assert (raw.usage.prompt_tokens, raw.usage.completion_tokens) == (0, 2)
    (call,) = raw.tool_calls
    assert (call.id, call.name) == ("c1", "clock")
    assert call.arguments == {"__invalid_json__": "{not json"}


def test_no_choices_is_none() -> None:
    assert wire.first_choice({"choices": []}) is None
    assert wire.first_choice({"choices": "x"}) is None
    assert wire.first_choice({}) is None


def test_streamed_tool_call_pieces_join_by_index_at_the_finish() -> None:
    reader = wire.ChunkReader()
    pieces = [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "a", "function": {
            "name": "disk", "arguments": '{"pa'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"name": "clock"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {
            "arguments": 'th": "/"}'}}]}}]},
        {"choices": [{"delta": {"content": None}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ]
    chunks = [reader.read(p) for p in pieces]
    assert all(c is not None for c in chunks)
    assert [c.tool_calls for c in chunks[:3] if c] == [[], [], []]
    final = chunks[3]
    assert final is not None and final.finish_reason == "tool_calls" and reader.finished
    assert [(t.id, t.name, t.arguments) for t in final.tool_calls] == [
        ("a", "disk", {"path": "/"}), ("call1", "clock", {})]
    assert chunks[4] is not None and chunks[4].usage is not None
    assert chunks[4].usage.total_tokens == 7


def test_a_stream_without_a_finish_reason_is_not_finished() -> None:
    reader = wire.ChunkReader()
    chunk = reader.read({"choices": [{"delta": {"content": "partial"}}]})
    assert chunk is not None and chunk.content == "partial"
    assert not reader.finished
    assert reader.read({"choices": []}) is None  # nothing to hand on
