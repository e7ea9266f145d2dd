"""The house rules that tools can check: ruff and mypy (strict) are clean on the whole tree.

Run as tests so that CI (which runs the test suite) enforces them on every change.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO


def test_ruff_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "localroute", "tests",
                           "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "localroute"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
