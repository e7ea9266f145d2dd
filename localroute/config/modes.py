"""The schema and loading of `modes.yaml`: governance modes and orchestrator settings."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from localroute.config.loader import ConfigError, format_validation_error

PACKAGED_MODES = Path(__file__).with_name("modes.yaml")


class Mode(StrEnum):
    NORMAL = "NORMAL"
    ALERT = "ALERT"
    DEGRADED = "DEGRADED"
    LOCKDOWN = "LOCKDOWN"
    RECOVERY = "RECOVERY"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModePolicy(_Strict):
    allowed_roles: tuple[str, ...]
    side_effects: tuple[str, ...] = ("read_only",)
    max_concurrent_tasks: PositiveInt = 4
    max_tokens: dict[str, PositiveInt] = Field(default_factory=dict)

    @property
    def allows_inference(self) -> bool:
        return bool(self.allowed_roles)


class RoutingSettings(_Strict):
    escalation_threshold: float = Field(default=0.55, ge=0.0, le=1.0)
    router_model_timeout: PositiveFloat = 8.0
    router_model_max_tokens: PositiveInt = 64
    # Seconds stage 1's CPU work (rules, classifier, argument filler) may take, off the event
    # loop; past it the default route stands (docs/security.md, "Routing on hostile input").
    stage1_timeout: PositiveFloat = 2.0
    large_context_tokens: PositiveInt = 20_000
    reasoning_depth_threshold: int = Field(default=7, ge=0, le=10)


StreamPolicy = Literal["after", "window", "buffer"]
# routing/types.py's routes, spelled out: config sits below routing and imports nothing of it.
StreamRoute = Literal["tool", "router", "reasoning", "coding", "summarization"]
STREAM_POLICIES: tuple[str, ...] = get_args(StreamPolicy)


class StreamValidationSettings(_Strict):
    """How a streamed `auto` answer is validated (docs/server.md, "Streaming and validation")."""

    default: StreamPolicy = "after"
    routes: dict[StreamRoute, StreamPolicy] = Field(default_factory=dict)  # over `default`
    window_chars: PositiveInt = 200
    # Held back from each window and checked again with the next one, so markup cut by a window
    # boundary is still seen whole; at least as long as the longest markup checked for.
    window_overlap_chars: int = Field(default=40, ge=16)

    @model_validator(mode="after")
    def _overlap_inside_window(self) -> Self:
        if self.window_overlap_chars >= self.window_chars:
            raise ValueError(f"window_overlap_chars ({self.window_overlap_chars}) must be smaller "
                             f"than window_chars ({self.window_chars})")
        return self

    def policy(self, route: str | None) -> StreamPolicy:
        """The policy of `route`'s streams: its own entry, else the default."""
        return next((p for name, p in self.routes.items() if name == route), self.default)


class ValidationSettings(_Strict):
    skip_routes: tuple[str, ...] = ("tool", "router")
    use_model: bool = True
    streaming: StreamValidationSettings = StreamValidationSettings()


class ToolLoopSettings(_Strict):
    max_iterations: PositiveInt = 3
    condense_above_chars: PositiveInt = 6000
    condense_max_tokens: PositiveInt = 500


