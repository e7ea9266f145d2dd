"""Hostile bodies through a real `localroute serve` and the CLI (issue 11, point 1).

Before the fix a 60 KB body held `/health` for 12 s and a 3.9 MB one gave no answer for five
minutes and ignored SIGTERM; `ask` and `route` stalled the same way on a pasted blob. Here
bodies just under the 4 MiB body cap are posted while `/health` is timed beside them. No model
answers: the profile's model server is a dead port, so a routed request fails (or is refused)
right after routing, which is all these tests need. The figures are printed by
benchmarks/adversarial_routing.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hostile_text import MIB, bodies
from tests.support.servers import free_port
from tests.test_server import Serve, write_config

BODY_CAP = 4 * MIB  # serve's default --max-body-bytes
# Bodies whose routing was quadratic before the fix, each in another pattern.
HOSTILE = ("word_run", "repeated_is", "hex", "newlines", "repeated_slow", "repeated_write")
# "A few seconds": on 2 shared cores at load 9 a run failed a 3 s limit. Before the fix /health
# waited minutes; the goal (1 s) is measured by benchmarks/adversarial_routing.py.
HEALTH_LIMIT_S = 5.0


def hostile_body(name: str) -> bytes:
    """A chat request for `model: auto` whose JSON is just under the body cap."""
    def encode(text: str) -> bytes:
        return json.dumps({"model": "auto", "messages": [{"role": "user", "content": text}]},
                          ensure_ascii=False).encode()

    room = BODY_CAP - len(encode("")) - 64
    text = bodies(room)[name]
    # Escaped characters (a newline is `\n`) take two bytes: shrink those bodies to fit.
    text = text[:len(text) * room // (len(encode(text)) - len(encode("")))]
    body = encode(text)
    assert BODY_CAP - 4096 < len(body) <= BODY_CAP
    return body


@pytest.fixture(scope="module")
def dead_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    return write_config(tmp_path_factory.mktemp("hostile") / "models.yaml", dead)


@pytest.fixture(scope="module")
def server(dead_config: Path) -> Iterator[Serve]:
    serve = Serve(dead_config)
    yield serve
    serve.stop()


def post_all(server: Serve, names: tuple[str, ...]) -> tuple[list[threading.Thread], list[int]]:
    statuses: list[int] = []
    # Built before any thread starts: building them beside the probes would time this process's
    # own work as the server's.
    prepared = {name: hostile_body(name) for name in names}

    def post(name: str) -> None:
        try:
            response = httpx.post(server.base_url + "/chat/completions",
                                  content=prepared[name],
                                  headers={"Content-Type": "application/json"}, timeout=120)
        except httpx.HTTPError:  # the SIGTERM test stops the server under it
            statuses.append(0)
            return
        statuses.append(response.status_code)

    threads = [threading.Thread(target=post, args=(n,), daemon=True) for n in names]
    for thread in threads:
        thread.start()
    return threads, statuses


def health_while(server: Serve, threads: list[threading.Thread]) -> list[float]:
    """Seconds each /health took, asked every 50 ms until every post has its answer."""
    seconds = []
    while any(t.is_alive() for t in threads):
        started = time.perf_counter()
        assert httpx.get(server.url + "/health", timeout=60).status_code == 200
        seconds.append(time.perf_counter() - started)
        time.sleep(0.05)
    return seconds


def test_health_answers_beside_max_size_hostile_bodies(server: Serve) -> None:
    threads, statuses = post_all(server, HOSTILE)
    seconds = health_while(server, threads)
    for thread in threads:
        thread.join(120)
    # Each body was answered: by a tool (200), or it failed for want of a model (400 for a
    # prompt over the context, 503 for the dead model server); none with an error of its own.
    assert len(statuses) == len(HOSTILE)
    assert all(s in (200, 400, 503) for s in statuses), statuses
    assert seconds and max(seconds) < HEALTH_LIMIT_S, max(seconds)


def test_sigterm_stops_the_server_while_a_hostile_body_is_routed(dead_config: Path) -> None:
    serve = Serve(dead_config)
    try:
        threads, _ = post_all(serve, ("word_run", "repeated_is"))
        time.sleep(1.0)  # the bodies are on their way in or being routed
        serve.proc.send_signal(signal.SIGTERM)
        started = time.perf_counter()
        serve.proc.wait(30)
        assert time.perf_counter() - started < 30
        for thread in threads:
            thread.join(10)
    finally:
        serve.stop()


BLOB_CHARS = 120_000  # a pasted blob: one command-line argument holds at most 128 KiB on Linux


@pytest.mark.parametrize("body", ["repeated_is", "word_run"])
def test_route_and_ask_finish_promptly_on_a_pasted_blob(dead_config: Path, body: str) -> None:
    blob = bodies(BLOB_CHARS)[body]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALROUTE_")
           or k == "LOCALROUTE_STATE_DIR"}
    base = [sys.executable, "-m", "localroute", "--config", str(dead_config)]
    # Before the fix each of these ran for minutes; a minute is startup and routing many times.
    routed = subprocess.run([*base, "route", "--profile", "test", "--no-model", "--json", blob],
                            capture_output=True, text=True, timeout=60, env=env)
    assert routed.returncode == 0, routed.stderr
    decision = json.loads(routed.stdout)["decision"]
    assert decision["latency_ms"] < 5000, decision
    # LOCKDOWN answers only tool questions, with no model: the blob is routed, then answered
    # by a tool (a run of "is " reads as a time question) or refused, naming the mode.
    asked = subprocess.run([*base, "ask", "--profile", "test", "--mode", "LOCKDOWN", blob],
                           capture_output=True, text=True, timeout=60, env=env)
    if decision["route"] == "tool":
        assert asked.returncode == 0 and asked.stdout.strip(), asked.stderr
    else:
        assert asked.returncode != 0 and "LOCKDOWN" in asked.stdout + asked.stderr
