"""The dashboard in a real browser: Debian's chromium (driven by Playwright, no downloaded
browser) opens /ui of a real `localroute serve` after real requests: a tool question, a routed
answer whose text is hostile markup, a coding answer that fails validation (the fault proxy
replaces the model's reply with leaked tool-call markup), and a managed model loaded on demand
and evicted by its idle TTL. Every panel must show them, the trace view must list the states
in order, and the feedback button must record what `localroute telemetry query` then shows.
A screenshot of the page is saved next to the test's files (tmp_path/dashboard.png).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.faultproxy import Fault, FaultProxy
from tests.support.paths import REPO
from tests.support.polling import stored_events, until
from tests.support.servers import LlamaServer, free_port, gguf_path, wait_for_http

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
TTL_S = 8  # the managed model's idle TTL: short, so the eviction happens during the test
HOSTILE_QUERY = ('how much disk space is free? <script>window.__pwned = 1</script>'
                 '<img src=x onerror="window.__pwned = 2">')
HOSTILE_ANSWER = ('<script>window.__pwned = 3</script><img src=x onerror="window.__pwned = 4">'
                  'Otters hold hands while they sleep.')


def canned(content: str) -> str:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "smollm2",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                 "total_tokens": 2}})


def write_config(path: Path, upstream: str) -> Path:
    external = f"""backend: llamacpp
        id: smollm2
        endpoint: {upstream}
        context_length: 2048
        max_tokens: 24
        temperature: 0
        retries: 0"""
    path.write_text(f"""version: 1
auto_profiles: [local]
profiles:
  local:
    memory_budget_gb: 2
    min_residency: 0
    roles:
      router:
        {external}
      reasoning:
        {external}
      coding:
        {external}
      validation:
        shares_instance_with: router
        max_tokens: 48
      summarization:
        backend: llamacpp
        model_path: {gguf_path()}
        context_length: 512
        max_tokens: 8
        temperature: 0
        residency: on_demand
        idle_ttl: {TTL_S}
