"""What every backend offers the client: one chat call, one stream, token counting, model lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from pydantic import BaseModel, Field

from localroute.backends.activity import Activity
from localroute.types import ToolCall, Usage


class ChatRequest(BaseModel):
    """One chat completion request, already in OpenAI shape, for one role's model."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    timeout: float = 60.0
    extra_body: dict[str, Any] = Field(default_factory=dict)


class RawCompletion(BaseModel):
    """A backend's answer before the client splits reasoning and parses text tool calls."""

    content: str = ""
    reasoning: str | None = None  # from a reasoning_content / reasoning field
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    notes: list[str] = Field(default_factory=list)  # what the backend did on the way (cold load)


class RawChunk(BaseModel):
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None


class ModelInfo(BaseModel):
    id: str
    loaded: bool | None = None  # None: the backend does not say
    context_length: int | None = None
    size_bytes: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Backend(Protocol):
    """A model server (or the in-process model) as the client sees it."""

    kind: str
    url: str
    activity: Activity  # its calls in flight and the last one's outcome, for health probes

    async def chat(self, request: ChatRequest, role: str = "") -> RawCompletion: ...

    def stream(self, request: ChatRequest, role: str = "") -> AsyncIterator[RawChunk]: ...

    async def count_tokens(self, model: str, messages: list[dict[str, Any]]) -> int | None:
        """Exact prompt tokens from the server's tokenizer, or None where it offers none."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def liveness(self, timeout: float) -> str | None:
        """None when the backend answers its cheapest liveness check, else why not."""
        ...

    async def aclose(self) -> None: ...
