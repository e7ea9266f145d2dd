"""`auto` streams through `localroute serve` (a real subprocess) in front of the real llama.cpp
server, with the fault proxy pacing the backend's stream (one event every 50 ms) or injecting
leaked markup mid-answer; the official `openai` SDK is the client (docs/server.md, "Streaming
and validation")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from localroute.telemetry.store import EventStore
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.servers import LlamaServer
from tests.test_server import Serve, write_config

PACED = 0.05  # seconds between the backend's events: a slow model, token by token
STORY = "Tell me a story about a dragon"  # route router: no validation
CODE = "Write a python function that reverses a string"  # route coding: validated
LEAK = "<|im_end|>"


@pytest.fixture(scope="module")
def proxy(llama_server: LlamaServer) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.url) as running:
        yield running


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stream-state")


@pytest.fixture(scope="module")
def config(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("stream") / "models.yaml", proxy.base_url)


@pytest.fixture(scope="module")
def served(config: Path, state_dir: Path) -> Iterator[Serve]:
    server = Serve(config, env={"LOCALROUTE_STATE_DIR": str(state_dir)})
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_fault(proxy: FaultProxy) -> Iterator[None]:
    yield
    proxy.clear()


class Received:
    """What the client saw of one stream, with the time of each piece."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.content: list[tuple[float, str]] = []
        self.reasoning: list[str] = []
        self.chunks: list[Any] = []
        self.error: openai.APIError | None = None

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.content)

    @property
    def last(self) -> dict[str, Any]:
        summary: dict[str, Any] = (self.chunks[-1].model_extra or {})["localroute"]
        return summary


def stream(served: Serve, query: str, policy: str | None = None,
           max_tokens: int = 48) -> Received:
    extra = {"localroute": {"validation": policy}} if policy else None
    got = Received()
    chunks = served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": query}], max_tokens=max_tokens,
        stream=True, extra_body=extra)
    try:
        for chunk in chunks:
            got.chunks.append(chunk)
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                got.content.append((time.monotonic(), delta.content))
            reasoning = (delta.model_extra or {}).get("reasoning_content")
            if reasoning:
                got.reasoning.append(reasoning)
    except openai.APIError as exc:  # an error event in the stream
        got.error = exc
    return got


