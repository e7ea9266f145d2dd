"""What ``FaultProxy`` can inject: the ``Fault`` model and the error bodies it answers with.

Kept apart from the proxy so the vocabulary of faults (and its validation) reads on its own.
"""

from __future__ import annotations

import json
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

FaultKind = Literal[
    "delay", "drop", "truncate", "status", "error_200", "reset", "replace", "trickle", "inject"
]

LMSTUDIO_OVERFLOW_MESSAGE = (
    "Trying to keep the first 4096 tokens when context the overflows. However, the model is "
    "loaded with context length of only 2048 tokens, which is not enough. Try to load the model "
    "with a larger context length, or provide a shorter input"
)


class Fault(BaseModel):
    """One misbehaviour of the proxy; ``times`` limits it to the next N matching requests.

    ``seconds`` waits before acting for every kind (the whole point of ``delay``, a slow error for
    the others). ``truncate`` never completes the response, even when the body is shorter than
    ``after_bytes``: the connection is closed where the end of the message should be.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    seconds: float = Field(default=0.0, ge=0.0)
    after_bytes: int = Field(default=0, ge=0)
    status: int = Field(default=500, ge=400, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    message: str | None = None
    error_type: str | None = None
    times: int | None = Field(default=None, ge=1)
    path_contains: str | None = None
    body: str | None = None  # kind "replace": answer HTTP 200 with this JSON body instead
    # kinds "trickle" and "inject" (faultproxy_sse.py): the pause after each forwarded SSE event,
    # and the text put before the content of the first chunk after `after_events` content chunks.
    event_delay: float = Field(default=0.0, ge=0.0)
    inject: str | None = None
    after_events: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _delay_needs_seconds(self) -> Self:
        if self.kind == "delay" and self.seconds <= 0:
            raise ValueError(
                "Fault(kind='delay') needs seconds > 0, e.g. Fault(kind='delay', seconds=0.5)"
            )
        if self.kind == "inject" and not self.inject:
            raise ValueError(
                "Fault(kind='inject') needs the text to inject, e.g. inject='<|im_end|>'"
            )
        return self

    def error_body(self) -> bytes:
        """The JSON body of a ``status`` or ``error_200`` answer."""
        if self.kind == "replace":
            return (self.body or "{}").encode()
        if self.kind == "error_200":
            message = self.message or LMSTUDIO_OVERFLOW_MESSAGE
            default_type = "invalid_request_error"
        else:
            message = self.message or f"injected fault: HTTP {self.status}"
            default_type = {429: "rate_limit_error"}.get(
                self.status, "server_error" if self.status >= 500 else "invalid_request_error"
            )
        error: dict[str, str | None] = {"message": message, "type": self.error_type or default_type}
        if self.kind == "status":
            error |= {"param": None, "code": None}
        return json.dumps({"error": error}).encode()