class ToolSettings(_Strict):
    """Where the file tools may read (docs/security.md, "File tools")."""

    # Directories the file tools read under (`~` allowed); --root and LOCALROUTE_TOOL_ROOTS
    # replace them. Empty: `ask` uses the working directory, `serve` offers no file tools.
    roots: tuple[str, ...] = ()
    # Extra refused locations on top of the built-in secret list: absolute paths or globs
    # ('~/work/private', '/srv/*/secrets'), or bare name globs matched anywhere ('*.sqlite').
    deny: tuple[str, ...] = ()

    @field_validator("roots", "deny")
    @classmethod
    def _no_blank(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not value.strip():
                raise ValueError("an empty entry; remove it or give a directory or glob")
        return values

    @field_validator("deny")
    @classmethod
    def _anchored(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if "/" in value and not os.path.isabs(os.path.expanduser(value.strip())):
                raise ValueError(f"'{value}' has a '/' but is not absolute; write '~/dir', "
                                 "'/abs/dir' or a bare name glob such as '*.sqlite'")
        return values


SENSOR_NAMES = (
    "cpu_percent", "memory_percent", "swap_percent", "swap_growth_mb_s", "disk_percent",
    "memory_pressure", "memory_psi_avg10", "backends_down", "error_rate", "latency_p95_s",
    "queue_depth", "in_flight",
)
SEVERITY = {Mode.NORMAL: 0, Mode.RECOVERY: 1, Mode.ALERT: 2, Mode.DEGRADED: 3, Mode.LOCKDOWN: 4}
DEFAULT_EDGES: dict[Mode, tuple[Mode, ...]] = {
    Mode.NORMAL: (Mode.ALERT, Mode.DEGRADED, Mode.LOCKDOWN),
    Mode.ALERT: (Mode.NORMAL, Mode.DEGRADED, Mode.LOCKDOWN),
    Mode.DEGRADED: (Mode.RECOVERY, Mode.LOCKDOWN),
    Mode.RECOVERY: (Mode.NORMAL, Mode.ALERT, Mode.DEGRADED, Mode.LOCKDOWN),
    Mode.LOCKDOWN: (Mode.RECOVERY,),
}


class ThresholdRule(_Strict):
    """`sensor` above (or below) a threshold for `for_s` seconds puts the stack in `mode`; it
    clears once the reading is at or past `clear_below`/`clear_above` (default: the trigger
    threshold, i.e. no hysteresis) for `clear_for_s`."""

    name: str
    sensor: str
    mode: Mode
    above: float | None = None
    below: float | None = None
    for_s: float = Field(default=0.0, ge=0.0)
    clear_below: float | None = None
    clear_above: float | None = None
    clear_for_s: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _check(self) -> ThresholdRule:
        if self.sensor not in SENSOR_NAMES:
            raise ValueError(f"unknown sensor '{self.sensor}'; sensors: {', '.join(SENSOR_NAMES)}")
        if (self.above is None) == (self.below is None):
            raise ValueError(f"rule '{self.name}' needs exactly one of 'above' or 'below'")
        if self.above is not None and (self.clear_above is not None or
                                       (self.clear_below is not None and
                                        self.clear_below > self.above)):
            raise ValueError(f"rule '{self.name}': with 'above', 'clear_below' must be <= above")
        if self.below is not None and (self.clear_below is not None or
                                       (self.clear_above is not None and
                                        self.clear_above < self.below)):
            raise ValueError(f"rule '{self.name}': with 'below', 'clear_above' must be >= below")
        return self


class HomeostasisSettings(_Strict):
    enabled: bool = True
    interval_s: PositiveFloat = 2.0
    health_interval_s: PositiveFloat = 15.0
    rules: tuple[ThresholdRule, ...] = ()
    edges: dict[Mode, tuple[Mode, ...]] = Field(default_factory=lambda: dict(DEFAULT_EDGES))
    min_dwell_s: dict[Mode, float] = Field(default_factory=dict)
    gate_scale: dict[Mode, float] = Field(default_factory=dict)
    refuse_prompt_tokens_above: dict[Mode, PositiveInt] = Field(default_factory=dict)
    heavy_roles: tuple[str, ...] = ("reasoning_heavy", "coding_large_context")
    cold_load_extra_s: float = Field(default=120.0, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        # The memory budget has one home now, next to the roles it must hold (models.yaml).
        moved = {"memory_budget_gb": "profiles.<name>.memory_budget_gb",
                 "os_reserve_gb": "profiles.<name>.residency.os_reserve_gb"}
        for key, where in moved.items():
            if isinstance(data, dict) and key in data:
                raise ValueError(f"'{key}' moved to models.yaml ({where}); remove it here")
        return data


class ModesConfig(_Strict):
    version: int = 1
    default_mode: Mode = Mode.NORMAL
    routing: RoutingSettings = RoutingSettings()
    validation: ValidationSettings = ValidationSettings()
    tool_loop: ToolLoopSettings = ToolLoopSettings()
    tools: ToolSettings = ToolSettings()
    modes: dict[Mode, ModePolicy]
    homeostasis: HomeostasisSettings = HomeostasisSettings()

    def policy(self, mode: Mode) -> ModePolicy:
        return self.modes[mode]


def load_modes(path: str | Path | None = None) -> ModesConfig:
    file = Path(path).expanduser() if path else PACKAGED_MODES
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(file), "", "file not found; pass a modes.yaml path") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(file), "", f"invalid YAML: {exc}") from None
    try:
        config = ModesConfig.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(str(file), exc, ModesConfig) from None
    missing = [m.value for m in Mode if m not in config.modes]
    if missing:
        raise ConfigError(str(file), "modes", f"missing modes: {', '.join(missing)}; every mode "
                          "of NORMAL, ALERT, DEGRADED, LOCKDOWN, RECOVERY needs a policy")
    return config
