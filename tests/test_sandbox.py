"""The code sandbox against correct, wrong and hostile programs; nothing may be left running."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from localroute.evaluation.graders.code import (
    build_program,
    defines,
    grade_code_file,
    grade_code_rows,
    summarize,
)
from localroute.evaluation.sandbox.program import (
    CheckSpec,
    SandboxConfig,
    SandboxResult,
    Verdict,
    capabilities,
    run_program,
)
from tests.support.paths import EVAL_DATA
from tests.support.sandbox import visible_dir

DATA = EVAL_DATA / "code_subset.jsonl"
IS_ROOT = os.geteuid() == 0
# A uid of the suite's own, so sandboxes that other programs on the machine run as `nobody` at the
# same time are never mistaken for survivors of these runs (and never killed by them).
CONFIG = SandboxConfig(timeout_s=1.5, memory_mb=256, max_procs=32, max_output_bytes=4096,
                       run_as_uid=60990, run_as_gid=60990)


def run(
    code: str,
    config: SandboxConfig = CONFIG,
    spare: int | None = None,
    check: CheckSpec | None = None,
) -> SandboxResult:
    since = time.time()
    before = own_children()
    result = run_program(textwrap.dedent(code), config, check)
    assert_nothing_left(result, since, spare, before)
    return result


def own_children() -> set[int]:
    """This test process's live children (other suites keep some: a warm grader pool, servers)."""
    return {c.pid for c in psutil.Process().children(recursive=True)
            if c.status() != psutil.STATUS_ZOMBIE}


