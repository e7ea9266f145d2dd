"""Tool calls written into a model's text, and tool-call ids every template accepts.

Servers leave a call in ``message.content`` when their parser does not know the model's
format (LM Studio's default scheme, Mistral on some servers, MLX marker leaks; docs/backends.md),
so the client parses these formats itself:

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
- LM Studio default: ``[TOOL_REQUEST]{"name": ..., "arguments": {...}}[END_TOOL_REQUEST]``;
- Qwen3-Coder XML: ``<function=NAME><parameter=KEY>VALUE</parameter></function>``,
  optionally inside ``<tool_call>...</tool_call>``;
- Mistral / Devstral: ``[TOOL_CALLS]NAME[ARGS]{json}`` (v11+, ``[ARGS]`` and
  ``[CALL_ID]ID`` optional) and ``[TOOL_CALLS][{"name": ..., "arguments": ...}]`` (pre-v11).

The formats are small and fixed, and the parsers that ship them (vLLM, llama.cpp) come with a
model runtime, so they are written here with regular expressions and `json.JSONDecoder`.
Call `split_reasoning` first: calls inside a reasoning trace are not requests.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Iterator
from typing import Any

from localroute.client.types import ToolCall

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 9
_SAFE_ID_RE = re.compile(r"[a-zA-Z0-9]{9}")


def make_tool_call_id() -> str:
    """A fresh random id of 9 ASCII letters and digits, which Mistral templates require."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def is_mistral_safe_id(s: str) -> bool:
    """True when `s` is exactly 9 ASCII letters and digits."""
    return _SAFE_ID_RE.fullmatch(s) is not None


def mistral_safe_id(s: str) -> str:
    """Map any id to a Mistral-safe one, the same every time, so replayed history stays
    consistent; ids that are already safe are kept as they are."""
    if is_mistral_safe_id(s):
        return s
    number = int.from_bytes(hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest(), "big")
    chars = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
    return "".join(chars)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# strict=False lets literal newlines through inside strings: coding models put source code in
# arguments and often forget to escape them. NaN/Infinity are not JSON and are refused.
_DECODER = json.JSONDecoder(strict=False, parse_constant=_reject_constant)
# JSON's own whitespace, not \s: a value reads as JSON exactly when json.loads would accept it.
_WS_RE = re.compile(r"[ \t\n\r]*")

_Found = tuple[int, int, list[ToolCall]]


def _skip_ws(text: str, pos: int) -> int:
    match = _WS_RE.match(text, pos)
    return match.end() if match else pos


def _decode_at(text: str, pos: int) -> tuple[Any, int] | None:
    """Decode one JSON value starting at `pos` (after whitespace); None when there is none."""
    pos = _skip_ws(text, pos)
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):
        return None
    return value, end


