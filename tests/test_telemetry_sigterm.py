"""A thousand requests through the orchestrator with the embedded backend in a real subprocess,
which is then killed with SIGTERM mid-run: every request it reported complete has all of its
events in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localroute.telemetry.store import EventStore
from tests.test_telemetry_store import fresh_url

ROOT = Path(__file__).resolve().parents[1]
COMPLETED = 1000

# Tool-only questions (no model) and, every 100th request, the router path on the embedded
# SmolLM2 with max_tokens 2 so the run stays fast.
WORKER = """
import asyncio, sys
from localroute.config.loader import load_config, resolve_profile
from localroute.config.modes import Mode, load_modes
from localroute.config.telemetry import StoreSettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext

TOOLS = ["how much disk space is free?", "what's the uptime?", "what time is it?",
         "how much memory is free?"]

async def main(url):
    config, source = load_config()
    profile = resolve_profile(config, "embedded", source, env={})
    modes = load_modes()
    normal = modes.modes[Mode.NORMAL].model_copy(update={"max_tokens": {"router": 2}})
    modes = modes.model_copy(update={"modes": {**modes.modes, Mode.NORMAL: normal}})
    # A long batch window: most events are still queued when SIGTERM arrives.
    tel = TelemetryConfig(telemetry=StoreSettings(url=url, batch_window_ms=1500,
                                                  batch_size=100000))
    orch = build_orchestrator(profile, modes=modes, telemetry_config=tel)
    i = 0
    while True:
        query = "what is 2+2" if i % 100 == 50 else TOOLS[i % len(TOOLS)]
        ctx = ExecutionContext(messages=[{"role": "user", "content": query}],
                               allow_router_model=False)
        ctx = await orch.run(ctx)
        sys.stdout.write(f"DONE {ctx.trace_id} {len(ctx.steps)} {ctx.llm_calls} "
                         f"{ctx.state.value}\\n")
        sys.stdout.flush()
        i += 1

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigterm_loses_no_completed_request(backend: str, tmp_path: Path) -> None:
    url = fresh_url(backend, tmp_path)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOCALROUTE_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    done: dict[str, tuple[int, int, str]] = {}
    deadline = time.monotonic() + 240
    try:
        assert proc.stdout is not None
        while len(done) < COMPLETED:
            line = proc.stdout.readline()
            assert line, f"worker died early: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, f"only {len(done)} requests in 240 s"
            _, trace, n_steps, n_calls, end = line.split()
            done[trace] = (int(n_steps), int(n_calls), end)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM  # it died of the signal, after flushing
    # Requests completed after the last line we read may be there too; ours must all be.
    for line in (proc.stdout.read() if proc.stdout else "").splitlines():
        _, trace, n_steps, n_calls, end = line.split()
        done[trace] = (int(n_steps), int(n_calls), end)
    assert sum(1 for v in done.values() if v[1]) >= 10  # the model path ran too

    store = EventStore(url)
    rows = store.select(names=["request.outcome", "state.transition", "model.call"])
    seen: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = seen.setdefault(r["trace_id"], {})
        counts[r["event"]] = counts.get(r["event"], 0) + 1
    missing = [t for t in done if "request.outcome" not in seen.get(t, {})]
    assert not missing, f"{len(missing)} of {len(done)} completed requests lost their outcome"
    for trace, (steps, calls, state) in done.items():
        assert state == "COMPLETED"
        assert seen[trace]["state.transition"] == steps
        assert seen[trace].get("model.call", 0) == calls
    store.close()
