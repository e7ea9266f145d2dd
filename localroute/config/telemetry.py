"""The schema and loading of `telemetry.yaml`: the event store, OpenTelemetry export, the routing
cache and the learned routing policy."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from localroute.config.loader import ConfigError, format_validation_error

PACKAGED_TELEMETRY = Path(__file__).with_name("telemetry.yaml")
TELEMETRY_CONFIG_ENV = "LOCALROUTE_TELEMETRY_CONFIG"
TELEMETRY_URL_ENV = "LOCALROUTE_TELEMETRY_URL"
TELEMETRY_SWITCH_ENV = "LOCALROUTE_TELEMETRY"
STATE_DIR_ENV = "LOCALROUTE_STATE_DIR"
_OFF = {"0", "false", "off", "no"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OtelSettings(_Strict):
    """OpenTelemetry export (telemetry/otel.py): each request one trace, sent over OTLP/HTTP."""

    # The OTLP/HTTP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: spans go to <endpoint>/v1/traces.
    # The standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables win over it.
    endpoint: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(value.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"'{value}' is not an http(s) URL; give the OTLP/HTTP receiver's "
                             "base URL, e.g. http://localhost:4318")
        return value.strip().rstrip("/")


class StoreSettings(_Strict):
    enabled: bool = True
    url: str | None = None  # None: the SQLite file under the user's state directory
    batch_window_ms: PositiveInt = 200
    batch_size: PositiveInt = 500
    max_age_days: PositiveFloat = 30.0
    max_rows: PositiveInt = 2_000_000
    prune_interval_s: PositiveFloat = 600.0
    record_queries: bool = True
    json_log: str | None = None
    otel: OtelSettings = OtelSettings()

    def resolved_url(self) -> str:
        return self.url or f"sqlite:///{state_dir() / 'telemetry.db'}"


class CacheSettings(_Strict):
    enabled: bool = True
    ttl_s: PositiveFloat = 3600.0
    max_entries: PositiveInt = 4096


class PolicySettings(_Strict):
    enabled: bool = False
    min_observations: PositiveInt = 20
    window: PositiveInt = 50
    latency_penalty_per_s: float = Field(default=0.01, ge=0.0)
    history_days: PositiveFloat = 30.0
    candidates: dict[str, tuple[str, ...]] = Field(default_factory=lambda: {
        "router": ("router", "reasoning"),
        "reasoning": ("reasoning", "reasoning_heavy", "router"),
        "coding": ("coding", "coding_large_context", "reasoning"),
        "summarization": ("summarization", "router"),
    })


class TelemetryConfig(_Strict):
    version: int = 1
    telemetry: StoreSettings = StoreSettings()
    routing_cache: CacheSettings = CacheSettings()
    routing_policy: PolicySettings = PolicySettings()


def state_dir() -> Path:
    """Where localroute keeps its state: $LOCALROUTE_STATE_DIR, else the platform's user state
    directory (platformdirs when installed), else ~/.local/state/localroute."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    try:
        import platformdirs
    except ImportError:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "localroute"
    return Path(platformdirs.user_state_dir("localroute"))


def load_telemetry_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> TelemetryConfig:
    """The packaged telemetry.yaml, or `path`, or $LOCALROUTE_TELEMETRY_CONFIG; then
    $LOCALROUTE_TELEMETRY_URL and $LOCALROUTE_TELEMETRY (0/off) applied on top."""
    env = os.environ if env is None else env
    file = Path(path or env.get(TELEMETRY_CONFIG_ENV) or PACKAGED_TELEMETRY).expanduser()
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(str(file), "", f"file not found; fix ${TELEMETRY_CONFIG_ENV} or pass "
                          "an existing telemetry.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), "", f"invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(file), "", "the top level must be a mapping with a 'telemetry' key")
    try:
        config = TelemetryConfig.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(str(file), exc, TelemetryConfig) from None
    store = config.telemetry
    if env.get(TELEMETRY_URL_ENV):
        store = store.model_copy(update={"url": env[TELEMETRY_URL_ENV]})
    if env.get(TELEMETRY_SWITCH_ENV, "").strip().lower() in _OFF:
        store = store.model_copy(update={"enabled": False})
    return config.model_copy(update={"telemetry": store})