def assert_nothing_left(
    result: SandboxResult, since: float, spare: int | None = None, before: set[int] | None = None
) -> None:
    """No process of the run is alive (`spare`: a test's own bystander of the same uid)."""
    assert result.cleanup_ok, result
    left = []
    for process in psutil.process_iter(["pid", "uids", "cmdline", "status", "create_time"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE or info["pid"] in (os.getpid(), spare):
            continue
        same_uid = (
            result.run_as_uid is not None
            and info["uids"].real == result.run_as_uid
            and info["create_time"] >= since - 1.0
        )
        if same_uid or result.run_id in " ".join(info["cmdline"] or ()):
            left.append(info)
    assert left == []
    children = [
        c
        for c in psutil.Process().children(recursive=True)
        if c.status() != psutil.STATUS_ZOMBIE and c.pid != spare and c.pid not in (before or set())
    ]
    assert children == []


def problem(problem_id: str) -> dict[str, Any]:
    for line in DATA.read_text(encoding="utf-8").splitlines():
        row: dict[str, Any] = json.loads(line)
        if row["id"] == problem_id:
            return row
    raise AssertionError(f"{problem_id} not in {DATA}")


# --- what this machine gives the sandbox ---------------------------------------------------


def test_capabilities_report_the_active_protections() -> None:
    caps = capabilities(CONFIG)
    assert caps.error is None and caps.missing == {}
    assert caps.interpreter is not None and os.path.isabs(caps.interpreter)
    assert "RLIMIT_AS" in caps.rlimits and "RLIMIT_NPROC" in caps.rlimits
    assert caps.pid_namespace and caps.net_namespace and caps.mount_namespace
    assert ("/home", "home") in caps.masks and ("/tmp", "scratch") in caps.masks
    # The interpreter must run in the sandbox: not under a home (a venv in /root) it hides.
    assert not any(caps.interpreter.startswith(path + "/") for path, _ in caps.masks)
    if IS_ROOT:  # CI and the dev machines: root with util-linux unshare
        assert caps.uid_drop and caps.run_as_uid == CONFIG.run_as_uid
    else:
        assert not caps.uid_drop and caps.user_namespace and caps.no_capabilities


def test_a_run_records_its_protections_and_interpreter() -> None:
    result = run("print('hello')")
    assert result.verdict is Verdict.PASSED
    assert result.stdout == "hello\n"
    assert result.interpreter == capabilities(CONFIG).interpreter
    assert result.missing_protections == {}
    for name in ("rlimit_as", "rlimit_cpu", "rlimit_nproc", "scrubbed_env", "wall_clock",
                 "separate_checker", "unprivileged", "pid_namespace", "net_namespace",
                 "read_only_root", "hidden_homes", "hidden_state", "hidden_run", "private_tmp"):
        assert name in result.protections
    if IS_ROOT:
        assert "uid_drop" in result.protections


# --- ordinary verdicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "verdict", "error_type"),
    [
        ("def f(x):\n    return x + 1\nassert f(1) == 2\n", Verdict.PASSED, None),
        ("assert 1 + 1 == 3, 'arithmetic'\n", Verdict.FAILED, "AssertionError"),
        ("1 / 0\n", Verdict.RUNTIME_ERROR, "ZeroDivisionError"),
        ("def f(:\n", Verdict.RUNTIME_ERROR, "SyntaxError"),
        ("import sys\nsys.exit(0)\nassert False\n", Verdict.RUNTIME_ERROR, "SystemExit"),
    ],
)
def test_verdicts_follow_how_the_program_ended(
    code: str, verdict: Verdict, error_type: str | None
) -> None:
    result = run(code)
    assert result.verdict is verdict, result
    assert result.error_type == error_type


def test_exiting_before_the_tests_is_not_a_pass() -> None:
    result = run("import os\nos._exit(0)\nassert False\n")
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert "before its tests finished" in result.reason


def test_output_is_capped_and_flagged() -> None:
    result = run("import sys\nprint('o' * 200_000)\nsys.stderr.write('e' * 200_000)\n")
    assert result.verdict is Verdict.PASSED
    assert result.stdout == "o" * CONFIG.max_output_bytes and result.stdout_truncated
    assert result.stderr == "e" * CONFIG.max_output_bytes and result.stderr_truncated


def test_cpu_limit_ends_a_busy_program_before_the_wall_clock() -> None:
    config = CONFIG.model_copy(update={"timeout_s": 6.0, "cpu_s": 1})
    result = run("while True:\n    pass\n", config)
    assert result.verdict is Verdict.TIMEOUT
    assert result.signal == "SIGXCPU"
    # The CPU limit, not the wall clock, ended it (no fixed figure: the machine may be busy).
    assert result.elapsed_s < config.timeout_s


# --- hostile programs ----------------------------------------------------------------------

HOSTILE = [
    ("fork_bomb", "import os\nwhile True:\n    os.fork()\n", Verdict.RUNTIME_ERROR),
    (
        "fork_bomb_that_swallows_errors",
        "import os, time\nwhile True:\n    try:\n        os.fork()\n"
        "    except OSError:\n        time.sleep(0.01)\n",
        Verdict.TIMEOUT,
    ),
    ("infinite_loop", "while True:\n    pass\n", Verdict.TIMEOUT),
    (
        "sleep_forever_with_a_detached_child",
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '1000'], start_new_session=True)\ntime.sleep(1000)\n",
        Verdict.TIMEOUT,
    ),
    (
        "memory_hog",
        "hog = []\nwhile True:\n    hog.append(bytearray(10**7))\n",
        Verdict.MEMORY_ERROR,
    ),
    ("one_huge_allocation", "x = bytearray(8 * 1024**3)\n", Verdict.MEMORY_ERROR),
    ("reading_stdin", "data = input()\nassert data\n", Verdict.RUNTIME_ERROR),
    (
        "killing_its_parent",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        Verdict.RUNTIME_ERROR,
    ),
]


