"""LLMClient against a real llama-cpp-python server, and the embedded backend with no server."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from localroute.client.llm_client import LLMClient
from localroute.types import LLMConnectionError, LLMContextOverflow, LLMError, LLMResponse
from tests.conftest import make_profile, server_role
from tests.support.servers import LlamaServer, free_port

LONG_PROMPT = "Repeat after me: " + "the quick brown fox jumps over the lazy dog. " * 60


async def test_respond_returns_content_usage_and_timings(llama_server: LlamaServer) -> None:
    client = LLMClient(make_profile({"router": server_role(llama_server.base_url)}))
    try:
        r = await client.respond("router", [{"role": "user", "content": "Say hello."}])
    finally:
        await client.aclose()
    assert r.content.strip()
    assert (r.role, r.model, r.backend) == ("router", "smollm2", "llamacpp")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.timings.total_s > 0 and r.attempts == 1 and r.fallbacks == []


async def test_stream_yields_deltas_then_done(llama_server: LlamaServer) -> None:
    client = LLMClient(make_profile({"router": server_role(llama_server.base_url)}))
    try:
        events = [e async for e in client.stream("router", [{"role": "user", "content": "Hi"}])]
    finally:
        await client.aclose()
    deltas = [e.text for e in events if e.type == "content"]
    assert deltas, events
    assert events[-1].type == "done"
    done = events[-1].response
    assert done.content == "".join(deltas).strip()
    assert done.timings.ttft_s is not None and done.timings.ttft_s <= done.timings.total_s


class Capital(BaseModel):
    country: str
    capital: str


async def test_structured_output_gives_a_validated_object(llama_server: LlamaServer) -> None:
    client = LLMClient(make_profile({"router": server_role(llama_server.base_url, max_tokens=60)}))
    try:
        r = await client.respond(
            "router",
            [{"role": "user", "content": "The capital of France as JSON."}],
            response_format=Capital,
        )
    finally:
        await client.aclose()
    assert isinstance(r.parsed, Capital)


async def test_length_finish_is_reported(llama_server: LlamaServer) -> None:
    client = LLMClient(make_profile({"router": server_role(llama_server.base_url)}))
    try:
        r = await client.respond(
            "router", [{"role": "user", "content": "Tell a long story."}], max_tokens=3
        )
    finally:
        await client.aclose()
    assert r.finish_reason == "length" and r.truncated


async def test_overflow_goes_to_the_larger_context_role(llama_server: LlamaServer) -> None:
    profile = make_profile(
        {
            "coding": server_role(
                llama_server.base_url, context_length=128, fallback=["coding_large_context"]
            ),
            "coding_large_context": server_role(llama_server.base_url, context_length=2048),
        }
    )
    client = LLMClient(profile)
    try:
        r = await client.respond("coding", [{"role": "user", "content": LONG_PROMPT}])
    finally:
        await client.aclose()
    assert r.role == "coding_large_context"
    assert [(f.from_role, f.to_role) for f in r.fallbacks] == [("coding", "coding_large_context")]
    assert "context is 128 tokens" in r.fallbacks[0].reason


async def test_overflow_without_fallback_names_both_numbers(llama_server: LlamaServer) -> None:
    client = LLMClient(
        make_profile({"router": server_role(llama_server.base_url, context_length=128)})
    )
    try:
        with pytest.raises(LLMContextOverflow) as info:
            await client.respond("router", [{"role": "user", "content": LONG_PROMPT}])
    finally:
        await client.aclose()
    assert info.value.context_length == 128 and info.value.prompt_tokens > 128
    assert f"needs {info.value.prompt_tokens} tokens" in str(info.value)


async def test_server_side_overflow_is_typed(llama_server: LlamaServer) -> None:
    # The config claims more context than the server has: the server's 400 must still map.
    client = LLMClient(
        make_profile({"router": server_role(llama_server.base_url, context_length=100_000)})
    )
    try:
        with pytest.raises(LLMContextOverflow, match="does not fit"):
            await client.respond("router", [{"role": "user", "content": LONG_PROMPT * 4}])
    finally:
        await client.aclose()


async def test_connection_refused_names_role_model_and_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = LLMClient(make_profile({"router": server_role(url, retries=1)}))
    try:
        with pytest.raises(LLMConnectionError) as info:
            await client.respond("router", [{"role": "user", "content": "hi"}])
    finally:
        await client.aclose()
    message = str(info.value)
    assert "role 'router'" in message and "model 'smollm2'" in message and url in message
    assert "python -m llama_cpp.server" in message


EMBEDDED = {
    "id": "SmolLM2-135M-Instruct.Q4_1",
    "backend": "embedded",
    "context_length": 2048,
    "max_tokens": 12,
    "temperature": 0.0,
}


async def test_embedded_backend_answers_without_any_server() -> None:
    client = LLMClient(make_profile({"router": EMBEDDED}))
    try:
        r = await client.respond("router", [{"role": "user", "content": "Say hello."}])
        events = [e async for e in client.stream("router", [{"role": "user", "content": "Hi"}])]
    finally:
        await client.aclose()
    assert r.content.strip() and r.backend == "embedded" and r.usage.completion_tokens > 0
    assert events[-1].type == "done"
    assert "".join(e.text for e in events if e.type == "content").strip()


async def test_per_request_extra_body_reaches_the_server_over_the_roles_own(
        llama_server: LlamaServer) -> None:
    # llama.cpp's `grammar` pins the answer, so which grammar the server got is visible.
    role = server_role(llama_server.base_url, extra_body={"grammar": 'root ::= "no"'})
    client = LLMClient(make_profile({"router": role}))
    calls: list[tuple[str, LLMResponse | None, LLMError | None, float]] = []
    client.on_call = lambda *call: calls.append(call)
    yes = {"grammar": 'root ::= "yes"'}
    hi = [{"role": "user", "content": "Hi"}]
    try:
        plain = await client.respond("router", hi)
        answered = await client.respond("router", hi, extra_body=yes)
        events = [e async for e in client.stream("router", hi, extra_body=yes)]
    finally:
        await client.aclose()
    assert (plain.content, answered.content) == ("no", "yes")
    done = events[-1]
    assert done.type == "done" and done.response.content == "yes"
    assert "".join(e.text for e in events if e.type == "content") == "yes"
    # The stream reaches the call hook (telemetry's model.call) once, like each respond.
    assert [(c[0], c[1], c[2]) for c in calls] == [("router", plain, None),
                                                  ("router", answered, None),
                                                  ("router", done.response, None)]
    assert all(c[3] > 0 for c in calls)


async def test_a_failed_stream_reaches_the_call_hook_with_its_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = LLMClient(make_profile({"router": server_role(url, retries=0)}))
    calls: list[tuple[str, LLMResponse | None, LLMError | None, float]] = []
    client.on_call = lambda *call: calls.append(call)
    try:
        events = [e async for e in client.stream("router", [{"role": "user", "content": "x"}])]
    finally:
        await client.aclose()
    assert events[-1].type == "error" and events[-1].kind == "LLMConnectionError"
    ((role, response, error, _),) = calls
    assert role == "router" and response is None and isinstance(error, LLMConnectionError)
