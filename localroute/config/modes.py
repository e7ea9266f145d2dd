"""The schema and loading of `modes.yaml`: governance modes and orchestrator settings."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

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
    large_context_tokens: PositiveInt = 20_000
    reasoning_depth_threshold: int = Field(default=7, ge=0, le=10)


class ValidationSettings(_Strict):
    skip_routes: tuple[str, ...] = ("tool", "router")
    use_model: bool = True


class ToolLoopSettings(_Strict):
    max_iterations: PositiveInt = 3
    condense_above_chars: PositiveInt = 6000
    condense_max_tokens: PositiveInt = 500


class ModesConfig(_Strict):
    version: int = 1
    default_mode: Mode = Mode.NORMAL
    routing: RoutingSettings = RoutingSettings()
    validation: ValidationSettings = ValidationSettings()
    tool_loop: ToolLoopSettings = ToolLoopSettings()
    modes: dict[Mode, ModePolicy]

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
