"""The outputs of routing stages 1 and 2: a routing decision and the work's complexity."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from localroute.routing.types import Route

# "deadline": stage 1 did not finish in time and the default route stood (routing/offload.py).
DecidedBy = Literal["channel", "rules", "classifier", "router_model", "cache", "deadline"]


class ToolInvocation(BaseModel):
    """The tool stage 1 chose, with arguments filled from the query."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class RoutingDecision(BaseModel):
    route: Route
    tool_call: ToolInvocation | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    decided_by: DecidedBy
    reason: str
    latency_ms: float = 0.0
    escalated: bool = False  # the router model was asked
    # Why the router model's answer was not used: it failed, was too slow, or (with escalated
    # False) was not asked because every router slot was busy.
    escalation_error: str | None = None
    reasoning_depth: int | None = None  # the router model's assessment, when it was asked


class Complexity(BaseModel):
    reasoning_depth: int = Field(ge=0, le=10)
    code_generation_required: bool
    estimated_context_tokens: int = Field(ge=0)
    code_context: bool = False  # the prompt carries code (so its size matters for coding roles)


class RoleSelection(BaseModel):
    role: str
    reason: str
    downgraded_from: str | None = None
    substituted_for: str | None = None  # the role that was not resident (a warm substitute)
