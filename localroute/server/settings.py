"""The server's own settings: where it listens, who may call it, and how much it accepts."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from localroute.config.modes import Mode

API_KEY_ENV = "LOCALROUTE_API_KEY"
ALLOW_HOSTS_ENV = "LOCALROUTE_ALLOW_HOSTS"
ALLOW_ORIGINS_ENV = "LOCALROUTE_ALLOW_ORIGINS"


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
    # Tool-only answers (no model) running at once; one more is answered 429.
    max_tool_requests: PositiveInt = 16
    # Feedback is appended here (JSONL) until the telemetry store takes it over; None: memory only.
    feedback_path: Path | None = None
    # The runs directory the dashboard lists (benchmark runs and A/B tests, `bench --runs`).
    runs_dir: Path = Path("runs")
    # Checked file roots (tools/roots.py: `choose_roots`); empty: no file tools are offered.
    roots: tuple[Path, ...] = ()
    # Past this size the feedback file is rotated to `<name>.1` (one old file kept).
    feedback_max_bytes: PositiveInt = 10 * 1024 * 1024
    # Host names (with or without a port) the server answers to besides its bound address:
    # anything else gets 421, which defeats DNS rebinding.
    allow_hosts: tuple[str, ...] = ()
    # Web origins (scheme://host[:port]) whose pages may call the server (CORS); any other
    # cross-origin request gets 403.
    allow_origins: tuple[str, ...] = ()
    # HTTP limits: request head size (431 above), seconds to send the request head and the
    # body (408 after), open connections overall and per client address (503 past them).
    max_header_bytes: PositiveInt = 64 * 1024
    header_timeout_s: PositiveFloat = 10.0
    body_timeout_s: PositiveFloat = 30.0
    max_connections: PositiveInt = 256
    max_connections_per_client: PositiveInt = 64


def split_host(value: str) -> tuple[str, int | None] | None:
    """`name` and `port` of a Host header value (`[::1]:8808`, `localhost`), None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[:end + 1], value[end + 1:]
    else:
        name, sep, port = value.partition(":")
        rest = sep + port
    if not name:
        return None
    if not rest:
        return name, None
    if rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6:
        return name, int(rest[1:])
    return None


def check_names(settings: ServerSettings) -> None:
    """Refuse --allow-host and --allow-origin values that could never match a request."""
    for name in settings.allow_hosts:
        if split_host(name) is None:
            raise ValueError(f"--allow-host '{name}' is not a host name; give NAME or NAME:PORT "
                             "as clients write it in the Host header (e.g. proxy.example)")
    for origin in settings.allow_origins:
        scheme, sep, rest = origin.lower().partition("://")
        if scheme not in ("http", "https") or not sep or "/" in rest.rstrip("/") or \
                split_host(rest.rstrip("/")) is None:
            raise ValueError(f"--allow-origin '{origin}' is not a web origin; give "
                             "SCHEME://HOST[:PORT] as the browser shows it, e.g. "
                             "http://localhost:3000")


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
