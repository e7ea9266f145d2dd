"""Small state files under the user's state dir: the manual mode override, and the snapshot a
running governor publishes for `localroute status` in another process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from localroute.config.modes import Mode, ModesConfig
from localroute.config.telemetry import state_dir  # one state dir for telemetry and governance
from localroute.governance.homeostasis import Override
from localroute.private_files import private_dir, write_private_atomic


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    # Readers in other processes must never see half a file: write aside, then rename. The
    # state dir is 0700 and the file 0600 (the snapshot names recent requests and models).
    private_dir(path.parent, warn_if_open=True)
    write_private_atomic(path, json.dumps(data, indent=2, default=str))


class OverrideStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "mode_override.json"

    def load(self) -> Override | None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return Override(mode=Mode(raw["mode"]), reason=str(raw["reason"]),
                            set_at=float(raw["set_at"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{self.path}: unreadable mode override ({exc}); fix or delete the file, or run "
                "`localroute mode set auto`"
            ) from None

    def mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def save(self, override: Override) -> None:
        _write_atomic(self.path, {"mode": override.mode.value, "reason": override.reason,
                                  "set_at": override.set_at})

    def clear(self) -> bool:
        try:
            self.path.unlink()
            return True
        except FileNotFoundError:
            return False


class RuntimeStore:
    """The latest snapshot of a running governor (mode, readings, gates, recent events)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "runtime.json"

    def publish(self, snapshot: dict[str, Any]) -> None:
        _write_atomic(self.path, {**snapshot, "published_at": time.time(), "pid": os.getpid()})

    def load(self, max_age_s: float) -> dict[str, Any] | None:
        """The snapshot if it is fresh (a governor that stopped cleanly removed it), else None."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if time.time() - float(data.get("published_at", 0)) > max_age_s:
            return None
        return data

    def clear(self) -> None:
        """Remove the snapshot if this process published it (another governor may own it)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return
        if data.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)


def manual_mode(modes: ModesConfig, store: OverrideStore | None = None) -> tuple[Mode, str]:
    """The mode a process without a governor runs in, and why: the persisted manual override
    (`localroute mode set`) when there is one, else modes.yaml's default_mode."""
    override = (store or OverrideStore()).load()
    if override is not None:
        return override.mode, f"manual override: {override.reason}"
    return modes.default_mode, "default_mode of modes.yaml"
