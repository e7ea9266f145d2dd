"""What localroute leaves on disk and on the terminal (issue 11, defect 7): a private state
directory whatever the umask, nothing derived from the query stored with `record_queries:
false`, and control sequences from files shown escaped. Real `serve` and `localroute`
subprocesses; no model answers (tools do: "what time is it", `cat FILE`)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.support.servers import free_port
from tests.test_server import Serve, write_config

TOOL_QUESTION = {"model": "auto", "messages": [{"role": "user", "content": "what time is it"}]}
CANARY_FILE = "zqx-canary-secret-name.txt"
CANARY_PROCESS = "zqxcanaryproc"


def _umask_000() -> None:
    os.umask(0)


def localroute(*args: str, env: dict[str, str], cwd: Path | None = None,
               umask_000: bool = False) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALROUTE_")}
    return subprocess.run([sys.executable, "-m", "localroute", *args], capture_output=True,
                          text=True, timeout=180, env={**environ, **env}, cwd=cwd,
                          preexec_fn=_umask_000 if umask_000 else None)


def dead_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "models.yaml", f"http://127.0.0.1:{free_port()}/v1")


def telemetry_config(path: Path, **store: object) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "telemetry": store}), encoding="utf-8")
    return path


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


def test_state_is_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"  # neither exists yet: both are created 0700
    config = dead_config(tmp_path)
    env = {"LOCALROUTE_STATE_DIR": str(state), "LOCALROUTE_TELEMETRY_CONFIG": str(
        telemetry_config(tmp_path / "telemetry.yaml", json_log=str(state / "events.jsonl")))}
    server = Serve(config, "--feedback-file", str(state / "feedback.jsonl"), env=env,
                   preexec=_umask_000)
    try:
        answer = httpx.post(server.base_url + "/chat/completions", json=TOOL_QUESTION,
                            timeout=30)
        trace = answer.headers["x-localroute-trace-id"]
        feedback = httpx.post(server.base_url + "/feedback",
                              json={"trace_id": trace, "rating": 1, "note": "fine"})
        assert feedback.status_code == 200, feedback.text
        asked = localroute("--config", str(config), "--profile", "test", "ask",
                           "what time is it", env=env, umask_000=True)
        assert asked.returncode == 0, asked.stderr
        mode_set = localroute("mode", "set", "DEGRADED", "--reason", "umask test", env=env,
                              umask_000=True)
        assert mode_set.returncode == 0, mode_set.stderr
        deadline = time.monotonic() + 30
        wanted = {"telemetry.db", "telemetry.db-wal", "telemetry.db-shm", "runtime.json",
                  "mode_override.json", "feedback.jsonl", "events.jsonl"}
        while time.monotonic() < deadline and not wanted <= {p.name for p in state.iterdir()}:
            time.sleep(0.2)
        assert wanted <= {p.name for p in state.iterdir()}, sorted(os.listdir(state))
        found = modes(tmp_path / "state")
    finally:
        server.stop()
    for path, mode in found.items():
        expected = 0o700 if (tmp_path / path).is_dir() else 0o600
        assert mode == expected, f"{path} is {mode:04o}, not {expected:04o}"


def test_an_open_state_dir_is_warned_about_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    done = localroute("--config", str(dead_config(tmp_path)), "--profile", "test", "ask",
                      "what time is it", env={"LOCALROUTE_STATE_DIR": str(state)})
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "accessible to other users" in line]
    assert len(warnings) == 1, done.stderr
    assert str(state) in warnings[0] and f"chmod 700 {state}" in warnings[0]
    assert stat.S_IMODE(state.stat().st_mode) == 0o755  # told, not changed behind their back


def _stored_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file())


def _ask_canaries(tmp_path: Path, record_queries: bool) -> bytes:
    state = tmp_path / f"state-{record_queries}"
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / CANARY_FILE).write_text("nothing to see\n")
    env = {"LOCALROUTE_STATE_DIR": str(state), "LOCALROUTE_TELEMETRY_CONFIG": str(
        telemetry_config(tmp_path / f"telemetry-{record_queries}.yaml",
                         record_queries=record_queries, batch_window_ms=50))}
    config = str(dead_config(tmp_path))
    for question in (f"cat {work / CANARY_FILE}", f"cat {work / 'missing'}-{CANARY_FILE}",
                     f"is {CANARY_PROCESS} running?"):
        done = localroute("--config", config, "--profile", "test", "ask", question, env=env,
                          cwd=work)
        assert done.returncode == 0, done.stderr
    return _stored_bytes(state)


def test_record_queries_false_stores_nothing_from_the_query(tmp_path: Path) -> None:
    # Recorded, the path and the process name are in the store (query, step details, tool
    # arguments and errors): the check below can fail.
    recorded = _ask_canaries(tmp_path, record_queries=True)
    assert CANARY_FILE.encode() in recorded and CANARY_PROCESS.encode() in recorded
    private = _ask_canaries(tmp_path, record_queries=False)
    assert b"request.outcome" in private and b"tool.call" in private  # events were stored
    assert CANARY_FILE.encode() not in private
    assert CANARY_PROCESS.encode() not in private


ESCAPES = "before\x1b[2J\x1b]0;pwned\x07\x1b]52;c;Y2xpcGJvYXJk\x07\x9b31mafter\n"


def test_control_sequences_from_a_file_print_escaped(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    evil = work / "evil.txt"
    evil.write_text(ESCAPES, encoding="utf-8")
    env = {"LOCALROUTE_STATE_DIR": str(tmp_path / "state")}
    config = str(dead_config(tmp_path))
    shown = localroute("--config", config, "--profile", "test", "ask", f"cat {evil}", env=env,
                       cwd=work)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x9b" not in shown.stdout
    assert "\\x1b[2J" in shown.stdout and "\\x1b]52;c;Y2xpcGJvYXJk\\x07" in shown.stdout
    assert "before" in shown.stdout and "after" in shown.stdout
    # --json is for programs: the text as it is, which JSON escapes itself.
    raw = localroute("--config", config, "--profile", "test", "ask", f"cat {evil}", "--json",
                     env=env, cwd=work)
    assert "\x1b" not in raw.stdout and "\x1b[2J" in json.loads(raw.stdout)["reply"]


def test_control_sequences_from_recorded_events_print_escaped(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # A wide terminal: the table would otherwise cut the long quoted path (pytest's tmp_path
    # grows with the run number) before the escaped sequence this test looks for.
    env = {"LOCALROUTE_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "1000"}
    config = str(dead_config(tmp_path))
    # A path named with a screen-clearing sequence: the tool's error quotes it.
    asked = localroute("--config", config, "--profile", "test", "ask",
                       f"cat {work}/\x1b[2Jgone.txt", "--json", env=env, cwd=work)
    trace = json.loads(asked.stdout)["trace_id"]
    events = localroute("telemetry", "query", "--json", env=env)
    assert "\x1b[2J" in events.stdout.encode().decode("unicode_escape")  # it was recorded
    for args in (("telemetry", "query"), ("telemetry", "trace", trace)):
        shown = localroute(*args, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout, args
        assert "\\x1b[2J" in shown.stdout, (args, shown.stdout)
