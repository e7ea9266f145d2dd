"""Waiting on real processes: poll a check until it holds, and read stored telemetry events
the way a user would (`localroute telemetry query`, a separate process)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """The first truthy value of `check`, polled every `interval` s; fails after `timeout` s
    naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def stored_events(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    """The stored events named `name`, newest first, from `localroute telemetry query`."""
    out = subprocess.run([sys.executable, "-m", "localroute", "telemetry", "query", "--event",
                          name, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows
