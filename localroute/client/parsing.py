"""Parsing of model output: the one import point for reasoning, tool calls and JSON.

The reasoning split lives in `reasoning`, text tool calls and ids in `toolcalls`; this module
re-exports them and adds the two helpers that need both: `extract_json` and
`has_leaked_markup`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from localroute.client.reasoning import (
    Channel,
    Piece,
    ReasoningStreamSplitter,
    split_first_reasoning,
    split_reasoning,
)
from localroute.client.toolcalls import (
    is_mistral_safe_id,
    make_tool_call_id,
    mistral_safe_id,
    parse_text_tool_calls,
)

__all__ = [
    "Channel",
    "Piece",
    "ReasoningStreamSplitter",
    "extract_json",
    "has_leaked_markup",
    "is_mistral_safe_id",
    "make_tool_call_id",
    "mistral_safe_id",
    "parse_text_tool_calls",
    "split_first_reasoning",
    "split_reasoning",
]

# strict=False: literal newlines inside strings are the commonest slip of small models.
_DECODER = json.JSONDecoder(strict=False)
_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_JSON_FENCE_LABELS = {"", "json", "json5", "jsonc"}
_PREVIEW_CHARS = 80


def _decode_whole(text: str) -> tuple[bool, Any]:
    stripped = text.strip()
    try:
        value, end = _DECODER.raw_decode(stripped)
    except (ValueError, RecursionError):
        return False, None
    return end == len(stripped), value


def _first_container(text: str) -> tuple[bool, Any]:
    """The first ``{`` or ``[`` from which a whole JSON object or array decodes."""
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict | list):
            return True, value
    return False, None


def extract_json(text: str) -> Any:
    """Return the one JSON value a model meant, from text that may wrap it in prose.

    Order: the leading reasoning block is removed (only that one, so JSON strings that
    mention ``<think>`` survive); then each ```json (or unlabelled) fence is tried,
    then the answer without its code fences of other languages, then the whole answer; within
    each, a complete JSON value wins, else the first balanced
    object or array. Raises ValueError naming what was found when there is none.
    """
    reasoning, content = split_first_reasoning(text)
    content = content.strip()
    fences = [
        match.group(2)
        for match in _FENCE_RE.finditer(content)
        if match.group(1).lower() in _JSON_FENCE_LABELS
    ]
    # A dict literal in a ```python fence is code, not the answer; look outside it first.
    outside_code = _FENCE_RE.sub(
        lambda match: "" if match.group(1).lower() not in _JSON_FENCE_LABELS else match.group(0),
        content,
    )
    for candidate in [*fences, outside_code, content]:
        complete, value = _decode_whole(candidate)
        if complete:
            return value
        found, value = _first_container(candidate)
        if found:
            return value
    if not content and reasoning:
        raise ValueError(
            "no JSON in the model's answer: the answer is empty once its reasoning trace is "
            "removed (the model may have run out of tokens while thinking); raise max_tokens "
            "or ask a non-reasoning role for the JSON"
        )
    preview = content[:_PREVIEW_CHARS] + ("..." if len(content) > _PREVIEW_CHARS else "")
    raise ValueError(
        f"no JSON object or array found in the model's answer ({len(content)} chars: "
        f"{preview!r}); ask the model for JSON only, or use the role's structured output"
    )


_LEAK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("think", re.compile(r"</?think(?:ing)?>")),
    ("tool_call", re.compile(r"</?tool_call>")),
    ("tool_request", re.compile(r"\[(?:END_)?TOOL_REQUEST\]")),
    ("function", re.compile(r"<function=|</function>|<parameter=|</parameter>")),
    ("tool_calls", re.compile(r"\[TOOL_CALLS\]|\[ARGS\]|\[CALL_ID\]")),
    # Chat-template control tokens such as <|im_end|> or <|channel|> (MLX leaks, docs/backends.md).
    ("special_token", re.compile(r"<\|[A-Za-z0-9_.:-]{1,40}\|>")),
)


def has_leaked_markup(text: str) -> list[str]:
    """Names of the kinds of model markup left in `text`, in a fixed order; [] when clean.

    Kinds: think, tool_call, tool_request, function, tool_calls, special_token.
    """
    return [kind for kind, pattern in _LEAK_PATTERNS if pattern.search(text)]
