"""The telemetry store and its queries, against SQLite and a real PostgreSQL server.

PostgreSQL: $LOCALROUTE_TEST_POSTGRES_URL when set, else a server started on loopback by
scripts/start-postgres.sh for this test process (stopped at exit)."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from localroute.config.modes import Mode
from localroute.config.telemetry import StoreSettings, TelemetryConfig
from localroute.orchestrator.build import build_orchestrator
from localroute.orchestrator.state import ExecutionContext
from localroute.routing.classifier import RouteClassifier
from localroute.telemetry import events as ev
from localroute.telemetry.emitter import Telemetry
from localroute.telemetry.queries import (
    parse_duration,
    query_events,
    record_feedback,
    trace_tree,
)
from localroute.telemetry.stats import compute_stats
from localroute.telemetry.store import MIGRATIONS, SCHEMA_VERSION, EventStore, schema_version
from tests.conftest import make_profile, server_role
from tests.support.servers import free_port

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "start-postgres.sh"
_pg: dict[str, str] = {}


def postgres_url() -> str:
    """The base URL of a running PostgreSQL (started once per test process when needed)."""
    given = os.environ.get("LOCALROUTE_TEST_POSTGRES_URL")
    if given:
        return given
    if "url" not in _pg:
        done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"start-postgres.sh failed:\n{done.stderr}"
        url, data_dir = done.stdout.strip().splitlines()[-2:]
        atexit.register(subprocess.run, ["bash", str(SCRIPT), "--stop", data_dir],
                        capture_output=True)
        _pg["url"] = url
    return _pg["url"]


def fresh_url(backend: str, tmp_path: Path) -> str:
    """An empty database of that backend (a new PostgreSQL database per call)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
    base = sa.make_url(postgres_url())
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_url(request.param, tmp_path)


@pytest.fixture
def telemetry(store_url: str) -> Iterator[Telemetry]:
    tel = Telemetry(StoreSettings(url=store_url, batch_window_ms=50))
    yield tel
    tel.close()


@pytest.fixture(scope="module")
def classifier() -> RouteClassifier:
    return RouteClassifier.load()


