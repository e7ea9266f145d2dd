"""The server's own settings: where it listens, who may call it, and how much it accepts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from localroute.config.modes import Mode

API_KEY_ENV = "LOCALROUTE_API_KEY"


class ServerSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8808, ge=0, le=65535)
    api_key: str | None = None
    # A manual override of the governor's mode for this process (`serve --mode`); None: the
    # sensors decide, or the persisted `localroute mode set` override.
    mode: Mode | None = None
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    max_messages: PositiveInt = 256
    # Calls allowed to wait per gate beyond its slots; one more is answered 429.
    max_queue: int = Field(default=8, ge=0)
    # Feedback is appended here (JSONL) until the telemetry store takes it over; None: memory only.
    feedback_path: Path | None = None
    # Checked file roots (tools/roots.py: `choose_roots`); empty: no file tools are offered.
    roots: tuple[Path, ...] = ()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach; unknown host names count as public."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServerSettings) -> None:
    """Refuse a non-loopback bind without an API key: anyone on the network could use the
    models."""
    if not is_loopback(settings.host) and not settings.api_key:
        raise ValueError(
            f"--host {settings.host}: binding to a non-loopback address needs an API key; pass "
            f"--api-key KEY or set {API_KEY_ENV}, or bind to 127.0.0.1"
        )
