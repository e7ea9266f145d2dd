"""What every route shares: settings, the profile, the client and orchestrator, and counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from localroute.client.llm_client import LLMClient
from localroute.config.modes import Mode, ModePolicy, ModesConfig
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.orchestrator.machine import Orchestrator
from localroute.server.errors import APIError
from localroute.server.feedback import FeedbackLog
from localroute.server.overload import Admission
from localroute.server.settings import ServerSettings
from localroute.telemetry.metrics import ServerMetrics

AUTO = "auto"


@dataclass
class ServerState:
    settings: ServerSettings
    profile: ResolvedProfile
    modes: ModesConfig
    client: LLMClient
    orchestrator: Orchestrator
    admission: Admission
    metrics: ServerMetrics
    feedback: FeedbackLog
    # Model names a request may use: role names first, then configured model ids.
    targets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.profile.roles:
            self.targets[name] = name
        for role in self.profile.roles.values():
            self.targets.setdefault(role.id, role.name)

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    @property
    def policy(self) -> ModePolicy:
        return self.modes.policy(self.settings.mode)

    def resolve(self, model: str) -> str:
        """'auto' or the role a model name selects; 404 naming what exists otherwise."""
        if model == AUTO:
            return AUTO
        role = self.targets.get(model)
        if role is None:
            known = ", ".join([AUTO, *self.profile.roles])
            raise APIError(404, f"model '{model}' does not exist in profile "
                           f"'{self.profile.name}'; use one of: {known} (or a configured model "
                           "id, see GET /v1/models)", code="model_not_found", param="model")
        return role

    def allowed_role(self, name: str) -> ResolvedRole:
        """The role, if the server's mode lets it run inference; 503 with the reason if not."""
        policy = self.policy
        if not policy.allows_inference:
            raise APIError(503, f"the server is in {self.mode.value} mode, which refuses model "
                           "inference; only read-only tool questions are answered "
                           "(model 'auto', e.g. 'how much disk is free?')", code="mode_refused")
        if name not in policy.allowed_roles:
            raise APIError(503, f"role '{name}' is not allowed in {self.mode.value} mode "
                           f"(allowed: {', '.join(policy.allowed_roles)}); use one of them or "
                           "model 'auto'", code="mode_refused")
        return self.profile.role(name)

    def token_cap(self, role: str, wanted: int | None) -> int | None:
        """The request's max_tokens, lowered to the mode's cap for the role."""
        cap = self.policy.max_tokens.get(role)
        if cap is None:
            return wanted
        return cap if wanted is None else min(cap, wanted)