def _call_from(obj: Any) -> ToolCall | None:
    """A ToolCall from ``{"name": ..., "arguments": ...}``; None when the object is not one."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI's wire shape, seen echoed by models
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments = obj.get("arguments", obj.get("parameters"))
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        arguments = {}
    if isinstance(arguments, str):
        decoded = _decode_at(arguments, 0)
        if decoded is None or arguments[decoded[1] :].strip():  # trailing junk: not one value
            return None
        arguments = decoded[0]
    if not isinstance(arguments, dict):
        return None
    return ToolCall(id=make_tool_call_id(), name=name.strip(), arguments=arguments, source="text")


def _calls_from(value: Any) -> list[ToolCall] | None:
    """One call object or a non-empty list of them; None if any item is not a call."""
    items = value if isinstance(value, list) else [value]
    calls = [_call_from(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _scan_json_blocks(text: str, open_tag: str, close_tag: str) -> Iterator[_Found]:
    """``OPEN json CLOSE`` blocks; a missing CLOSE is accepted at the very end of the text,
    where servers that stop on the closing tag leave it out."""
    close_re = re.compile(r"\s*" + re.escape(close_tag))
    pos = 0
    while (start := text.find(open_tag, pos)) != -1:
        pos = start + len(open_tag)
        decoded = _decode_at(text, pos)
        if decoded is None:
            continue
        value, end = decoded
        if (closing := close_re.match(text, end)) is not None:
            end = closing.end()
        elif text[end:].strip():
            continue
        else:
            end = len(text)
        calls = _calls_from(value)
        if calls is None:
            continue
        yield start, end, calls
        pos = end


_XML_CALL_RE = re.compile(
    r"(?:<tool_call>\s*)?<function=([^>\n]+)>(.*?)</function>(?:\s*</tool_call>)?", re.DOTALL
)
# Qwen3-Coder sometimes drops </parameter>; the next parameter or the end closes it then.
_XML_PARAM_RE = re.compile(
    r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.DOTALL
)


def _xml_value(raw: str) -> Any:
    """The template writes each value between newlines; values that parse as JSON are JSON."""
    if raw.startswith("\n"):
        raw = raw[1:]
    if raw.endswith("\n"):
        raw = raw[:-1]
    decoded = _decode_at(raw, 0)
    if decoded is not None and _skip_ws(raw, decoded[1]) == len(raw):
        return decoded[0]
    return raw


def _scan_xml(text: str) -> Iterator[_Found]:
    for match in _XML_CALL_RE.finditer(text):
        name = match.group(1).strip()
        if not name:
            continue
        arguments = {
            param.group(1).strip(): _xml_value(param.group(2))
            for param in _XML_PARAM_RE.finditer(match.group(2))
        }
        call = ToolCall(id=make_tool_call_id(), name=name, arguments=arguments, source="text")
        yield match.start(), match.end(), [call]


_MISTRAL_MARK = "[TOOL_CALLS]"
_MISTRAL_HEAD_RE = re.compile(
    r"\s*([^\s\[\]{}\"]+)(?:\[CALL_ID\][A-Za-z0-9]*)?(\[ARGS\])?\s*(?=\{)"
)


def _mistral_call_at(text: str, pos: int, *, need_args_token: bool) -> tuple[int, ToolCall] | None:
    head = _MISTRAL_HEAD_RE.match(text, pos)
    if head is None or (need_args_token and head.group(2) is None):
        return None
    decoded = _decode_at(text, head.end())
    if decoded is None or not isinstance(decoded[0], dict):
        return None
    call = ToolCall(id=make_tool_call_id(), name=head.group(1), arguments=decoded[0], source="text")
    return decoded[1], call


def _scan_mistral(text: str) -> Iterator[_Found]:
    pos = 0
    while (start := text.find(_MISTRAL_MARK, pos)) != -1:
        pos = start + len(_MISTRAL_MARK)
        array_start = _skip_ws(text, pos)
        if text.startswith("[", array_start) and not text.startswith("[ARGS]", array_start):
            decoded = _decode_at(text, array_start)
            calls = None if decoded is None else _calls_from(decoded[0])
            if decoded is not None and calls is not None and isinstance(decoded[0], list):
                yield start, decoded[1], calls
                pos = decoded[1]
            continue
        found = _mistral_call_at(text, pos, need_args_token=False)
        if found is None:
            continue
        end, call = found
        yield start, end, [call]
        # Several calls may follow one marker; without the marker only NAME[ARGS]{...} counts,
        # so plain prose after a call is never mistaken for one.
        while (more := _mistral_call_at(text, end, need_args_token=True)) is not None:
            yield end, more[0], [more[1]]
            end = more[0]
        pos = end


def parse_text_tool_calls(text: str) -> tuple[list[ToolCall], str]:
    """Return the tool calls written in `text` and the text that remains without them.

    Blocks that do not parse (bad JSON, no name, arguments that are not an object) stay in the
    content untouched, so nothing is lost; `has_leaked_markup` reports them.
    """
    found = [
        *_scan_json_blocks(text, "<tool_call>", "</tool_call>"),
        *_scan_json_blocks(text, "[TOOL_REQUEST]", "[END_TOOL_REQUEST]"),
        *_scan_xml(text),
        *_scan_mistral(text),
    ]
    found.sort(key=lambda item: (item[0], -item[1]))
    calls: list[ToolCall] = []
    kept: list[str] = []
    cursor = 0
    for start, end, block_calls in found:
        if start < cursor:
            continue  # overlaps a block already taken, e.g. an XML call inside <tool_call>
        kept.append(text[cursor:start])
        calls.extend(block_calls)
        cursor = end
    kept.append(text[cursor:])
    return calls, "".join(kept).strip()
