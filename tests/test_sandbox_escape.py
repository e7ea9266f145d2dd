"""Hostile programs against the sandbox's walls, run by this test process's user (root in CI):
reading a home, the state dir or /root, writing .bashrc and shared directories, forging a pass.

Each reproduced its defect before the fix (issue 11, defects 3 and 4): the canary was read,
/run/lock kept the program's file, and writing a record to the status descriptor or patching
`os._exit` and `json.dumps` turned failing tests into `passed`. The same programs run as an
unprivileged grader in test_sandbox_unprivileged.py.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localroute.evaluation.graders.code import grade_code_rows
from localroute.evaluation.sandbox.program import SandboxConfig, Verdict, capabilities, run_program
from localroute.evaluation.suites.registry import get_suite
from tests.support.hostile import (
    CANARY_BASHRC,
    CANARY_DB,
    CANARY_KEY,
    FORGERIES,
    RIGHT_SMALLEST,
    SHARED_DIRS,
    WRONG_SMALLEST,
    Secrets,
    escape_program,
)
from tests.support.paths import EVAL_DATA
from tests.support.sandbox import scratch_in_view

# A uid of this file's own: nothing else on the machine runs as it (see test_sandbox.CONFIG).
CONFIG = SandboxConfig(timeout_s=5.0, memory_mb=256, max_procs=32, max_output_bytes=16384,
                       run_as_uid=60992, run_as_gid=60992)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Secrets]:
    """The grader's HOME and state dir, somewhere the sandbox would otherwise show (not /tmp)."""
    with scratch_in_view("home") as home, scratch_in_view("state") as state:
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("LOCALROUTE_STATE_DIR", str(state))
        yield Secrets.plant(home, state)


def smallest_rows(completions: dict[str, str]) -> list[dict[str, str]]:
    """MBPP/62 of the packaged code suite, once per completion."""
    row = next(json.loads(line) for line in (EVAL_DATA / "code_subset.jsonl").open()
               if json.loads(line)["id"] == "MBPP/62")
    return [{**row, "id": name, "completion": code} for name, code in completions.items()]


def test_the_grader_home_and_state_are_hidden_wherever_they_are(secrets: Secrets) -> None:
    masks = dict(capabilities(CONFIG).masks)
    assert masks[str(secrets.home)] == "home"
    assert masks[str(secrets.state)] == "state"


def test_an_escaping_program_reads_no_home_and_leaves_nothing(secrets: Secrets) -> None:
    mark = f"left-by-sandbox-{uuid.uuid4().hex}"
    before = secrets.snapshot()
    result = run_program(escape_program(secrets, mark), CONFIG)
    # It ran to its end, so every attempt was made.
    assert result.verdict is Verdict.PASSED, result
    got = json.loads(result.stdout)
    for secret in (CANARY_KEY, CANARY_DB, CANARY_BASHRC.strip()):
        assert secret not in result.stdout
    assert got["listed"]["/home"] == [] and got["listed"]["/root"] == []
    assert got["listed"][str(secrets.home)] == [] and got["listed"][str(secrets.state)] == []
    assert ".bashrc" not in got["wrote"] and str(secrets.home) not in got["wrote"]
    # Inside, the shared directories are private and writable; outside, nothing is left.
    assert "/tmp" in got["wrote"] and "/run/lock" in got["wrote"]
    assert secrets.snapshot() == before
    for folder in SHARED_DIRS:
        assert not (Path(folder) / mark).exists(), folder


def test_the_root_is_read_only_even_where_modes_allow_writing() -> None:
    # A directory anyone may write to, made after the scan for such directories: no tmpfs
    # covers it, so only the read-only root stands between the program and the real disk.
    with scratch_in_view("open") as open_dir:
        os.chmod(open_dir, 0o777)
        program = (
            "import errno, os\n"
            f"for folder in [{str(open_dir)!r}, '/etc', '/var/lib', '/usr/local']:\n"
            "    try:\n"
            "        open(os.path.join(folder, 'x'), 'w').write('x')\n"
            "        print('wrote', folder)\n"
            "    except OSError as exc:\n"
            "        print('refused', folder, errno.errorcode[exc.errno])\n"
            "open('inside.txt', 'w').write('the workdir is its own')\n"
        )
        result = run_program(program, CONFIG)
        assert list(open_dir.iterdir()) == []
    assert result.verdict is Verdict.PASSED, result
    assert "wrote" not in result.stdout
    assert f"refused {open_dir} EROFS" in result.stdout


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_program_cannot_forge_a_pass(name: str) -> None:
    result = grade_code_rows(smallest_rows({name: FORGERIES[name]}), CONFIG, concurrency=1)[0]
    assert result["verdict"] not in ("passed", "sandbox_error"), result
    assert result["cleanup_ok"]


