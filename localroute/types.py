"""Shared value types and errors: the bottom layer, importing nothing of ours.

The role-based client returns these; backends build the raw parts and raise the errors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    """One tool call requested by a model, native or parsed from its text."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    source: Literal["native", "text"] = "native"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Timings(BaseModel):
    """Seconds spent waiting for the gate, until the first token, and in total."""

    queue_wait_s: float = 0.0
    ttft_s: float | None = None
    total_s: float = 0.0
    tokens_per_s: float | None = None


class Fallback(BaseModel):
    """A fallback that was taken: from which role to which, and why."""

    from_role: str
    to_role: str
    reason: str


class LLMResponse(BaseModel):
    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    role: str
    model: str
    backend: str
    attempts: int = 1
    fallbacks: list[Fallback] = Field(default_factory=list)
    parsed: Any = None
    notes: list[str] = Field(default_factory=list)  # what happened on the way (a cold load...)

    @property
    def truncated(self) -> bool:
        """True when the model stopped at its token limit: the answer is not complete."""
        return self.finish_reason == "length"


# Stream events: a small closed set, discriminated by `type`.


class ContentDelta(BaseModel):
    type: Literal["content"] = "content"
    text: str


class ReasoningDelta(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    text: str


class ToolCallEvent(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    call: ToolCall


class NoteEvent(BaseModel):
    """What happens on the way that is not the model's text (waiting for a model to load)."""

    type: Literal["note"] = "note"
    text: str


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    response: LLMResponse


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    error: str
    kind: str


StreamEvent = ContentDelta | ReasoningDelta | ToolCallEvent | NoteEvent | DoneEvent | ErrorEvent


class LLMError(Exception):
    """Base of every error the client raises; the message names role, model and URL."""

    #: whether trying the same call again may succeed (timeouts, dropped connections, 429, 5xx)
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        role: str | None = None,
        model: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.role = role
        self.model = model
        self.url = url
        self.fallbacks: list[Fallback] = []  # fallbacks taken before this error was final


class LLMTimeout(LLMError):
    retryable = True


class LLMConnectionError(LLMError):
    retryable = True


class LLMServerError(LLMError):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.retry_after = retry_after
        # 429, 5xx and HTTP 200 bodies carrying an error (status None) are worth a retry.
        self.retryable = status is None or status == 429 or status >= 500


class LLMInvalidResponse(LLMError):
    def __init__(self, message: str, *, raw: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.raw = raw


class LLMContextOverflow(LLMError):
    def __init__(self, message: str, *, prompt_tokens: int, context_length: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class LLMLoadError(LLMError):
    """The role's model could not be loaded (its server would not start, the load failed, or no
    memory could be freed for it in time). Not retried on the same role: its fallbacks answer."""


class LLMLoadTimeout(LLMLoadError):
    """A load, or the wait for one, passed its limit (`load_timeout`, `queue_timeout_s`)."""
