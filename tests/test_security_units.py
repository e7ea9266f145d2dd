"""Pure units behind issue 11's HTTP, data-at-rest and terminal protections: host names,
connection counts, key files, private files, redaction, feedback bounds and printable text.
(The same protections are tested end to end in test_server_http.py and test_data_at_rest.py.)"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.table import Table
from rich.tree import Tree

from localroute.cli.common import SafeConsole, UsageError, printable
from localroute.cli.serve_cmd import read_key_file
from localroute.private_files import (
    open_private,
    private_dir,
    private_file,
    write_private_atomic,
)
from localroute.server.connections import ConnectionLimits
from localroute.server.errors import APIError
from localroute.server.feedback import FeedbackLog, UnknownTrace
from localroute.server.guards import Guards, bound_names, split_host
from localroute.server.schemas import ChatCompletionRequest, FeedbackRequest, parse_body
from localroute.server.settings import ServerSettings, check_names
from localroute.telemetry import events as ev
from localroute.telemetry.redact import REDACTED, redact

SECRET = "/home/alice/.ssh/id_rsa zqxproc"


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ---- host names ------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "parsed"), [
    ("127.0.0.1:8808", ("127.0.0.1", 8808)), ("LocalHost", ("localhost", None)),
    ("[::1]:8808", ("[::1]", 8808)), ("[::1]", ("[::1]", None)), ("[::1", None),
    ("host:", None), ("host:80x", None), (":8808", None), ("host:1234567", None)])
def test_split_host(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(value) == parsed


def test_a_wildcard_bind_answers_to_this_machines_addresses() -> None:
    names = bound_names("0.0.0.0")
    assert {"127.0.0.1", "localhost", "[::1]"} <= names
    assert bound_names("192.168.1.5") == {"127.0.0.1", "localhost", "[::1]", "192.168.1.5"}


def test_host_and_origin_rules() -> None:
    guards = Guards(lambda *a: None, settings=ServerSettings(  # type: ignore[arg-type]
        port=8808, allow_hosts=("proxy.example", "pinned.example:443"),
        allow_origins=("http://localhost:3000/",)))
    assert guards._host_allowed("localhost:8808") and guards._host_allowed("127.0.0.1")
    assert not guards._host_allowed("localhost:8809")
    assert guards._host_allowed("proxy.example:9999")
    assert guards._host_allowed("pinned.example:443")
    assert not guards._host_allowed("pinned.example:444")
    assert not guards._host_allowed("evil.example:8808")
    assert guards._origin_allowed("http://localhost:3000", "127.0.0.1:8808")
    assert guards._origin_allowed("http://127.0.0.1:8808", "127.0.0.1:8808")
    assert not guards._origin_allowed("null", "127.0.0.1:8808")
    assert not guards._origin_allowed("http://evil.example", "127.0.0.1:8808")


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("allow_hosts", "proxy.example", True), ("allow_hosts", "proxy.example:443", True),
    ("allow_hosts", "[::1]:8808", True), ("allow_hosts", "http://proxy.example", False),
    ("allow_hosts", "proxy.example:", False),
    ("allow_origins", "http://localhost:3000", True), ("allow_origins", "HTTPS://a.b/", True),
    ("allow_origins", "localhost:3000", False), ("allow_origins", "ftp://a.b", False),
    ("allow_origins", "http://a.b/app", False), ("allow_origins", "*", False)])
def test_allowed_names_are_checked_at_start(field: str, value: str, ok: bool) -> None:
    settings = ServerSettings.model_validate({field: (value,)})
    if ok:
        check_names(settings)
    else:
        with pytest.raises(ValueError, match=f"--{field[:-1].replace('_', '-')} '"):
            check_names(settings)


# ---- connections -----------------------------------------------------------------------------

def test_connection_limits_overall_and_per_client() -> None:
    limits = ConnectionLimits(max_total=3, max_per_client=2, max_header_bytes=1024,
                              header_timeout_s=1)
    assert limits.admit("a") is None and limits.admit("a") is None
    refused = limits.admit("a")
    assert refused is not None and "--max-connections-per-client" in refused
    assert limits.admit("b") is None
    full = limits.admit("c")
    assert full is not None and "--max-connections" in full
    limits.release("a")
    assert limits.admit("c") is None
    for client in ("a", "b", "c"):
        limits.release(client)
    assert limits.total == 0 and not limits.per_client


# ---- the key file ----------------------------------------------------------------------------

def test_key_file_is_read_only_when_private(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("  s3cret\n")
    key.chmod(0o600)
    assert read_key_file(key) == "s3cret"
    for mode in (0o640, 0o604, 0o660):
        key.chmod(mode)
        with pytest.raises(UsageError, match=f"mode {mode:04o}.*chmod 600"):
            read_key_file(key)
    key.chmod(0o600)
    key.write_text("\n")
    with pytest.raises(UsageError, match="empty"):
        read_key_file(key)
    with pytest.raises(UsageError, match="cannot read"):
        read_key_file(tmp_path / "missing")


# ---- private files ---------------------------------------------------------------------------

def test_private_dirs_and_files_ignore_the_umask(tmp_path: Path, umask_000: None) -> None:
    made = private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    with os.fdopen(open_private(made / "log", "a"), "a") as fh:
        fh.write("x")
    write_private_atomic(made / "state.json", "{}")
    old = made / "old.db"
    old.write_text("")
    old.chmod(0o644)  # written by an earlier version
    private_file(old)
    for name in ("log", "state.json", "old.db"):
        assert stat.S_IMODE((made / name).stat().st_mode) == 0o600, name
    assert (made / "state.json").read_text() == "{}"
    assert sorted(p.name for p in made.iterdir()) == ["log", "old.db", "state.json"]


def test_an_open_directory_is_warned_about_once(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o750)
    private_dir(shared, warn_if_open=True)
    private_dir(shared, warn_if_open=True)
    said = capsys.readouterr().err
    assert said.count("accessible to other users") == 1 and f"chmod 700 {shared}" in said
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    private_dir(closed, warn_if_open=True)
    assert capsys.readouterr().err == ""


# ---- redaction -------------------------------------------------------------------------------

def _request_events() -> list[ev.EventRow]:
    s = SECRET
    return [
        ev.state_transition("t", "s", "p", state="TOOL_ONLY_EXECUTION", next_state="SYNTHESIS",
                            started_ms=1, elapsed_ms=1, detail=f"tool read_file({s})",
                            role=None, route="tool"),
        ev.routing_decision("t", "p", route="tool", decided_by="rules", confidence=1.0,
                            latency_ms=1, escalated=True, escalation_error=s, tool="read_file",
                            reason=s),
        ev.role_selection("t", "p", route="router", role="router", static_role="router",
                          task_type="chat", decided_by="rules", reason=s,
                          downgraded_from=None, reasoning_depth=2, context_tokens=10),
        ev.model_call("t", "p", role="router", model="m", backend="llamacpp", ok=False,
                      total_s=1, queue_wait_s=0, ttft_s=None, prompt_tokens=1,
                      completion_tokens=0, tokens_per_s=None, finish_reason=None, attempts=1,
                      fallbacks=[{"from_role": "a", "to_role": "b", "reason": s}],
                      error=f"LLMServerError: {s}", requested_role="router"),
        ev.tool_call("t", "p", tool="read_file", ok=False, elapsed_ms=1, error=s, direct=True),
        ev.validation_verdict("t", "p", role="router", route="router", passed=False,
                              attempt=1, failures=[s, s], detail=s, elapsed_ms=1),
        ev.request_outcome("t", "s", state="COMPLETED", success=True, mode="NORMAL",
                           route="tool", role=None, selected_role=None, static_role=None,
                           task_type=None, decided_by="rules", validation="skipped",
                           llm_calls=0, tools_used=["read_file"], fallbacks=0, error=s,
                           total_ms=1, timings_ms={}, query=s, channel=None),
    ]


def test_redaction_leaves_nothing_of_the_query() -> None:
    rows = _request_events()
    for row in rows:
        assert "zqxproc" in json.dumps(row)  # the canary is there to remove
        redacted = redact(row)
        assert "zqxproc" not in json.dumps(redacted) and ".ssh" not in json.dumps(redacted)
        assert redacted["event"] == row["event"] and redacted["route"] == row["route"]
    transition, decision, _role, call, tool, verdict, outcome = (redact(r) for r in rows)
    assert transition["data"]["detail"] == REDACTED
    assert transition["data"]["state"] == "TOOL_ONLY_EXECUTION"
    assert decision["data"]["tool"] == "read_file" and decision["data"]["escalated"] is True
    assert call["data"]["error"] == f"LLMServerError: {REDACTED}"
    assert call["data"]["prompt_tokens"] == 1
    assert tool["data"] == {"tool": "read_file", "error": REDACTED, "direct": True}
    assert verdict["data"]["failures"] == [REDACTED, REDACTED]
    assert outcome["data"]["query"] is None and outcome["data"]["tools_used"] == ["read_file"]


def test_events_that_carry_no_query_are_kept_whole() -> None:
    change = ev.mode_change(old="NORMAL", new="ALERT", reason="memory 91%")
    assert redact(change) == change
    feedback = ev.feedback("t", verdict="bad", note="wrong")
    assert redact(feedback) == feedback


# ---- request bodies and feedback -------------------------------------------------------------

@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"model": "auto", "n": ' + b"1" * 5000 + b"}", "number out of range"),
    (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
    (b'{"model": "\xc3\x28"}', "not valid JSON"),
    (b'{"temperature": NaN}', "not valid JSON"),
])
def test_parse_body_refuses_what_json_loads_let_through(body: bytes, fragment: str) -> None:
    with pytest.raises(APIError) as exc:
        parse_body(body, ChatCompletionRequest)
    assert exc.value.status == 400 and fragment in exc.value.message


def test_feedback_log_accepts_only_served_traces_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "fb" / "feedback.jsonl"
    log = FeedbackLog(path, max_file_bytes=1024)
    with pytest.raises(UnknownTrace, match="'abc'"):
        log.add(FeedbackRequest(trace_id="abc", rating=1))
    log.served("abc")
    for _ in range(30):
        log.add(FeedbackRequest(trace_id="abc", rating=1, note="n" * 100))
    rotated = path.with_name("feedback.jsonl.1")
    assert path.stat().st_size <= 1024 and rotated.stat().st_size <= 1024
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(json.loads(line)["trace_id"] == "abc"
               for line in path.read_text().splitlines())


# ---- the terminal ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("a\x1b[2Jb", "a\\x1b[2Jb"), ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
    ("x\x9b31m", "x\\u009b31m"), ("abc\u202edef", "abc\\u202edef"), ("a\rb", "a\\x0db"),
    ("line\r\nnext\ttab", "line\nnext\ttab"),
    ("plain [b]text[/b] é 日本", "plain [b]text[/b] é 日本"),
])
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_the_safe_console_escapes_cells_and_labels() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, width=100)
    table = Table()
    table.add_column("what")
    table.add_row("cell\x1b]52;c;AAAA\x07")
    tree = Tree("root\x1b[2J")
    tree.add("leaf\x1b[31m")
    console.print("printed\x1b[2J", markup=False)
    console.print(table)
    console.print(tree)
    # Only rich's own colour sequences may remain.
    text = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue())
    assert "\x1b" not in text
    for escaped in ("printed\\x1b[2J", "cell\\x1b]52;c;AAAA\\x07", "root\\x1b[2J",
                    "leaf\\x1b[31m"):
        assert escaped in text
