"""`localroute init` and the embedded model's first-answer note, run as people run them: the CLI
in a subprocess (`python -m localroute`), against the real llama-cpp-python server of the test
suite, replayed LM Studio answers (tests/support/init_replies.py), and a pseudo-terminal for the
interactive questions. Each test has its own user config dir and state dir."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from localroute.config.loader import load_config, resolve_profile
from localroute.onboarding.proposal import ROLE_ORDER
from tests.support import init_replies as R
from tests.support.replay import replaying
from tests.support.servers import LlamaServer, free_port

TIMEOUT = 600  # a busy two-core machine answers slowly; nothing here asserts a time


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCALROUTE_CONFIG", "LOCALROUTE_PROFILE")}
    env["LOCALROUTE_CONFIG_DIR"] = str(tmp_path / "config")
    env["LOCALROUTE_STATE_DIR"] = str(tmp_path / "state")
    env["COLUMNS"] = "200"  # keep rich from wrapping the lines the tests read
    return env


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localroute", *args], env=_env(tmp_path),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_init_against_the_real_server_is_accepted_by_doctor_and_used_by_ask(
        llama_server: LlamaServer, tmp_path: Path) -> None:
    file = tmp_path / "models.yaml"
    init = run(tmp_path, "init", "--yes", "--no-scan", "--endpoint", llama_server.url,
               "--out", str(file))
    assert init.returncode == 0, init.stderr
    text = file.read_text()
    assert "# router: smollm2 on llamacpp" in text and "does not report its context" in text
    config, source = load_config(file)
    router = resolve_profile(config, "local", source, env={}).role("router")
    assert (router.id, router.endpoint, router.context_length) == (
        "smollm2", llama_server.base_url, 2048)
    doctor = run(tmp_path, "--config", str(file), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"config: {file} (chosen with --config)" in doctor.stdout
    assert "✓ router: smollm2 on llamacpp" in doctor.stdout
    # A router role answering 16 tokens: bounded work, so a busy machine cannot push the call
    # past the role's 60 s timeout (a free-running SmolLM2 answer can take 1024 tokens).
    ask = run(tmp_path, "--config", str(file), "ask", "What is the capital of France?",
              "--role", "router", "--max-tokens", "16", "--json")
    assert ask.returncode == 0, ask.stdout + ask.stderr
    answer = json.loads(ask.stdout)
    assert (answer["model"], answer["backend"], answer["role"]) == ("smollm2", "llamacpp",
                                                                   "router")
    assert answer["content"]


def test_the_written_file_is_read_by_default_and_not_replaced_without_force(
        llama_server: LlamaServer, tmp_path: Path) -> None:
    # No --yes: stdin is not a terminal, so nothing is asked.
    first = run(tmp_path, "init", "--no-scan", "--endpoint", llama_server.base_url)
    assert first.returncode == 0, first.stderr
    written = tmp_path / "config" / "models.yaml"
    assert f"wrote {written}" in first.stdout
    models = run(tmp_path, "models", "--json")
    assert models.returncode == 0, models.stderr
    listing = json.loads(models.stdout)
    assert (listing["config"], listing["config_origin"], listing["profile"]) == (
        str(written), "user", "local")
    assert {r["model"] for r in listing["roles"]} == {"smollm2"}
    before = written.read_text()
    again = run(tmp_path, "init", "--yes", "--no-scan", "--endpoint", llama_server.url)
    assert again.returncode == 2
    assert str(written) in again.stderr and "--force" in again.stderr
    assert written.read_text() == before
    forced = run(tmp_path, "init", "--yes", "--force", "--no-scan", "--endpoint",
                 llama_server.url)
    assert forced.returncode == 0, forced.stderr


def test_print_writes_the_yaml_to_stdout_only(llama_server: LlamaServer, tmp_path: Path) -> None:
    result = run(tmp_path, "init", "--print", "--no-scan", "--endpoint", llama_server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# localroute models.yaml, written by `localroute init`")
    assert "proposed roles" in result.stderr  # the tables go to stderr, the file to stdout
    copy = tmp_path / "printed.yaml"
    copy.write_text(result.stdout)
    config, _ = load_config(copy)
    assert set(config.profiles) == {"local", "embedded"} and config.auto_profiles == ("local",)
    assert not (tmp_path / "config" / "models.yaml").exists()


def test_no_server_found_names_what_was_tried_and_how_to_start_one(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(tmp_path, "init", "--yes", "--no-scan", "--endpoint", url)
    assert result.returncode == 1
    assert f"{url} (--endpoint): nothing is listening" in result.stderr
    for hint in ("lms server start", "ollama serve", "llama-server -m", "vllm serve"):
        assert hint in result.stderr
    as_json = run(tmp_path, "init", "--yes", "--no-scan", "--endpoint", url, "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["written"] is None and report["probes"][0]["problem"] == "nothing is listening"
    bad = run(tmp_path, "init", "--yes", "--endpoint", "ftp://example")
    assert bad.returncode == 2 and "--endpoint 'ftp://example': not an http(s) URL" in bad.stderr


def test_lmstudio_stack_written_with_the_plan_in_its_comments(tmp_path: Path) -> None:
    file = tmp_path / "models.yaml"
    with replaying(R.LMSTUDIO) as url:
        # The six instances need 123.9 GiB by the planner (weights as init_replies.py reports
        # them, KV caches at the contexts init chooses); a 100 GiB budget cannot hold them.
        result = run(tmp_path, "init", "--yes", "--no-scan", "--endpoint", url, "--out",
                     str(file), "--budget", "100", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] == str(file) and report["yaml"] is None
    assert report["roles"]["reasoning"]["model"] == "deepseek-ai/deepseek-r1-distill-qwen-14b"
    assert report["roles"]["validation"]["shares_instance_with"] == "router"
    plan = report["plan"]
    assert not plan["fits"] and plan["headroom_bytes"] < 0 and plan["combinations"]
    text = file.read_text()
    assert "does NOT fit" in text and "Instances that fit at once" in text
    assert "#   why: named as a reasoning model" in text
    config, source = load_config(file)
    profile = resolve_profile(config, "local", source, env={})
    assert profile.role("coding").supports_tools and profile.role("reasoning").reasoning
    assert profile.role("reasoning").fallback == ("reasoning_heavy",)


def test_odd_model_ids_are_written_exactly_or_dropped(tmp_path: Path) -> None:
    file = tmp_path / "models.yaml"
    with replaying(R.ODD_IDS) as url:
        result = run(tmp_path, "init", "--yes", "--no-scan", "--endpoint", url, "--out",
                     str(file))
    assert result.returncode == 0, result.stderr
    raw = yaml.safe_load(file.read_text())
    assert set(raw["profiles"]) == {"local", "embedded"}  # the line break added no profile
    config, source = load_config(file)
    router = resolve_profile(config, "local", source, env={}).role("router")
    assert router.id == "weird: model #1" and router.backend.value == "openai"
    assert "evil" not in file.read_text()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """The CLI on a pseudo-terminal: what it printed so far, and a way to answer it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "localroute", *args], env=env,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.text, self.seen = "", 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            self.text += _ANSI.sub("", chunk.decode(errors="replace"))

    def expect(self, needle: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.text.find(needle, self.seen)
            if found >= 0:
                self.seen = found + len(needle)
                return
            if self.proc.poll() is not None and self.text.find(needle, self.seen) < 0:
                time.sleep(0.2)  # let the reader drain the rest
                if self.text.find(needle, self.seen) < 0:
                    break
            time.sleep(0.05)
        raise AssertionError(f"never saw {needle!r}; output:\n{self.text}")

    def answer(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> int:
        code = self.proc.wait(TIMEOUT)
        self._reader.join(5)
        os.close(self.master)
        return code


def test_interactive_session_changes_a_role(tmp_path: Path) -> None:
    file = tmp_path / "models.yaml"
    with replaying(R.LMSTUDIO) as url:
        term = Terminal(["init", "--no-scan", "--endpoint", url, "--out", str(file),
                         "--budget", "400"], _env(tmp_path))
        try:
            term.expect("Keep every proposed role?")
            term.answer("n")
            for role in ROLE_ORDER:
                term.expect(f"{role} (")
                # '2' is qwen/qwen3-1.7b, the second model LM Studio lists.
                term.answer("2" if role == "router" else "")
            term.expect("Write ")
            term.answer("y")
            term.expect("wrote ")
        finally:
            code = term.close()
    assert code == 0, term.text
    config, source = load_config(file)
    profile = resolve_profile(config, "local", source, env={})
    assert profile.role("router").id == "qwen/qwen3-1.7b"
    # Validation followed the router; summarization was already on that model: both share it.
    assert profile.role("validation").instance == "router"
    assert profile.role("summarization").instance == "router"
    assert "#   why: chosen by you" in file.read_text()


def test_first_embedded_answer_says_what_it_is_once_on_stderr(tmp_path: Path) -> None:
    first = run(tmp_path, "--profile", "embedded", "ask", "Say hello.", "--role", "router",
                "--max-tokens", "8", "--json")
    assert first.returncode == 0, first.stderr
    json.loads(first.stdout)  # stdout is the answer's JSON and nothing else
    assert "demonstration model" in first.stderr and "`localroute init`" in first.stderr
    assert "demonstration" not in first.stdout
    second = run(tmp_path, "--profile", "embedded", "ask", "What is the capital of France?")
    assert second.returncode == 0, second.stderr
    assert "demonstration" not in second.stderr + second.stdout
    assert (tmp_path / "state" / "embedded_note_shown").is_file()
    # Another machine (state dir): the whole pipeline's first answer says it too.
    other = tmp_path / "other"
    third = run(other, "--profile", "embedded", "ask", "What is the capital of France?")
    assert third.returncode == 0, third.stderr
    assert "demonstration model" in third.stderr and "demonstration" not in third.stdout
