"""Shaping a conversation for one role's model, and counting its tokens before sending it."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from localroute.client.parsing import mistral_safe_id, split_reasoning
from localroute.config.schema import ResolvedRole, SystemPromptPolicy

_MISTRAL = re.compile(r"mistral|devstral|magistral|codestral|ministral", re.IGNORECASE)

# A documented estimate for servers without a tokenizer endpoint: BPE tokenizers of the models we
# serve average 3.5-4.5 characters per token on English and code; 3 errs on the side of
# "does not fit" so a prompt near the limit is counted exactly or sent to a larger context.
CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 4  # role markers of a chat template


def estimate_tokens(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    chars += sum(len(json.dumps(m["tool_calls"])) for m in messages if m.get("tool_calls"))
    if tools:
        chars += len(json.dumps(tools))
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def prepare_messages(role: ResolvedRole, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Apply the role's system-prompt policy, drop reasoning from history, fix tool-call ids."""
    out: list[dict[str, Any]] = []
    for message in messages:
        m = dict(message)
        if m.get("role") == "assistant":
            # Chat templates drop prior-turn reasoning; sending it back wastes context and can
            # confuse the model (DeepSeek-R1 usage notes).
            m.pop("reasoning_content", None)
            m.pop("reasoning", None)
            if isinstance(m.get("content"), str):
                m["content"] = split_reasoning(m["content"])[1]
        out.append(m)
    if role.system_prompt == SystemPromptPolicy.merge_into_user:
        out = _merge_system(out)
    if _MISTRAL.search(role.id):
        out = _mistral_ids(out)
    return out


def _merge_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    rest = [m for m in messages if m.get("role") != "system"]
    if not system:
        return rest
    for i, m in enumerate(rest):
        if m.get("role") == "user":
            rest[i] = {**m, "content": f"{system}\n\n{m.get('content') or ''}"}
            return rest
    return [{"role": "user", "content": system}, *rest]


def _mistral_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Mistral templates reject tool-call ids that are not 9 alphanumerics; the mapping is
    # deterministic so a call and its result keep matching ids.
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [
                {**c, "id": mistral_safe_id(str(c.get("id", "")))} for c in m["tool_calls"]
            ]
        if m.get("role") == "tool" and "tool_call_id" in m:
            m["tool_call_id"] = mistral_safe_id(str(m["tool_call_id"]))
        out.append(m)
    return out
