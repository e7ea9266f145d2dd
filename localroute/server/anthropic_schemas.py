"""The Anthropic Messages API's request body, and its mapping to the OpenAI request the server
already answers (`/v1/messages` runs the same `auto` and direct pipelines as
`/v1/chat/completions`).

Lenient like the OpenAI schema: fields the server has no use for (`metadata`, `top_k`,
`cache_control` on blocks, `thinking` settings...) are accepted and ignored; the ones it uses
are checked, so a wrong one is a 400 naming it. Content blocks other than text, tool use, tool
results and thinking (images, documents) are refused by the block union, naming the block.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from localroute.server.schemas import ChatCompletionRequest, LocalrouteOptions


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextBlock(_Lenient):
    type: Literal["text"]
    text: str


class ToolUseBlock(_Lenient):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(_Lenient):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[TextBlock] | None = None
    is_error: bool = False

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            text = "".join(b.text for b in self.content)
        else:
            text = self.content or ""
        # The model reads the result as text: a failed tool says so, or it looks like output.
        return f"error: {text}" if self.is_error else text


class ThinkingBlock(_Lenient):
    type: Literal["thinking"]
    thinking: str = ""


class RedactedThinkingBlock(_Lenient):
    type: Literal["redacted_thinking"]


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock
                  | RedactedThinkingBlock, Field(discriminator="type")]


_BLOCK_TYPES = ("text", "tool_use", "tool_result", "thinking", "redacted_thinking")


class Message(_Lenient):
    role: Literal["user", "assistant"]
    content: str | list[Block]

    @field_validator("content", mode="before")
    @classmethod
    def _known_blocks(cls, content: Any) -> Any:
        """A block of another type is named here; the union's own error would only say that
        the content is not a string."""
        for i, block in enumerate(content if isinstance(content, list) else []):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _BLOCK_TYPES:
                raise ValueError(f"block {i} has type '{kind}', which is not supported; send "
                                 "text, tool_use, tool_result or thinking blocks (images and "
                                 "documents are not)")
        return content


class Tool(_Lenient):
    """A client tool. Anthropic's server tools (web search, bash, text editor: a `type` such as
    `web_search_20250305`) run on Anthropic's side and have no local counterpart."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _client_tool(cls, tool: Any) -> Any:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in (None, "custom"):
            raise ValueError(f"type '{kind}' is one of Anthropic's server tools, which run on "
                             "Anthropic's side; offer client tools (name, description, "
                             "input_schema) instead")
        return tool


class ToolChoice(_Lenient):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None


class MessagesRequest(_Lenient):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)  # required, as in Anthropic's API
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    stop_sequences: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    localroute: LocalrouteOptions | None = None  # the validation policy of a stream

    @field_validator("tool_choice")
    @classmethod
    def _named_tool(cls, choice: ToolChoice | None) -> ToolChoice | None:
        if choice is not None and choice.type == "tool" and not choice.name:
            raise ValueError("type 'tool' needs the tool's name: {'type': 'tool', 'name': ...}")
        return choice

    def to_openai(self) -> ChatCompletionRequest:
        """The same request in the OpenAI shape (validated again there: one set of limits)."""
        body: dict[str, Any] = {
            "model": self.model, "messages": self._messages(), "max_tokens": self.max_tokens,
            "stream": self.stream, "temperature": self.temperature, "stop": self.stop_sequences,
        }
        if self.stream:  # the usage chunk feeds the final message_delta's usage
            body["stream_options"] = {"include_usage": True}
        if self.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description or "",
                "parameters": t.input_schema}} for t in self.tools]
        if self.tool_choice is not None:
            body["tool_choice"] = _tool_choice(self.tool_choice)
        if self.localroute is not None:
            body["localroute"] = self.localroute.model_dump(exclude_none=True)
        return ChatCompletionRequest.model_validate(body)

    def _messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        system = self.system
        if isinstance(system, list):
            system = "\n\n".join(b.text for b in system)
        if system:
            out.append({"role": "system", "content": system})
        for message in self.messages:
            if isinstance(message.content, str):
                out.append({"role": message.role, "content": message.content})
            elif message.role == "assistant":
                out.append(_assistant(message.content))
            else:
                out.extend(_user(message.content))
        return out


class CountTokensRequest(MessagesRequest):
    """`/v1/messages/count_tokens` takes a message request without `max_tokens`."""

    max_tokens: int = Field(default=1, ge=1)


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _assistant(blocks: list[Any]) -> dict[str, Any]:
    """Text and tool calls; thinking is not sent back (OpenAI-compatible servers take none)."""
    text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
    calls = [{"id": b.id, "type": "function",
              "function": {"name": b.name, "arguments": json.dumps(b.input)}}
             for b in blocks if isinstance(b, ToolUseBlock)]
    # Content "" rather than None: a null content is dropped on the way (flatten_messages), and
    # chat templates that read message.content fail on a message without it.
    out: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        out["tool_calls"] = calls
    return out


def _user(blocks: list[Any]) -> list[dict[str, Any]]:
    """Tool results first, as OpenAI `tool` messages (they must follow the assistant's calls),
    then the user's text."""
    out: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": b.tool_use_id, "content": b.text}
        for b in blocks if isinstance(b, ToolResultBlock)]
    text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
    if text or not out:
        out.append({"role": "user", "content": text})
    return out
