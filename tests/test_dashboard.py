"""The dashboard's data over a real SQLite store, its run listing, and its HTTP guards on a real
`localroute serve` (its one role points at a closed port: these need no model)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localroute.dashboard.cache import WindowCache
from localroute.dashboard.panels import request_view, residency_timeline
from localroute.dashboard.runs import list_runs, report_path
from localroute.dashboard.series import overview
from localroute.telemetry import events as ev
from localroute.telemetry.events import EventRow
from localroute.telemetry.stats import compute_stats
from localroute.telemetry.store import EventStore
from tests.support.servers import free_port, wait_for_http

KEY = "dashboard-test-key"


def request(now: float, route: str, role: str | None, ok: bool = True) -> list[EventRow]:
    trace, root = ev.new_trace_id(), ev.new_span_id()
    rows = [ev.state_transition(trace, ev.new_span_id(), root, state="INIT",
                                next_state="ROUTING_DECISION", started_ms=0.0, elapsed_ms=1.0,
                                detail="", role=None, route=None),
            ev.state_transition(trace, ev.new_span_id(), root, state="ROUTING_DECISION",
                                next_state="COMPLETED", started_ms=1.0, elapsed_ms=2.0,
                                detail="", role=role, route=route),
            ev.routing_decision(trace, root, route=route, decided_by="classifier",
                                confidence=0.8, latency_ms=1.0, escalated=False,
                                escalation_error=None, tool=None, reason="")]
    if role:
        rows.append(ev.model_call(trace, root, role=role, model="m", backend="llamacpp",
                                  ok=True, total_s=0.5, queue_wait_s=0.0, ttft_s=0.1,
                                  prompt_tokens=5, completion_tokens=5, tokens_per_s=10.0,
                                  finish_reason="stop", attempts=2, fallbacks=[], error=None,
                                  requested_role=role))
    rows.append(ev.request_outcome(trace, root, state="COMPLETED" if ok else "FAILED",
                                   success=ok, mode="NORMAL", route=route, role=role,
                                   selected_role=role, static_role=role, task_type=route,
                                   decided_by="classifier", validation="skipped",
                                   llm_calls=1 if role else 0, tools_used=[], fallbacks=0,
                                   error=None, total_ms=3.0, timings_ms={}, query="q",
                                   channel=None, answer="<b>an answer</b>"))
    for r in rows:
        r["ts"] = now
    return rows


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(f"sqlite:///{tmp_path / 'telemetry.db'}")
    yield s
    s.close()


def test_overview_agrees_with_stats_and_its_slices_add_up(store: EventStore) -> None:
    now = time.time()
    rows = [*request(now - 100, "tool", None), *request(now - 1000, "router", "router"),
            *request(now - 1900, "coding", "coding"), *request(now - 5000, "router", "router")]
    store.insert(rows)
    data = overview(store, "hour", now=now)
    # The headline is `localroute stats` for the same window: the CLI and the page agree.
    assert data["stats"] == compute_stats(store, 3600, now=now)
    series = data["series"]
    assert len(series["t"]) == 60
    assert sum(series["requests"]) == data["stats"]["requests"] == 3  # the 4th is older
    assert {k: sum(v) for k, v in series["routes"].items()} == {"tool": 1, "router": 1,
                                                                 "coding": 1}
    assert sum(series["retries"]) == 2  # attempts 2 -> one retry per model call


def test_residency_timeline_pairs_loads_with_evictions(store: EventStore) -> None:
    now = time.time()
    load = ev.residency_load(instance="coding", model="m", cause="request", ok=True, seconds=2.0,
                             error=None, evicted=[], adopted=False, footprint_bytes=1)
    evict = ev.residency_eviction(instance="coding", model="m", cause="idle_ttl", ok=True,
                                  error=None, for_instance=None, idle_s=60, expected_cost_s=None,
                                  footprint_bytes=1)
    load["ts"], evict["ts"] = now - 100, now - 40
    store.insert([load, evict])
    data = residency_timeline(store, 3600, now=now)
    assert [(s["instance"], s["start"], s["end"], s["load_cause"], s["eviction_cause"])
            for s in data["stays"]] == [("coding", now - 102, now - 40, "request", "idle_ttl")]
    assert [m["kind"] for m in data["marks"]] == ["load", "eviction"]


def test_request_view_lists_states_in_order_with_the_answer(store: EventStore) -> None:
    rows = request(time.time(), "router", "router")
    store.insert(rows)
    view = request_view(store, rows[0]["trace_id"][:8])
    assert [s["state"] for s in view["states"]] == ["INIT", "ROUTING_DECISION"]
    assert view["answer"] == "<b>an answer</b>" and view["query"] == "q"
    with pytest.raises(ValueError, match="not in the telemetry store"):
        request_view(store, "abcdef")


async def test_window_cache_answers_from_memory_until_new_events(store: EventStore) -> None:
    calls: list[str] = []

    def compute(s: EventStore, window: str) -> dict[str, object]:
        calls.append(window)
        return {"n": s.count()}

    cache = WindowCache(store, compute)
    assert (await cache.get("hour"))["n"] == 0
    assert (await cache.get("hour"))["n"] == 0 and calls == ["hour"]  # fresh: not recomputed
    store.insert(request(time.time(), "tool", None))
    cache.entries["hour"].computed_at -= 60  # older than the refresh interval
    stale = await cache.get("hour")
    # Answered at once, and saying a refresh runs (the page then polls again soon).
    assert stale["n"] == 0 and stale["refreshing"] is True
    for _ in range(100):
        await asyncio.sleep(0.05)
        if "hour" not in cache.running:
            break
    fresh = await cache.get("hour")
    assert fresh["n"] == 4 and fresh["refreshing"] is False and calls == ["hour", "hour"]


def test_runs_are_listed_with_headlines_and_reports_stay_inside(tmp_path: Path) -> None:
    bench = tmp_path / "runs" / "math-1"
    bench.mkdir(parents=True)
    (bench / "manifest.json").write_text(json.dumps({"suite": "math", "role": "reasoning",
                                                     "model": "m", "created_at": "t"}))
    rows = [{"key": "a", "grade": {"correct": False}}, {"key": "a", "grade": {"correct": True}},
            {"key": "b", "grade": None, "error": {"kind": "LLMTimeout", "message": "x"}}]
    (bench / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"tor')
    (bench / "report.html").write_text("<p>report</p>")
    ab = tmp_path / "runs" / "ab"
    ab.mkdir()
    (ab / "ab.jsonl").write_text("")
    (ab / "manifest.json").write_text(json.dumps({"a": {"model": "x"}, "b": {"model": "y"},
                                                  "stats": {"n": 3, "wins": 2, "ties": 0,
                                                            "losses": 1}}))
    listing = list_runs(tmp_path / "runs")
    by = {r["path"]: r for r in listing["runs"]}
    # The last row of a key wins (a retried sample), a torn last line is skipped.
    assert by["math-1"]["figures"] == {"samples": 2, "correct": 1, "errors": 1, "accuracy": 0.5}
    assert by["math-1"]["report"] == "/ui/runs/math-1/report.html"
    assert by["ab"]["kind"] == "ab" and by["ab"]["figures"]["wins"] == 2
    assert (by["ab"]["a"], by["ab"]["b"]) == ("x", "y")
    assert report_path(tmp_path / "runs", "math-1") == (bench / "report.html").resolve()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "report.html").write_text("no")
    assert report_path(tmp_path / "runs", "../secret") is None
    assert list_runs(tmp_path / "nowhere")["exists"] is False


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server bound off loopback (0.0.0.0) with an API key."""
    tmp = tmp_path_factory.mktemp("keyed")
    config = tmp / "models.yaml"
    config.write_text(f"""version: 1
auto_profiles: [t]
profiles:
  t:
    roles:
      router: {{backend: llamacpp, id: m, endpoint: "http://127.0.0.1:{free_port()}/v1"}}
""")
    key_file = tmp / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    port = free_port()
    env = {**os.environ, "LOCALROUTE_STATE_DIR": str(tmp / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "localroute", "--config", str(config), "serve",
                             "--host", "0.0.0.0", "--port", str(port), "--api-key-file",
                             str(key_file)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc, 120, "serve")  # type: ignore[arg-type]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_off_loopback_the_dashboard_is_refused_without_the_key(keyed_server: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for path in ("/ui", "/ui/api/now", "/ui/api/overview?window=hour", "/ui/static/plotly.min.js",
                 "/v1/models"):
        refused = httpx.get(keyed_server + path)
        assert refused.status_code == 401, path
        assert refused.json()["error"]["code"] == "invalid_api_key"
    page = httpx.get(keyed_server + "/ui", headers=auth)
    assert page.status_code == 200 and "localroute dashboard" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = httpx.get(keyed_server + "/ui/static/plotly.min.js", headers=auth)
    assert js.status_code == 200 and len(js.content) > 1_000_000  # plotly.js from the wheel
    bad = httpx.get(keyed_server + "/ui/api/overview?window=year", headers=auth)
    assert bad.status_code == 400 and "hour, day, week" in bad.json()["error"]["message"]


