"""The sandbox run by a grader that is not root: the tests' user is root, so the grader runs in a
subprocess as an unused uid (util-linux `setpriv`), with a home and state dir of its own.

Before the fix such a program kept the grader's uid and saw the real file system: it read
~/.ssh/id_rsa and the telemetry database and appended to ~/.bashrc (issue 11, defect 3). Now it
runs in a user namespace with every capability dropped, on a read-only root with the homes,
the state dir and /run covered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
from tests.support.sandbox import TEST_UID, env_for, python_for, scratch_in_view

# Runs as TEST_UID: grades the rows and the escape program, prints everything as JSON.
DRIVER = textwrap.dedent("""
    import json, sys
    from localroute.evaluation.graders.code import grade_code_rows
    from localroute.evaluation.sandbox.program import SandboxConfig, capabilities, run_program

    spec = json.load(open(sys.argv[1]))
    config = SandboxConfig(**spec["config"])
    print(json.dumps({
        "caps": capabilities(config).model_dump(),
        "escape": run_program(spec["escape"], config).model_dump(mode="json"),
        "rows": grade_code_rows(spec["rows"], config, concurrency=2),
    }))
""")
CONFIG = {"timeout_s": 5.0, "memory_mb": 256, "max_procs": 32, "max_output_bytes": 16384}


@pytest.fixture(scope="module")
def graded() -> Iterator[dict[str, Any]]:
    """One run of the driver as TEST_UID; its output, its secrets and what it tried to write."""
    mark = f"left-by-sandbox-{uuid.uuid4().hex}"
    with (
        scratch_in_view("home", owner=TEST_UID) as home,
        scratch_in_view("state", owner=TEST_UID) as state,
        scratch_in_view("owned", owner=TEST_UID) as owned,
    ):
        secrets = Secrets.plant(home, state, owner=TEST_UID)
        before = secrets.snapshot()
        row = next(json.loads(line) for line in (EVAL_DATA / "code_subset.jsonl").open()
                   if json.loads(line)["id"] == "MBPP/62")
        completions = {**FORGERIES, "right": RIGHT_SMALLEST, "wrong": WRONG_SMALLEST}
        spec = {
            "config": CONFIG,
            "escape": escape_program(secrets, mark, also_write=(str(owned),)),
            "rows": [{**row, "id": name, "completion": code} for name, code in completions.items()],
        }
        spec_file = home / "spec.json"
        spec_file.write_text(json.dumps(spec))
        done = subprocess.run(
            [*python_for(TEST_UID), "-c", DRIVER, str(spec_file)],
            env=env_for(home, state), cwd=home, capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr
        spec_file.unlink()
        yield {
            **json.loads(done.stdout), "secrets": secrets, "before": before,
            "after": secrets.snapshot(), "mark": mark, "owned": sorted(owned.iterdir()),
        }


def test_an_unprivileged_grader_gets_the_whole_sandbox(graded: dict[str, Any]) -> None:
    caps = graded["caps"]
    assert caps["is_root"] is False and caps["error"] is None and caps["missing"] == {}
    assert caps["user_namespace"] and caps["no_capabilities"] and not caps["uid_drop"]
    assert dict(caps["masks"])[str(graded["secrets"].home)] == "home"
    assert dict(caps["masks"])[str(graded["secrets"].state)] == "state"
    for name in ("unprivileged", "no_capabilities", "read_only_root", "hidden_homes",
                 "hidden_state", "hidden_run", "private_tmp", "separate_checker"):
        assert name in graded["escape"]["protections"]


def test_the_program_reads_no_home_and_changes_nothing(graded: dict[str, Any]) -> None:
    escape, secrets = graded["escape"], graded["secrets"]
    assert escape["verdict"] == "passed", escape  # it ran to its end: every attempt was made
    for secret in (CANARY_KEY, CANARY_DB, CANARY_BASHRC.strip()):
        assert secret not in escape["stdout"]
    got = json.loads(escape["stdout"])
    assert got["listed"][str(secrets.home)] == [] and got["listed"][str(secrets.state)] == []
    assert got["listed"]["/home"] == [] and got["listed"]["/root"] == []
    assert ".bashrc" not in got["wrote"]
    assert graded["after"] == graded["before"]  # .bashrc, the key, the database: unchanged
    assert graded["owned"] == []  # a directory the grader's user owns stayed read-only
    for folder in SHARED_DIRS:
        assert not (Path(folder) / graded["mark"]).exists(), folder


def test_no_forgery_passes_for_an_unprivileged_grader(graded: dict[str, Any]) -> None:
    verdicts = {row["id"]: row["verdict"] for row in graded["rows"]}
    assert verdicts.pop("right") == "passed"
    assert verdicts.pop("wrong") == "failed"
    assert verdicts and set(verdicts.values()) <= {"failed", "runtime_error"}, verdicts
    assert all(row["cleanup_ok"] for row in graded["rows"])


def test_without_setpriv_an_unprivileged_grader_is_refused() -> None:
    # unshare alone would leave the program every capability of its user namespace: it could
    # unmount the tmpfs over the homes. Without setpriv the run must not happen.
    driver = ("import json; from localroute.evaluation.sandbox.program import run_program; "
              "print(run_program('print(1)').model_dump_json())")
    with (
        scratch_in_view("home", owner=TEST_UID) as home,
        scratch_in_view("state", owner=TEST_UID) as state,
        scratch_in_view("bin") as bin_dir,  # a PATH with unshare and nothing else
    ):
        (bin_dir / "unshare").symlink_to(shutil.which("unshare") or "/usr/bin/unshare")
        env = {**env_for(home, state), "PATH": str(bin_dir)}
        done = subprocess.run([*python_for(TEST_UID), "-c", driver], env=env, cwd=home,
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "sandbox_error" and result["stdout"] == ""
    assert "unprivileged (util-linux setpriv not found" in result["reason"]
