"""Small state files under the user's state dir: the manual mode override, and the snapshot a
running governor publishes for `localroute status` in another process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import platformdirs

from localroute.config.modes import Mode
from localroute.governance.homeostasis import Override

STATE_DIR_ENV = "LOCALROUTE_STATE_DIR"


def state_dir() -> Path:
    """$LOCALROUTE_STATE_DIR, else the platform's user state dir for localroute."""
    chosen = os.environ.get(STATE_DIR_ENV)
    return Path(chosen).expanduser() if chosen else Path(platformdirs.user_state_dir("localroute"))


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    # Readers in other processes must never see half a file: write aside, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


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
        """The snapshot if it is fresh and its process still runs, else None."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if time.time() - float(data.get("published_at", 0)) > max_age_s:
            return None
        return data