def test_migrations_are_versioned_and_upgrade_an_old_store(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # a store written by version 1 of the schema
        schema_version.create(conn)
        MIGRATIONS[0][2](conn)
        conn.execute(schema_version.insert().values(version=1, description="events table",
                                                    applied_at=time.time()))
    engine.dispose()
    store = EventStore(store_url)
    assert store.version() == SCHEMA_VERSION == 2
    indexes = {i["name"] for i in sa.inspect(store.engine).get_indexes("events")}
    assert {"ix_events_trace", "ix_events_event_ts", "ix_events_ts"} <= indexes
    store.close()
    again = EventStore(store_url)  # reopening applies nothing twice
    with again.engine.connect() as conn:
        versions = list(conn.execute(sa.select(schema_version.c.version)).scalars())
    assert sorted(versions) == [1, 2]
    again.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'deep' / 'dir' / 't.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "deep" / "dir" / "t.db").is_file()


def _count_elsewhere(db: Path) -> int:
    """The events another process sees (it opens the database and closes it again, as
    `localroute telemetry query` does)."""
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(c.execute('SELECT count(*) FROM events').fetchone()[0]); c.close()")
    done = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_a_second_store_in_the_process_keeps_the_first_ones_writes_visible(
        tmp_path: Path) -> None:
    # `serve` writes through one store and the dashboard reads through another of the same
    # file. Opening the second once closed a descriptor of the database, which drops every
    # POSIX lock this process held on it; the next other process to close the database then
    # deleted the WAL the first store was still writing to, and its later events were lost.
    db = tmp_path / "t.db"
    writer = EventStore(f"sqlite:///{db}")
    writer.insert([ev.mode_change(old="NORMAL", new="ALERT", reason="one")])
    reader = EventStore(f"sqlite:///{db}")
    assert _count_elsewhere(db) == 1
    writer.insert([ev.mode_change(old="ALERT", new="NORMAL", reason="two")])
    assert reader.count() == 2
    assert _count_elsewhere(db) == 2
    writer.close()
    reader.close()


def test_a_bad_url_names_itself() -> None:
    with pytest.raises(ValueError, match=r"mysql.*not supported"):
        EventStore("mysql://localhost/x")
    with pytest.raises(ConnectionError, match="cannot open"):
        EventStore(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")


def test_writes_are_batched_off_the_caller_and_flushed(store_url: str) -> None:
    tel = Telemetry(StoreSettings(url=store_url, batch_window_ms=5000, batch_size=10_000))
    try:
        for i in range(25):
            tel.mode_change("NORMAL", "ALERT", f"test {i}")
        assert tel.store.count() == 0  # still inside the batch window
        assert tel.flush()
        assert tel.store.count() == 25 and tel.writer.written == 25
    finally:
        tel.close()
    sized = Telemetry(StoreSettings(url=store_url, batch_window_ms=60_000, batch_size=5))
    try:
        for i in range(5):
            sized.mode_change("ALERT", "NORMAL", f"size {i}")
        deadline = time.monotonic() + 5
        while sized.store.count() < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sized.store.count() == 30  # a full batch is written without waiting the window
    finally:
        sized.close()


def test_pruning_by_age_and_by_size(store_url: str) -> None:
    store = EventStore(store_url)
    now = time.time()
    rows = [ev.mode_change(old="NORMAL", new="ALERT", reason=str(i)) for i in range(30)]
    for i, row in enumerate(rows):
        row["ts"] = now - (29 - i) * 86400  # one a day, the oldest 29 days ago
    store.insert(rows)
    assert store.prune(max_age_days=10.5, max_rows=1000, now=now) == 19
    assert store.count() == 11
    assert store.prune(max_age_days=100, max_rows=4, now=now) == 7
    left = store.select()
    assert [r["data"]["reason"] for r in left] == ["26", "27", "28", "29"]


async def _run(orch_query: str, telemetry: Telemetry, classifier: RouteClassifier,
               mode: Mode = Mode.NORMAL) -> ExecutionContext:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    profile = make_profile({r: server_role(dead) for r in ("router", "reasoning", "coding")})
    config = TelemetryConfig(telemetry=telemetry.settings)
    orch = build_orchestrator(profile, classifier=classifier, telemetry=telemetry,
                              telemetry_config=config)
    try:
        return await orch.run(ExecutionContext(
            messages=[{"role": "user", "content": orch_query}], mode=mode))
    finally:
        await orch.deps.client.aclose()


async def test_requests_become_events_a_tree_and_stats(
    telemetry: Telemetry, classifier: RouteClassifier
) -> None:
    done = [await _run(q, telemetry, classifier) for q in
            ("how much disk space is free?", "what's the uptime?", "what time is it?")]
    refused = await _run("Write a haiku about autumn", telemetry, classifier, Mode.LOCKDOWN)
    assert telemetry.flush()
    store = telemetry.store
    for ctx in [*done, refused]:
        rows = store.select(trace_id=ctx.trace_id)
        names = [r["event"] for r in rows]
        assert names.count("state.transition") == len(ctx.steps)
        assert names.count("request.outcome") == 1 and names.count("routing.decision") == 1
        assert all(r["span_id"] and r["trace_id"] == ctx.trace_id for r in rows)
    tool_calls = store.select(names=["tool.call"])
    assert sorted(r["data"]["tool"] for r in tool_calls) == ["disk", "time", "uptime"]
    assert all(r["data"]["direct"] and r["ok"] for r in tool_calls)

    tree = trace_tree(store, done[0].trace_id[:10])
    root = tree["root"]
    assert root["event"] == "request.outcome" and root["ok"] is True
    states = [c["summary"].split(" ->")[0] for c in root["children"]
              if c["event"] == "state.transition"]
    assert states == ["INIT", "ROUTING_DECISION", "TOOL_ONLY_EXECUTION", "SYNTHESIS"]
    routing = next(c for c in root["children"] if c["summary"].startswith("ROUTING_DECISION"))
    assert [g["event"] for g in routing["children"]] == ["routing.decision"]

    stats = compute_stats(store, 3600)
    assert stats["requests"] == 4 and stats["failed"] == 1
    assert stats["adr"]["direct_tool_execution_rate"] == 0.75
    assert stats["adr"]["task_success_rate"] == 0.75
    assert stats["adr"]["routing_overhead_ms"]["n"] == 4
    assert stats["tools"] == {"disk": 1, "uptime": 1, "time": 1}

    record_feedback(store, done[0].trace_id, "bad", note="wrong disk")
    after = compute_stats(store, 3600)
    assert after["adr"]["task_success_rate"] == 0.5 and after["feedback"] == {"bad": 1}
    outcomes = query_events(store, event="request.outcome", last="1h", limit=2)
    assert len(outcomes) == 2 and outcomes[0]["ts"] >= outcomes[1]["ts"]


def test_bad_input_gets_clear_errors(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 't.db'}")
    with pytest.raises(ValueError, match="--last: '5 parsecs' is not a duration"):
        parse_duration("5 parsecs")
    assert parse_duration("90s") == 90 and parse_duration("7d") == 7 * 86400
    with pytest.raises(ValueError, match=r"unknown event 'model\.cal'; known events: "):
        query_events(store, event="model.cal")
    with pytest.raises(ValueError, match="is not in the telemetry store"):
        trace_tree(store, "abcdef12")
    with pytest.raises(ValueError, match="is not valid"):
        trace_tree(store, "xyz")
    with pytest.raises(ValueError, match="use good or bad"):
        record_feedback(store, "abcdef12", "meh")


def test_events_are_also_structlog_json_lines_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    tel = Telemetry(StoreSettings(url=f"sqlite:///{tmp_path / 't.db'}", json_log=str(log)))
    try:
        tel.mode_change("NORMAL", "ALERT", "cpu at 97%")
        tel.mode_change("ALERT", "NORMAL", "calm again")
        assert tel.flush()
    finally:
        tel.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["event"], x["to"], x["reason"]) for x in lines] == [
        ("mode.change", "ALERT", "cpu at 97%"), ("mode.change", "NORMAL", "calm again")]
    assert all(len(x["trace_id"]) == 32 and len(x["span_id"]) == 16 for x in lines)
