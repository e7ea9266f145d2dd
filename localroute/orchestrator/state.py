"""The states of a request and everything the machine knows about it while it runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from localroute.config.modes import Mode
from localroute.routing.decision import Complexity, RoleSelection, RoutingDecision
from localroute.tools.base import ToolResult
from localroute.types import Fallback, LLMResponse, ToolCall


class TaskState(StrEnum):
    INIT = "INIT"
    ROUTING_DECISION = "ROUTING_DECISION"
    TOOL_ONLY_EXECUTION = "TOOL_ONLY_EXECUTION"
    MODEL_SELECTION = "MODEL_SELECTION"
    LLM_CALL = "LLM_CALL"
    TOOL_EXECUTION = "TOOL_EXECUTION"
    VALIDATION = "VALIDATION"
    SYNTHESIS = "SYNTHESIS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED})


@dataclass
class StepRecord:
    state: TaskState
    next_state: TaskState
    started_ms: float  # since the request started
    elapsed_ms: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecutionContext:
    """One request's journey. Steps read and write it; the loop records each transition."""

    messages: list[dict[str, Any]]
    mode: Mode = Mode.NORMAL
    channel: str | None = None
    allow_router_model: bool = True
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: TaskState = TaskState.INIT
    routing: RoutingDecision | None = None
    complexity: Complexity | None = None
    selection: RoleSelection | None = None
    role: str | None = None
    task_type: str | None = None  # route/complexity band, what the routing policy learns on
    static_role: str | None = None  # the rules' choice (after the mode), before any policy
    role_decided_by: str = "rules"  # "policy" when the learned policy made the choice
    tool_results: list[ToolResult] = field(default_factory=list)
    tool_calls_seen: list[tuple[str, str]] = field(default_factory=list)
    pending_tool_calls: list[ToolCall] = field(default_factory=list)
    conversation: list[dict[str, Any]] = field(default_factory=list)
    tool_iterations: int = 0
    llm_calls: int = 0
    response: LLMResponse | None = None
    validation_failures: list[str] = field(default_factory=list)
    validation_attempts: int = 0
    validation: str = "pending"  # skipped | passed | passed_after_retry | unvalidated | pending
    fallbacks: list[Fallback] = field(default_factory=list)
    reply: str | None = None
    error: str | None = None
    # The exception that failed the run, when one did: callers map it to a status by its type,
    # never by parsing `error`'s text.
    failure: Exception | None = None
    steps: list[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def query(self) -> str:
        """The latest user message: what routing decides on."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else str(content or "")
        return ""

    def timings_ms(self) -> dict[str, float]:
        """Milliseconds spent per state (a state visited twice, like LLM_CALL, is summed)."""
        out: dict[str, float] = {}
        for step in self.steps:
            out[step.state.value] = round(out.get(step.state.value, 0.0) + step.elapsed_ms, 3)
        return out

    def summary(self) -> dict[str, Any]:
        """The reply's metadata, for --json, the server and telemetry."""
        response = self.response
        return {
            "trace_id": self.trace_id,
            "state": self.state.value,
            "mode": self.mode.value,
            "route": self.routing.route if self.routing else None,
            "decided_by": self.routing.decided_by if self.routing else None,
            "confidence": self.routing.confidence if self.routing else None,
            "tool": self.routing.tool_call.name if self.routing and self.routing.tool_call
            else None,
            "role": self.role,
            "model": response.model if response else None,
            "downgraded_from": self.selection.downgraded_from if self.selection else None,
            "substituted_for": self.selection.substituted_for if self.selection else None,
            "validation": self.validation,
            "validation_failures": self.validation_failures,
            "fallbacks": [f.model_dump() for f in self.fallbacks],
            "tools_used": [r.tool for r in self.tool_results],
            "llm_calls": self.llm_calls,
            "finish_reason": response.finish_reason if response else None,
            "error": self.error,
            "timings_ms": self.timings_ms(),
            "total_ms": round(sum(s.elapsed_ms for s in self.steps), 3),
        }