@pytest.mark.parametrize(("name", "code", "verdict"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_program_is_contained(name: str, code: str, verdict: Verdict) -> None:
    result = run(code)
    assert result.verdict is verdict, result
    assert result.elapsed_s < CONFIG.timeout_s + 1.0


def test_killing_every_process_it_can_only_kills_its_own_namespace() -> None:
    # kill(-1) reaches every process the sandbox user may signal. Only a PID namespace confines
    # it to the run, so without one this program is not sent at all: the test fails instead.
    caps = capabilities(CONFIG)
    assert caps.pid_namespace and caps.run_as_uid is not None, "needs root with unshare, as CI"
    # A bystander of the same uid outside the sandbox: kill(-1) must not reach it.
    bystander = subprocess.Popen(
        ["sleep", "30"], user=caps.run_as_uid, group=CONFIG.run_as_gid, extra_groups=[], cwd="/"
    )
    try:
        result = run("import os, signal\nos.kill(-1, signal.SIGKILL)\n", spare=bystander.pid)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    # Nothing else in its namespace but the supervisor (pid 1, which kill(-1) skips).
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.error_type == "ProcessLookupError"


def test_unbounded_output_times_out_with_capped_output() -> None:
    result = run("while True:\n    print('x' * 1000)\n")
    assert result.verdict is Verdict.TIMEOUT
    assert result.stdout_truncated and len(result.stdout) == CONFIG.max_output_bytes


def test_writing_outside_its_directory_changes_nothing_outside(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run(f"open({str(target)!r}, 'w').write('pwned')\n")
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.error_type in {"PermissionError", "FileNotFoundError"}
    assert not target.exists()


def test_writes_to_world_writable_tmp_vanish_with_the_run() -> None:
    name = f"/tmp/localroute-escape-{uuid.uuid4().hex}"
    result = run(f"open({name!r}, 'w').write('x')\nimport os\nassert os.path.exists({name!r})\n")
    assert not os.path.exists(name)
    if IS_ROOT:  # a private tmpfs over /tmp: the write succeeds inside and is gone after
        assert "private_tmp" in result.protections
        assert result.verdict is Verdict.PASSED


def test_a_socket_cannot_reach_even_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = run(
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=1).send(b'hi')\n"
        )
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert result.error_type in {"OSError", "ConnectionRefusedError", "TimeoutError"}
    assert "net_namespace" in result.protections


def test_secrets_in_the_grader_environment_are_not_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("LOCALROUTE_SANDBOX_SECRET", secret)
    result = run(
        """
        import os
        print(sorted(os.environ))
        for pid in os.listdir('/proc'):
            try:
                print(open(f'/proc/{pid}/environ', 'rb').read())
            except OSError:
                pass
        """
    )
    assert result.verdict is Verdict.PASSED
    assert "'HOME'" in result.stdout and "'PATH'" in result.stdout
    assert secret not in result.stdout and "LOCALROUTE_SANDBOX_SECRET" not in result.stdout


def test_without_namespaces_cleanup_still_leaves_nothing() -> None:
    config = CONFIG.model_copy(update={"namespaces": False, "allow_weak": True})
    sleeper = run(HOSTILE[3][1], config)
    assert sleeper.verdict is Verdict.TIMEOUT
    assert "pid_namespace" not in sleeper.protections
    bomb = run(HOSTILE[1][1], config)
    assert bomb.verdict is Verdict.TIMEOUT


# --- a sandbox that cannot be set up is never a pass or a fail -----------------------------


def test_missing_interpreter_is_a_sandbox_error() -> None:
    result = run_program(
        "pass\n", CONFIG.model_copy(update={"interpreter": "/nonexistent/python3"})
    )
    assert result.verdict is Verdict.SANDBOX_ERROR
    assert "/nonexistent/python3" in result.reason


def test_interpreter_that_never_runs_the_program_is_a_sandbox_error() -> None:
    # Passes the version probe but does not run the runner: the verdict must not be `passed`.
    # Not under /tmp or /run: the sandbox hides those (a different sandbox_error).
    folder = tempfile.mkdtemp(prefix=".fake-python-", dir=visible_dir())
    try:
        os.chmod(folder, 0o755)
        fake = Path(folder) / "python3"
        fake.write_text("#!/bin/sh\necho 3.11\n")
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | 0o044)
        result = run("assert True\n", CONFIG.model_copy(update={"interpreter": str(fake)}))
    finally:
        for item in Path(folder).iterdir():
            item.unlink()
        os.rmdir(folder)
    assert result.verdict is Verdict.SANDBOX_ERROR
    assert "did not start the runner" in result.reason


# --- real problems through the grader ------------------------------------------------------

BELOW_ZERO = """
from typing import List

def below_zero(operations: List[int]) -> bool:
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            return True
    return False
"""
BELOW_ZERO_WRONG = "def below_zero(operations):\n    return sum(operations) < 0\n"
SMALLEST = "def smallest_num(xs):\n    return min(xs)\n"
SMALLEST_WRONG = "def smallest_num(xs):\n    return xs[0]\n"


def test_real_problems_pass_when_correct_and_fail_when_wrong() -> None:
    rows = [
        {**problem("HumanEval/3"), "id": "he3-right", "completion": BELOW_ZERO},
        {**problem("HumanEval/3"), "id": "he3-wrong", "completion": BELOW_ZERO_WRONG},
        {**problem("MBPP/62"), "id": "mbpp62-right", "completion": SMALLEST},
        {**problem("MBPP/62"), "id": "mbpp62-wrong", "completion": SMALLEST_WRONG},
    ]
    results = grade_code_rows(rows, CONFIG, concurrency=2)
    assert [(r["id"], r["verdict"]) for r in results] == [
        ("he3-right", "passed"),
        ("he3-wrong", "failed"),
        ("mbpp62-right", "passed"),
        ("mbpp62-wrong", "failed"),
    ]
    assert summarize(results) == {"passed": 2, "failed": 2}


def test_a_fork_bomb_beside_a_correct_solution_does_not_spoil_it() -> None:
    smallest = problem("MBPP/62")
    rows = [
        {**smallest, "id": "bomb", "completion": "import os\nwhile True:\n    os.fork()\n"},
        {**smallest, "id": "right", "completion": SMALLEST},
    ]
    results = grade_code_rows(rows, CONFIG, concurrency=2)
    assert [r["verdict"] for r in results] == ["runtime_error", "passed"]
    assert all(r["cleanup_ok"] for r in results)


def test_concurrent_runs_never_disturb_each_other() -> None:
    # Fast runs back to back: one run's cleanup must not touch the run beside it (a PID
    # namespace's inode is reused as soon as it dies, so it is no mark of a run).
    smallest = problem("MBPP/62")
    rows = [{**smallest, "id": f"r{i}", "completion": SMALLEST} for i in range(16)]
    results = grade_code_rows(rows, CONFIG, concurrency=2)
    assert [r["verdict"] for r in results] == ["passed"] * 16, summarize(results)


def test_body_only_completion_runs_after_the_prompt() -> None:
    row = problem("HumanEval/54")
    body = "    return set(s0) == set(s1)\n"
    assert not defines(body, "same_chars")
    program = build_program(row["prompt"], body, row["entry_point"])
    assert program == row["prompt"] + body
    assert "check(" not in program  # the tests stay with the trusted checker
    check = CheckSpec(tests=row["tests"], entry_point=row["entry_point"], setup=row["prompt"])
    assert run(program, check=check).verdict is Verdict.PASSED


ZERO_DIV = "def smallest_num(xs):\n    return 1 / 0\n"


def test_grade_code_file_returns_one_result_per_row(tmp_path: Path) -> None:
    row = {**problem("MBPP/62"), "completion": SMALLEST}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "x", "completion": ZERO_DIV}))
    results = grade_code_file(path, CONFIG)
    assert [(r["id"], r["verdict"]) for r in results] == [
        ("MBPP/62", "passed"),
        ("x", "runtime_error"),
    ]
    assert "ZeroDivisionError" in results[1]["stderr_tail"]


def test_the_program_runs_on_the_probed_interpreter() -> None:
    result = run("import sys\nprint(sys.executable)\n")
    assert result.stdout.strip() == capabilities(CONFIG).interpreter
