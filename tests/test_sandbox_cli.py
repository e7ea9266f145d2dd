"""`--allow-weak-sandbox` of `eval grade-code` and `bench code`, on a machine made to lack
`unshare` (PATH without it): refused by default, graded with the missing protections printed
and recorded when the person allows it. Before the fix such a run graded with no isolation and
said so only in a JSON note (issue 11, defect 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostile import RIGHT_SMALLEST, WRONG_SMALLEST
from tests.support.paths import EVAL_DATA
from tests.support.servers import MODEL_ALIAS, LlamaServer


def no_unshare(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine without util-linux unshare (nor anything else on PATH)."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    return {**os.environ, "PATH": str(empty), "LOCALROUTE_DATA_DIR": str(EVAL_DATA)}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localroute", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    row = next(json.loads(line) for line in (EVAL_DATA / "code_subset.jsonl").open()
               if json.loads(line)["id"] == "MBPP/62")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({**row, "id": name, "completion": code}) + "\n"
                            for name, code in (("right", RIGHT_SMALLEST),
                                               ("wrong", WRONG_SMALLEST))))
    return path


def test_grade_code_without_isolation_is_sandbox_error(rows: Path, tmp_path: Path) -> None:
    done = cli("eval", "grade-code", str(rows), env=no_unshare(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("right: sandbox_error")
    assert lines[1].startswith("wrong: sandbox_error")
    assert "unshare (util-linux) not found on PATH" in lines[0]
    assert "pid_namespace" in lines[0] and "--allow-weak-sandbox" in lines[0]


def test_grade_code_weak_when_allowed_prints_what_is_missing(rows: Path, tmp_path: Path) -> None:
    env = no_unshare(tmp_path)
    done = cli("eval", "grade-code", str(rows), "--allow-weak-sandbox", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("right: passed") and "\nwrong: failed" in done.stdout
    weak = [line for line in done.stdout.splitlines() if line.startswith("WEAK SANDBOX")]
    assert len(weak) == 1
    for name in ("pid_namespace", "mount_namespace", "read_only_root", "hidden_homes"):
        assert name in weak[0]
    data = json.loads(cli("eval", "grade-code", str(rows), "--allow-weak-sandbox", "--json",
                          env=env).stdout)
    assert data["sandbox"]["allow_weak"] is True and "hidden_homes" in data["sandbox"]["missing"]
    assert "hidden_homes" in data["results"][0]["missing_protections"]


def write_config(path: Path, url: str) -> Path:
    path.write_text(
        "version: 1\nauto_profiles: [t]\nprofiles:\n  t:\n    roles:\n"
        f"      coder:\n        id: {MODEL_ALIAS}\n        backend: llamacpp\n"
        f"        endpoint: {url}\n        context_length: 2048\n        max_tokens: 48\n"
        "        temperature: 0.0\n        default_timeout: 60\n",
        encoding="utf-8",
    )
    return path


def test_bench_code_without_isolation_is_refused_before_any_model_call(tmp_path: Path) -> None:
    # No server at this endpoint: the refusal must come first.
    config = write_config(tmp_path / "models.yaml", "http://127.0.0.1:9/v1")
    out = tmp_path / "run"
    done = cli("--config", str(config), "--profile", "t", "bench", "code", "--role", "coder",
               "--limit", "1", "--out", str(out), env=no_unshare(tmp_path))
    assert done.returncode == 2
    assert "cannot fully isolate graded code" in done.stderr
    assert "--allow-weak-sandbox" in done.stderr
    assert not out.exists()
    math = cli("--config", str(config), "--profile", "t", "bench", "math", "--role", "coder",
               "--allow-weak-sandbox", env=no_unshare(tmp_path))
    assert math.returncode == 2 and "runs no graded code" in math.stderr


def test_bench_code_weak_run_says_so_and_records_it(
    tmp_path: Path, llama_server: LlamaServer
) -> None:
    config = write_config(tmp_path / "models.yaml", llama_server.base_url)
    out = tmp_path / "run"
    done = cli("--config", str(config), "--profile", "t", "bench", "code", "--role", "coder",
               "--limit", "1", "--out", str(out), "--allow-weak-sandbox",
               env=no_unshare(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "WEAK SANDBOX: graded without" in done.stdout
    assert "WEAK SANDBOX: graded without" in done.stderr  # also before the run starts
    sandbox = json.loads((out / "manifest.json").read_text())["suite_extra"]["sandbox"]
    assert sandbox["allow_weak"] is True
    assert {"pid_namespace", "hidden_homes", "read_only_root"} <= set(sandbox["missing"])
    report = (out / "report.md").read_text()
    assert "**Weak sandbox** (`--allow-weak-sandbox`), graded without: " in report
    assert "pid_namespace (unshare (util-linux) not found on PATH)" in report
