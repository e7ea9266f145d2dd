"""Typed values shared by the stage-1 routing modules (rules, classifier, training)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field, model_validator

Route = Literal["tool", "router", "reasoning", "coding", "summarization"]
ToolHint = Literal[
    "cpu",
    "memory",
    "disk",
    "battery",
    "uptime",
    "processes",
    "network",
    "list_directory",
    "read_file",
    "time",
    "models",
    "telemetry",
]

ROUTES: tuple[Route, ...] = get_args(Route)
TOOL_HINTS: tuple[ToolHint, ...] = get_args(ToolHint)


class RuleHit(BaseModel):
    """An unambiguous case decided by a rule, with the rule's name as the reason."""

    route: Route
    tool_hint: ToolHint | None = None
    reason: str


class RoutePrediction(BaseModel):
    """The classifier's verdict: the best route, its probability and all probabilities."""

    route: Route
    confidence: float = Field(ge=0.0, le=1.0)
    probabilities: dict[str, float]
    tool_hint: ToolHint | None = None


class RouteRow(BaseModel):
    """One labelled routing example (dev set or packaged handwritten data)."""

    query: str = Field(min_length=1)
    route: Route
    tool_hint: ToolHint | None = None
    source: str = "unknown"
    id: str | None = None

    @model_validator(mode="after")
    def _hint_matches_route(self) -> RouteRow:
        if self.route == "tool" and self.tool_hint is None:
            raise ValueError("a tool row needs a tool_hint (one of " + ", ".join(TOOL_HINTS) + ")")
        if self.route != "tool" and self.tool_hint is not None:
            raise ValueError(f"tool_hint is only allowed when route is tool, not {self.route}")
        return self
