"""The request bodies the server accepts, in the OpenAI shape.

Unknown fields are ignored (clients send `logprobs`, `user`, `parallel_tool_calls`...); known
fields are checked, so a wrong type is a 422 naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import from_json

from localroute.config.modes import StreamPolicy
from localroute.server.errors import APIError


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored


class ChatMessage(_Lenient):
    model_config = ConfigDict(extra="allow")  # keep name, tool_call_id, tool_calls... as sent

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class LocalrouteOptions(_Strict):
    """The request's own `localroute` field (`extra_body` in the openai SDK)."""

    validation: StreamPolicy | None = None  # a stream's validation policy, over modes.yaml


class ChatCompletionRequest(_Lenient):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    localroute: LocalrouteOptions | None = None

    @field_validator("tools")
    @classmethod
    def _tools_are_functions(
        cls, tools: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]] | None:
        for i, tool in enumerate(tools or []):
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name"):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': "
                                 "{'name': ..., 'parameters': {...}}}")
        return tools

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, fmt: dict[str, Any] | None) -> dict[str, Any] | None:
        if fmt is None:
            return None
        kind = fmt.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError(f"type '{kind}' is not supported; use text, json_object or "
                             "json_schema")
        if kind == "json_schema" and not isinstance(
                (fmt.get("json_schema") or {}).get("schema"), dict):
            raise ValueError("json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}")
        return None if kind == "text" else fmt

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def passthrough(self) -> dict[str, Any]:
        """Request fields sent to the model server as they are (tool_choice, stop, seed...)."""
        out: dict[str, Any] = {}
        for key in ("tool_choice", "stop", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


FEEDBACK_NOTE_CHARS = 2000


class FeedbackRequest(_Lenient):
    trace_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    # -1 thumbs down, 0 neutral, 1 thumbs up (what chat front ends offer).
    rating: int = Field(ge=-1, le=1)
    note: str = Field(default="", max_length=FEEDBACK_NOTE_CHARS)


def parse_body(body: bytes, model: type[BaseModel]) -> Any:
    """Decode and validate a JSON body: 400 when it is not JSON, 422 when a field is wrong.

    pydantic's own JSON parser (jiter, linear time) rather than `json.loads`, because it
    refuses in one ValueError what json.loads lets through to a 500 or beyond: invalid UTF-8
    and lone surrogates (which later fail to encode), integers too long for Python's
    4300-digit limit, NaN and Infinity (not JSON; a model server would choke on them), and
    nesting deeper than its recursion limit of 200 (json.loads recurses to RecursionError).
    """
    try:
        data = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        why = " (arrays and objects nested too deeply)" if "recursion" in str(exc) else ""
        raise APIError(400, f"the request body is not valid JSON: {exc}{why}",
                       code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise APIError(422, f"{where}: {first['msg']}{more}", code="invalid_value",
                       param=where or None) from None


def flatten_messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    """Messages as plain dicts with text content; content parts other than text are refused."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        m = message.model_dump(exclude_none=True)
        if m["role"] == "developer":  # the newer OpenAI name for a system message
            m["role"] = "system"
        content = message.content
        if isinstance(content, list):
            texts = []
            for part in content:
                if part.get("type") != "text":
                    raise APIError(400, f"messages[{i}].content: part type "
                                   f"'{part.get('type')}' is not supported; only text parts are",
                                   code="unsupported_content", param=f"messages.{i}.content")
                texts.append(str(part.get("text", "")))
            m["content"] = "".join(texts)
        out.append(m)
    return out