def test_feedback_needs_json_from_the_same_origin(keyed_server: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    body = json.dumps({"trace_id": "abcdef", "verdict": "good"})
    text = httpx.post(keyed_server + "/ui/api/feedback", content=body,
                      headers={**auth, "Content-Type": "text/plain"})
    assert text.status_code == 415
    other = httpx.post(keyed_server + "/ui/api/feedback", content=body,
                       headers={**auth, "Content-Type": "application/json",
                                "Origin": "http://evil.example"})
    assert other.status_code == 403
    unknown = httpx.post(keyed_server + "/ui/api/feedback", content=body,
                         headers={**auth, "Content-Type": "application/json",
                                  "Origin": keyed_server})
    assert unknown.status_code == 404 and "abcdef" in unknown.json()["error"]["message"]
    wrong = httpx.post(keyed_server + "/ui/api/feedback", headers={
        **auth, "Content-Type": "application/json"}, content=json.dumps(
            {"trace_id": "abcdef", "verdict": "meh"}))
    assert wrong.status_code == 422 and "verdict" in wrong.json()["error"]["message"]


def test_a_browser_opens_the_keyed_dashboard_with_the_key_as_basic_password(
        keyed_server: str) -> None:
    """A browser cannot send a bearer token: /ui asks for HTTP Basic (any user, the key as the
    password); the API itself keeps to the bearer token."""
    refused = httpx.get(keyed_server + "/ui")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Basic realm="localroute"')
    page = httpx.get(keyed_server + "/ui", auth=("anyone", KEY))
    assert page.status_code == 200 and "localroute dashboard" in page.text
    assert httpx.get(keyed_server + "/ui/api/now", auth=("me", KEY)).status_code == 200
    assert httpx.get(keyed_server + "/ui", auth=("anyone", KEY + "x")).status_code == 401
    # Basic is for the pages only: the API answers it with 401 and a bearer challenge.
    api = httpx.get(keyed_server + "/v1/models", auth=("anyone", KEY))
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"