def test_the_forgeries_grade_as_their_answers_deserve() -> None:
    rows = smallest_rows({**FORGERIES, "right": RIGHT_SMALLEST, "wrong": WRONG_SMALLEST})
    verdicts = {r["id"]: r["verdict"] for r in grade_code_rows(rows, CONFIG, concurrency=2)}
    assert verdicts.pop("right") == "passed"
    assert verdicts.pop("wrong") == "failed"
    # Wrong answers stay wrong whatever the program patches or kills in its own process.
    for name in ("patch_os_exit_and_json_dumps", "patch_sys_exit_and_builtins",
                 "kill_every_process_it_can_see"):
        assert verdicts.pop(name) in ("failed", "runtime_error"), name
    assert set(verdicts.values()) == {"runtime_error"}, verdicts


def test_a_right_answer_that_also_kills_and_patches_still_passes() -> None:
    # The checker does not depend on anything the program can reach: a correct program that
    # tries everything above still gets its pass (nothing the program did broke the grader).
    code = FORGERIES["kill_every_process_it_can_see"].replace(WRONG_SMALLEST, RIGHT_SMALLEST)
    assert grade_code_rows(smallest_rows({"r": code}), CONFIG)[0]["verdict"] == "passed"


def test_every_problem_of_the_code_suite_grades_right_and_wrong() -> None:
    # Reference solutions written for the 25 packaged problems, and one wrong twist of each.
    from tests.support.code_solutions import RIGHT, WRONG

    suite = get_suite("code")
    items = suite.load(EVAL_DATA / "code_subset.jsonl")
    assert sorted(RIGHT) == sorted(WRONG) == sorted(item.id for item in items)
    pairs = [(item, f"```python\n{RIGHT[item.id]}```") for item in items]
    pairs += [(item, f"```python\n{WRONG[item.id]}```") for item in items]
    grades = suite.grade_many(pairs)
    right, wrong = grades[: len(items)], grades[len(items):]
    assert [(i.id, g.verdict) for i, g in zip(items, right, strict=True)] == [
        (i.id, "passed") for i in items
    ]
    assert all(g.correct is False for g in wrong), [
        (i.id, g.verdict, g.trace.get("reason")) for i, g in zip(items, wrong, strict=True)
        if g.correct is not False
    ]


def test_a_sandbox_without_unshare_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no unshare, no setpriv
    result = run_program("print('ran')\n", CONFIG)
    assert result.verdict is Verdict.SANDBOX_ERROR
    assert result.stdout == ""
    assert "unshare (util-linux) not found on PATH" in result.reason
    assert "pid_namespace" in result.reason and "--allow-weak-sandbox" in result.reason
    assert "hidden_homes" in result.missing_protections


def test_a_refused_unshare_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # What AppArmor or a container's seccomp profile does to unshare.
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    result = run_program("print('ran')\n", CONFIG)
    assert result.verdict is Verdict.SANDBOX_ERROR
    assert "Operation not permitted" in result.reason


def test_a_weak_sandbox_runs_when_allowed_and_says_what_it_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    weak = CONFIG.model_copy(update={"allow_weak": True})
    result = run_program("print('ran')\n", weak)
    assert result.verdict is Verdict.PASSED and result.stdout == "ran\n"
    missing = set(result.missing_protections)
    assert {"pid_namespace", "net_namespace", "mount_namespace", "read_only_root",
            "hidden_homes", "private_tmp"} <= missing
    assert missing.isdisjoint(result.protections)
    caps = capabilities(weak)
    assert caps.error is None and caps.missing == result.missing_protections