""")
    return path


@pytest.fixture
def stack(tmp_path: Path, llama_server: LlamaServer) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        # A fresh machine: install Debian's chromium as the README's test command runs (root),
        # or fail naming what to install.
        got = subprocess.run(["bash", str(REPO / "scripts" / "ensure-chromium.sh")],
                             capture_output=True, text=True, timeout=900)
        if got.returncode != 0:
            pytest.fail(f"{CHROMIUM} is missing and could not be installed: {got.stderr}")
    with FaultProxy(llama_server.url) as proxy:
        config = write_config(tmp_path / "models.yaml", proxy.base_url)
        env = {**os.environ, "LOCALROUTE_STATE_DIR": str(tmp_path / "state")}
        port = free_port()
        log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "localroute", "--config", str(config), "serve", "--port",
             # Pinned: on a busy machine the CPU sensor would move it to ALERT, which
             # refuses the coding and summarization roles this test needs.
             str(port), "--runs", str(tmp_path / "runs"), "--mode", "NORMAL"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(base + "/health", proc, 120, "localroute serve")  # type: ignore[arg-type]
            yield {"base": base, "proxy": proxy, "env": env, "config": config, "tmp": tmp_path}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            finally:
                log.close()


def ask(client: openai.OpenAI, model: str, text: str) -> dict[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}])
    answer = raw.parse()
    return {"trace": raw.headers.get("x-localroute-trace-id") or "",
            "route": raw.headers.get("x-localroute-route") or "",
            "validation": raw.headers.get("x-localroute-validation") or "",
            "content": answer.choices[0].message.content or ""}


def make_requests(stack: dict[str, Any]) -> dict[str, dict[str, str]]:
    client = openai.OpenAI(base_url=stack["base"] + "/v1", api_key="x", timeout=300)
    proxy: FaultProxy = stack["proxy"]
    done = {"tool": ask(client, "auto", HOSTILE_QUERY)}
    # The routed answer is replaced by hostile markup (twice: a router-model escalation, if
    # the classifier is unsure, takes the first).
    proxy.set_fault(Fault(kind="replace", body=canned(HOSTILE_ANSWER), times=2,
                          path_contains="chat"))
    done["router"] = ask(client, "auto", "tell me something nice about otters")
    proxy.clear()
    proxy.set_fault(Fault(kind="replace", times=2, path_contains="chat", body=canned(
        '<tool_call>{"name": "cpu"}</tool_call>')))
    done["coding"] = ask(client, "auto", "What does `x = 1` do in Python? Answer in one short "
                         "sentence.")
    proxy.clear()
    done["managed"] = ask(client, "summarization", "Say hi.")  # loads it (cause: request)
    return done


def events(stack: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return stored_events(stack["env"], name)


def test_dashboard_shows_the_requests_in_every_panel(stack: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    done = make_requests(stack)
    assert done["tool"]["route"] == "tool"
    assert done["coding"]["route"] not in ("tool", "router"), done["coding"]  # validated
    # The idle TTL evicts the managed model; wait until the store has it.
    until(lambda: events(stack, "residency.eviction"), TTL_S + 120, "the idle-TTL eviction",
          interval=1.0)
    (stack["tmp"] / "runs").mkdir()
    with sync_playwright() as p:
        # A fresh profile directory (Playwright passes it as --user-data-dir).
        browser = p.chromium.launch_persistent_context(
            str(stack["tmp"] / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1400, "height": 2600})
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(stack["base"] + "/ui")
            # The figures computed at start-up are refreshed on the first poll (new events
            # since); the page fetches the fresh ones itself.
            page.wait_for_function("() => document.body.dataset.chartsWindow === 'day' && "
                                   "document.body.dataset.chartsFresh === '1'", timeout=60_000)
            page.wait_for_function(
                "() => document.querySelectorAll('#recent tbody tr').length >= 3", timeout=60_000)
            check_panels(page, done)
            check_trace_and_feedback(page, stack, done["coding"]["trace"])
            # Hostile text was shown as text: nothing it carried ran.
            assert page.evaluate("() => window.__pwned") is None
            assert HOSTILE_QUERY in page.inner_text("#recent")
            page.click(f"#recent tr[data-trace='{done['router']['trace']}']")
            shown = done["router"]["trace"]
            page.wait_for_function(
                f"() => document.getElementById('request').dataset.trace === '{shown}'")
            assert page.inner_text("#request-answer") == HOSTILE_ANSWER
            assert page.evaluate("() => window.__pwned") is None
            shot = stack["tmp"] / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("LOCALROUTE_TEST_ARTIFACTS"):
                shutil.copy(shot, Path(os.environ["LOCALROUTE_TEST_ARTIFACTS"]) / shot.name)
            assert problems == []
        finally:
            browser.close()


def check_panels(page: Any, done: dict[str, dict[str, str]]) -> None:
    # Now: mode, memory bar (the managed model was evicted, the budget is drawn), gates, and
    # the last requests with their trace ids.
    assert page.inner_text("#now-mode") in ("NORMAL", "ALERT", "DEGRADED", "RECOVERY")
    assert "budget" in page.inner_text("#memory-text")
    assert "router" in page.inner_text("#gates")
    shown = page.eval_on_selector_all("#recent tbody tr", "rows => rows.map(r => r.dataset.trace)")
    for name in ("tool", "router", "coding"):  # the routed ones (a direct call has no outcome)
        assert done[name]["trace"] in shown
    # Routing: the routes and deciders of those requests are series of the charts.
    routes = page.evaluate("() => document.getElementById('chart-routes').data.map(t => t.name)")
    assert {"tool", "router", done["coding"]["route"]} <= set(routes)
    deciders = page.evaluate("() => document.getElementById('chart-decided').data.map(t => t.name)")
    assert "classifier" in deciders and "escalation rate" in deciders
    roles = page.evaluate("() => document.getElementById('chart-roles').data.map(t => t.name)")
    assert {"router", "summarization"} <= set(roles)
    # Latency and quality: a p50 line per answering role, and the validation failure counted.
    latency = page.evaluate("() => document.getElementById('chart-latency').data.map(t => t.name)")
    assert "summarization p50" in latency and "router p95" in latency
    failed = page.evaluate("() => document.getElementById('chart-quality').data[0].y"
                           ".reduce((a, b) => a + b, 0)")
    assert failed >= 1
    assert "failure rate" in page.inner_text("#quality-figures")
    # Residency: the managed model's stay, its load (request) and its eviction (idle_ttl).
    marks = page.inner_text("#residency-marks")
    assert "load" in marks and "eviction" in marks and "idle_ttl" in marks
    assert "summarization" in marks
    # Evaluations: the (empty) runs directory is named.
    assert "run(s) in" in page.inner_text("#runs-dir")


def check_trace_and_feedback(page: Any, stack: dict[str, Any], trace: str) -> None:
    page.fill("#trace-input", trace)
    page.click("#trace-open")
    page.wait_for_function(
        f"() => document.getElementById('request').dataset.trace === '{trace}'")
    states = page.eval_on_selector_all("#request-states li",
                                       "items => items.map(i => i.textContent)")
    names = [s.split(" → ")[0] for s in states]
    assert names[0] == "INIT" and "VALIDATION" in names and "LLM_CALL" in names, states
    offsets = [float(s.split(" at ")[1].split(" ms")[0]) for s in states]
    assert offsets == sorted(offsets)
    assert states[-1].split(" → ")[1].startswith("COMPLETED")
    assert "failed" in page.inner_text("#request-validation")
    # Feedback from the page lands in the store, where the CLI reads it.
    page.fill("#feedback-note", "wrong <b>markup</b>")
    page.click("#feedback-bad")
    page.wait_for_function("() => document.getElementById('feedback-status').textContent"
                           ".startsWith('recorded')")
    assert "feedback bad: wrong <b>markup</b>" in page.inner_text("#request-feedback")
    rows = events(stack, "request.feedback")
    assert [(r["trace_id"], r["data"]["verdict"], r["data"]["note"]) for r in rows] == [
        (trace, "bad", "wrong <b>markup</b>")]
    assert httpx.get(stack["base"] + "/ui/api/trace/" + trace).json()["feedback"]