def outcome(state_dir: Path, trace_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The request.outcome event of a trace (the telemetry writer flushes in batches)."""
    store = EventStore(f"sqlite:///{state_dir / 'telemetry.db'}")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = store.select(names=["request.outcome"], trace_id=trace_id)
            if rows:
                return rows[-1]
            time.sleep(0.2)
    finally:
        store.close()
    raise AssertionError(f"no request.outcome for trace {trace_id} in {timeout} s")


def test_the_first_token_arrives_long_before_the_last(served: Serve, proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="trickle", event_delay=PACED))
    got = stream(served, STORY)
    assert got.error is None
    first = got.chunks[0]
    assert first.choices[0].delta.role == "assistant"
    # The first chunk names the route and role: decided before the model wrote anything.
    routed = (first.model_extra or {})["localroute"]
    assert routed["route"] == "router" and routed["role"] == "router"
    assert len(got.content) >= 10, got.content  # token by token, not one whole chunk
    spread = got.content[-1][0] - got.content[0][0]
    # ~48 events 50 ms apart: the client holds the first token while the backend still writes.
    assert spread > 10 * PACED
    assert got.last["validation"] == "skipped" and got.last["trace_id"] == routed["trace_id"]
    assert got.chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_buffer_sends_the_answer_whole_as_today(served: Serve, proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="trickle", event_delay=PACED))
    got = stream(served, STORY, policy="buffer")
    assert got.error is None
    assert len(got.content) == 1  # validated (here: skipped for the route), then sent whole
    whole = served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": STORY}], max_tokens=48)
    assert got.text == whole.choices[0].message.content  # temperature 0: the same answer


def test_after_delivers_everything_and_flags_the_failed_verdict(
        served: Serve, proxy: FaultProxy, state_dir: Path) -> None:
    proxy.set_fault(Fault(kind="inject", inject=LEAK, after_events=3, event_delay=PACED / 5))
    got = stream(served, CODE, policy="after")
    assert got.error is None
    assert LEAK in got.text  # `after` never holds text back
    assert len(got.content) >= 5
    verdict = got.last
    assert verdict["route"] == "coding" and verdict["validation"] == "unvalidated"
    assert any("leaked markup: special_token" in f for f in verdict["validation_failures"])
    row = outcome(state_dir, verdict["trace_id"])
    assert row["data"]["state"] == "COMPLETED" and row["data"]["validation"] == "unvalidated"
    assert row["ok"] is False  # a flagged answer is no success


def test_window_stops_injected_markup_before_the_client(
        served: Serve, proxy: FaultProxy, state_dir: Path) -> None:
    # `after` sends each of the backend's content events as it comes: they can be counted.
    clean = stream(served, CODE, policy="after", max_tokens=160)
    assert clean.error is None, clean.error
    assert len(clean.text) > 300, clean.text  # long enough for a first window to go out early
    # The same answer (temperature 0) with markup injected ~250 characters in.
    events_before = next(i for i in range(len(clean.content))
                         if len("".join(t for _, t in clean.content[:i])) >= 250)
    proxy.set_fault(Fault(kind="inject", inject=LEAK, after_events=events_before))
    got = stream(served, CODE, policy="window", max_tokens=160)
    assert got.error is not None
    assert "leaked_markup" in got.error.message and "special_token" in got.error.message
    assert LEAK not in got.text and "<|" not in got.text
    assert got.text and clean.text.startswith(got.text)  # the windows before it went out
    trace_id = (got.chunks[0].model_extra or {})["localroute"]["trace_id"]
    row = outcome(state_dir, trace_id)
    assert row["data"]["state"] == "FAILED" and "leaked_markup" in row["data"]["error"]


def test_window_releases_a_clean_answer_in_windows(served: Serve, proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="trickle", event_delay=PACED))
    got = stream(served, CODE, policy="window", max_tokens=160)
    assert got.error is None
    assert len(got.content) >= 2  # more than one window, each sent as it passed
    assert all(len(t) >= 200 - 40 for _, t in got.content[:-1])  # window minus the overlap
    assert got.last["validation"] in ("passed", "unvalidated")  # the verdict on the whole


def test_a_misspelt_policy_is_refused_by_name(served: Serve) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        served.client().chat.completions.create(
            model="auto", messages=[{"role": "user", "content": STORY}], stream=True,
            extra_body={"localroute": {"validation": "later"}})
    assert "localroute.validation" in caught.value.message and "after" in caught.value.message


def test_tool_rounds_show_their_notes(served: Serve) -> None:
    got = stream(served, "why is my computer slow right now?", max_tokens=32)
    assert got.error is None
    notes = "".join(got.reasoning)
    assert "reading" in notes and "memory" in notes and "processes" in notes
    assert got.last["tools_used"]  # the tools really ran


def test_a_client_leaving_an_auto_stream_frees_its_slot(
        served: Serve, proxy: FaultProxy, state_dir: Path) -> None:
    proxy.set_fault(Fault(kind="trickle", event_delay=PACED))
    chunks = served.client().chat.completions.create(
        model="auto", messages=[{"role": "user", "content": CODE}], max_tokens=1500,
        stream=True)
    trace_id = ""
    for chunk in chunks:
        trace_id = trace_id or (chunk.model_extra or {})["localroute"]["trace_id"]
        if chunk.choices and chunk.choices[0].delta.content:
            break  # the model is writing
    assert served.gate("coding") == 1
    chunks.close()
    left = time.monotonic()
    while served.gate("coding") != 0:
        assert time.monotonic() - left < 5, "the slot was not freed"  # 1500 tokens: minutes
        time.sleep(0.05)
    row = outcome(state_dir, trace_id)
    assert row["data"]["state"] == "FAILED" and "cancelled" in row["data"]["error"]


def test_ask_streams_in_the_terminal_with_the_verdict_last(
        config: Path, proxy: FaultProxy) -> None:
    proxy.set_fault(Fault(kind="trickle", event_delay=PACED))
    proc = subprocess.Popen(
        [sys.executable, "-m", "localroute", "--config", str(config), "ask", "--stream",
         "--profile", "test", "--mode", "NORMAL", STORY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    arrivals: list[tuple[float, bytes]] = []
    try:
        while piece := os.read(proc.stdout.fileno(), 4096):
            arrivals.append((time.monotonic(), piece))
        assert proc.wait(60) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = b"".join(p for _, p in arrivals).decode()
    assert text.strip()
    assert len(arrivals) >= 3  # printed as written, not at once
    assert arrivals[-1][0] - arrivals[0][0] > 5 * PACED
    errors = proc.stderr.read().decode().strip().splitlines()
    # The verdict follows the answer (the route skips validation); notes may follow it.
    assert "validation: skipped" in errors
