"""What every route shares: settings, the profile, the client and orchestrator, the governor,
counters, and the recent requests the governor publishes for `localroute status`."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from localroute.client.llm_client import LLMClient
from localroute.config.modes import Mode, ModePolicy, ModesConfig
from localroute.config.schema import ResolvedProfile, ResolvedRole
from localroute.governance.effectors import RequestRefused
from localroute.governance.governor import Governor
from localroute.governance.sensors import RequestWindow
from localroute.orchestrator.machine import Orchestrator
from localroute.server.errors import APIError
from localroute.server.feedback import FeedbackLog
from localroute.server.overload import Admission
from localroute.server.settings import ServerSettings
from localroute.telemetry.metrics import ServerMetrics

AUTO = "auto"
MODE_REFUSED = "mode_refused"
RECENT_REQUESTS = 20
MODEL_NAME_CHARS = 100  # the name is the client's; the snapshot file is rewritten every sample


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
    governor: Governor
    # Error rate and p95 latency of recent requests: a sensor of the governor.
    window: RequestWindow = field(default_factory=RequestWindow)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS))
    # Model names a request may use: role names first, then configured model ids.
    targets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.profile.roles:
            self.targets[name] = name
        for role in self.profile.roles.values():
            self.targets.setdefault(role.id, role.name)

    @property
    def mode(self) -> Mode:
        """The governor's mode now (sensors, or a manual override such as `serve --mode`)."""
        return self.governor.mode

    def policy(self, mode: Mode) -> ModePolicy:
        return self.modes.policy(mode)

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

    def allowed_role(self, name: str, mode: Mode) -> ResolvedRole:
        """The role, if `mode` lets it run inference; 503 with the reason if not."""
        policy = self.policy(mode)
        if not policy.allows_inference:
            raise APIError(503, f"the server is in {mode.value} mode, which refuses model "
                           "inference; only read-only tool questions are answered "
                           "(model 'auto', e.g. 'how much disk is free?')", code=MODE_REFUSED)
        if name not in policy.allowed_roles:
            raise APIError(503, f"role '{name}' is not allowed in {mode.value} mode "
                           f"(allowed: {', '.join(policy.allowed_roles)}); use one of them or "
                           "model 'auto'", code=MODE_REFUSED)
        return self.profile.role(name)

    def govern(self, *, prompt_tokens: int, role: str, trace_id: str) -> None:
        """The governor's admission: 503 naming the mode and why when it refuses."""
        try:
            self.governor.admit(prompt_tokens=prompt_tokens, role=role, trace_id=trace_id)
        except RequestRefused as exc:
            raise APIError(503, str(exc), code=MODE_REFUSED) from None

    def token_cap(self, role: str, wanted: int | None, mode: Mode) -> int | None:
        """The request's max_tokens, lowered to the mode's cap for the role."""
        cap = self.policy(mode).max_tokens.get(role)
        if cap is None:
            return wanted
        return cap if wanted is None else min(cap, wanted)

    def observe(self, *, model: str | None, route: str, role: str, status: int, seconds: float,
                code: str | None = None, trace_id: str | None = None) -> None:
        """One finished request: metrics, the governor's error-rate sensor, recent requests."""
        self.metrics.observe(route, role, status, seconds)
        # Only the stack's own failures count as errors: a refusal by the mode or a 429 is the
        # governor working, and counting it would hold the mode it caused.
        self.window.record(seconds, ok=status < 500 or code == MODE_REFUSED)
        self.recent.append({"ts": time.time(), "trace_id": trace_id,
                            "model": model[:MODEL_NAME_CHARS] if model else None,
                            "route": route, "role": role, "status": status, "ok": status < 400,
                            "code": code, "duration_ms": round(seconds * 1000, 1)})
