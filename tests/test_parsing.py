"""Model-output parsing: reasoning split (whole and streamed), text tool calls, ids, JSON."""

from __future__ import annotations

import itertools
import json
import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from localroute.client.parsing import (
    Piece,
    ReasoningStreamSplitter,
    extract_json,
    has_leaked_markup,
    is_mistral_safe_id,
    make_tool_call_id,
    mistral_safe_id,
    parse_text_tool_calls,
    split_first_reasoning,
    split_reasoning,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAG = re.compile(r"</?think(?:ing)?>")


# --- strategies ---------------------------------------------------------------------------

# Fragments that make tags, broken tags and tags formed only when pieces meet.
THINK_FRAGMENTS = [
    "<think>", "</think>", "<thinking>", "</thinking>", "<thi", "nk>", "</th", "ink>", "ing>",
    "<", "/", ">", " ", "\n", "a", "b", "<t", "hink>",
]  # fmt: skip
MARKUP_FRAGMENTS = [
    *THINK_FRAGMENTS, "<tool_call>", "</tool_call>", "[TOOL_REQUEST]", "[END_TOOL_REQUEST]",
    "<function=f>", "</function>", "<parameter=k>", "</parameter>", "[TOOL_CALLS]", "[ARGS]",
    "[CALL_ID]", '{"name": "f", "arguments": {}}', "{", "}", "[", "]", '"', ":", ",", "name",
    "\\", "f", "1",
]  # fmt: skip


def marked_text(fragments: list[str]) -> st.SearchStrategy[str]:
    piece = st.sampled_from(fragments) | st.text(max_size=5)
    return st.lists(piece, max_size=25).map("".join)


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def stream(text: str, cuts: list[int], *, start_in_reasoning: bool = False) -> list[Piece]:
    splitter = ReasoningStreamSplitter(start_in_reasoning=start_in_reasoning)
    pieces: list[Piece] = []
    for chunk in chunked(text, cuts):
        pieces.extend(splitter.feed(chunk))
    pieces.extend(splitter.flush())
    return pieces


def joined(pieces: list[Piece], channel: str) -> str:
    return "".join(text for kind, text in pieces if kind == channel)


plain_text = st.text(alphabet=string.ascii_letters + string.digits + " .,!?\n", max_size=30)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(identifiers, inner, max_size=3),
    max_leaves=8,
)
argument_dicts = st.dictionaries(identifiers, json_values, max_size=4)


# --- split_reasoning: examples ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>plan</think>answer", ("plan", "answer")),
        ("  no markup at all  ", (None, "no markup at all")),
        ("before<think>still thinking", ("still thinking", "before")),
        ("the template opened it\n</think>\n\nFinal.", ("the template opened it", "Final.")),
        ("first</think>second</think>answer", ("first\n\nsecond", "answer")),
        ("<think>a</think>x <think>b</think> y", ("a\n\nb", "x  y")),
        ("<think></think>answer", (None, "answer")),
        ("<think>\n\n</think>\n\nQwen no_think", (None, "Qwen no_think")),
        ("<thinking>alias</thinking>ok", ("alias", "ok")),
        ("<think>a<think>nested</think>after", ("anested", "after")),
        ("<think>a</think>b</think>c", ("a", "bc")),
        ("Text <thi<think>r</think>nk> end", ("r", "Text  end")),
        ("<THINK>upper case is prose</THINK>", (None, "<THINK>upper case is prose</THINK>")),
    ],
)
def test_split_reasoning_examples(text: str, expected: tuple[str | None, str]) -> None:
    assert split_reasoning(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<think>r</think>{"s": "</think>"}', ("r", '{"s": "</think>"}')),
        ("r1 trace</think>answer </think> kept", ("r1 trace", "answer </think> kept")),
        ("pre <think>unclosed", ("unclosed", "pre ")),
        ("no tags", (None, "no tags")),
        ("<think> </think>x", (None, "x")),
    ],
)
def test_split_first_reasoning_leaves_later_markup(
    text: str, expected: tuple[str | None, str]
) -> None:
    assert split_first_reasoning(text) == expected


# --- split_reasoning: properties ----------------------------------------------------------


@FAST
@given(marked_text(THINK_FRAGMENTS))
def test_split_reasoning_never_raises_and_strips_every_tag(text: str) -> None:
    reasoning, content = split_reasoning(text)
    assert TAG.search(content) is None
    assert content == content.strip()
    assert reasoning is None or (TAG.search(reasoning) is None and reasoning == reasoning.strip())
    assert reasoning != ""


def test_split_reasoning_holds_chained_tag_prefixes() -> None:
    # Found by hypothesis: removing the inner tag joins the outer prefixes into a new one.
    assert split_reasoning("<t<t<think></think>hink>hink>") == (None, "")
    assert split_reasoning("a<th<t<think></think>hink>ink>b") == (None, "ab")


untagged = st.text(max_size=40).filter(lambda s: TAG.search(s) is None)


@FAST
@given(untagged, untagged, st.sampled_from([("<think>{r}</think>{c}", 2), ("{r}</think>{c}", 1)]))
def test_split_reasoning_round_trip(reasoning: str, content: str, form: tuple[str, int]) -> None:
    template, tag_count = form
    text = template.format(r=reasoning, c=content)
    assume(len(TAG.findall(text)) == tag_count)  # no tag formed where the parts meet
    assert split_reasoning(text) == (reasoning.strip() or None, content.strip())


# --- streaming splitter -------------------------------------------------------------------


def test_stream_holds_back_split_tags() -> None:
    splitter = ReasoningStreamSplitter()
    assert splitter.feed("<thi") == []
    assert splitter.feed("nk>I rea") == [("reasoning", "I rea")]
    assert splitter.feed("son</th") == [("reasoning", "son")]
    assert splitter.feed("ink>\n\nThe answer <") == [("content", "The answer")]
    assert splitter.feed("b>") == [("content", " <b>")]
    assert splitter.flush() == []
    assert not splitter.ended_in_reasoning


def test_stream_start_in_reasoning_for_deepseek_r1() -> None:
    splitter = ReasoningStreamSplitter(start_in_reasoning=True)
    pieces = splitter.feed("Let me think.\n</think>\n\n") + splitter.feed("42") + splitter.flush()
    assert pieces == [("reasoning", "Let me think."), ("content", "42")]


def test_stream_that_never_closes_reasoning_reports_it() -> None:
    splitter = ReasoningStreamSplitter(start_in_reasoning=True)
    pieces = splitter.feed("model skipped thinking") + splitter.flush()
    assert pieces == [("reasoning", "model skipped thinking")]
    assert splitter.ended_in_reasoning


def test_stream_lone_close_in_content_mode_stays_content() -> None:
    splitter = ReasoningStreamSplitter()
    pieces = splitter.feed("already sent") + splitter.feed("</think>more") + splitter.flush()
    assert pieces == [("content", "already sent"), ("content", "more")]
    assert not splitter.ended_in_reasoning


def test_stream_keeps_unfinished_tag_prefix_at_end_as_text() -> None:
    splitter = ReasoningStreamSplitter()
    assert splitter.feed("a <thin") == [("content", "a")]
    assert splitter.flush() == [("content", " <thin")]


def test_stream_feed_after_flush_is_refused() -> None:
    splitter = ReasoningStreamSplitter()
    splitter.flush()
    with pytest.raises(RuntimeError, match="new splitter"):
        splitter.feed("x")


@FAST
@given(marked_text(THINK_FRAGMENTS), st.lists(st.integers(min_value=0), max_size=12))
def test_stream_equals_whole_text_for_any_chunking(text: str, cuts: list[int]) -> None:
    first = TAG.search(text)
    if first is not None and first.group().startswith("</"):
        text = "<think>" + text  # the documented equivalence needs no leading orphan close
    pieces = stream(text, cuts)
    reasoning, content = split_reasoning(text)
    assert joined(pieces, "reasoning") == (reasoning or "")
    assert joined(pieces, "content") == content
    assert all(piece and TAG.search(piece) is None for _, piece in pieces)


@FAST
@given(untagged, untagged, st.lists(st.integers(min_value=0), max_size=12))
def test_stream_in_reasoning_mode_matches_orphan_close_rule(
    reasoning: str, content: str, cuts: list[int]
) -> None:
    text = f"{reasoning}</think>{content}"
    assume(len(TAG.findall(text)) == 1)
    pieces = stream(text, cuts, start_in_reasoning=True)
    expected_reasoning, expected_content = split_reasoning(text)
    assert joined(pieces, "reasoning") == (expected_reasoning or "")
    assert joined(pieces, "content") == expected_content


# --- text tool calls: examples ------------------------------------------------------------


def names_and_args(text: str) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    calls, content = parse_text_tool_calls(text)
    assert all(call.source == "text" and is_mistral_safe_id(call.id) for call in calls)
    return [(call.name, call.arguments) for call in calls], content


@pytest.mark.parametrize(
    ("text", "calls", "content"),
    [
        (
            'Checking.\n<tool_call>\n{"name": "disk_free", "arguments": {"path": "/"}}\n'
            "</tool_call>",
            [("disk_free", {"path": "/"})],
            "Checking.",
        ),
        (
            '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>',
            [("f", {"a": 1})],
            "",
        ),
        ('<tool_call>{"name": "f"}', [("f", {})], ""),
        (
            '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "b", "arguments": {"s": "</tool_call>"}}</tool_call>',
            [("a", {}), ("b", {"s": "</tool_call>"})],
            "",
        ),
        (
            '[TOOL_REQUEST]{"name": "search", "arguments": {"q": "x"}}[END_TOOL_REQUEST] done',
            [("search", {"q": "x"})],
            "done",
        ),
        (
            "I'll run it.\n<tool_call>\n<function=run_shell>\n<parameter=command>\nls -la\n"
            "</parameter>\n<parameter=timeout>\n30\n</parameter>\n<parameter=opts>\n"
            '{"x": [1]}\n</parameter>\n</function>\n</tool_call>',
            [("run_shell", {"command": "ls -la", "timeout": 30, "opts": {"x": [1]}})],
            "I'll run it.",
        ),
        (
            "<function=edit><parameter=code>\n\ndef f():\n    pass\n\n</parameter></function>",
            [("edit", {"code": "\ndef f():\n    pass\n"})],
            "",
        ),
        (
            "<function=f><parameter=a>1<parameter=b>two</function>",
            [("f", {"a": 1, "b": "two"})],
            "",
        ),
        (
            'Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]now[ARGS]{}',
            [("get_weather", {"city": "Paris"}), ("now", {})],
            "Sure.",
        ),
        ('[TOOL_CALLS]a[ARGS]{"x": 1}b[ARGS]{"y": 2}', [("a", {"x": 1}), ("b", {"y": 2})], ""),
        ('[TOOL_CALLS]lookup{"id": 7}', [("lookup", {"id": 7})], ""),
        ('[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{"k": "v"}', [("f", {"k": "v"})], ""),
        (
            '[TOOL_CALLS] [{"name": "p", "arguments": {"n": 1}}, {"name": "q", "arguments": {}}]',
            [("p", {"n": 1}), ("q", {})],
            "",
        ),
    ],
)
def test_parse_text_tool_calls_formats(
    text: str, calls: list[tuple[str, dict[str, Any]]], content: str
) -> None:
    assert names_and_args(text) == (calls, content)


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>{not json}</tool_call>",
        '<tool_call>{"arguments": {}}</tool_call>',
        '<tool_call>{"name": "f", "arguments": [1]}</tool_call>',
        '<tool_call>{"name": "f", "arguments": "{broken"}</tool_call>',
        '<tool_call>{"name": "f"} trailing junk',
        '[TOOL_REQUEST]{"name": "f", "arguments": {[END_TOOL_REQUEST]',
        '[TOOL_CALLS]f[ARGS]{"unterminated": ',
        "[TOOL_CALLS]",
        "<function=f><parameter=a>1</parameter>",
        '<tool_call>{"name": "f", "arguments": {"x": NaN}}</tool_call>',
    ],
)
def test_malformed_blocks_stay_in_content(text: str) -> None:
    assert names_and_args(text) == ([], text.strip())


def test_good_block_parsed_next_to_malformed_one() -> None:
    bad = "<tool_call>{oops}</tool_call>"
    text = f'{bad}\n[TOOL_REQUEST]{{"name": "ok", "arguments": {{}}}}[END_TOOL_REQUEST]'
    assert names_and_args(text) == ([("ok", {})], bad)


def test_each_call_gets_its_own_id() -> None:
    calls, _ = parse_text_tool_calls("[TOOL_CALLS]a[ARGS]{}[TOOL_CALLS]a[ARGS]{}")
    assert len({call.id for call in calls}) == 2


# --- text tool calls: properties ----------------------------------------------------------


def render_hermes(name: str, args: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def render_lmstudio(name: str, args: dict[str, Any]) -> str:
    return f"[TOOL_REQUEST]{json.dumps({'name': name, 'arguments': args})}[END_TOOL_REQUEST]"


def render_mistral(name: str, args: dict[str, Any]) -> str:
    return f"[TOOL_CALLS]{name}[ARGS]{json.dumps(args)}"


def xml_value(value: Any) -> str:
    """Strings that would read back as JSON are written as JSON strings, as a template would."""
    if isinstance(value, str):
        try:
            json.loads(value, strict=False)
        except ValueError:
            return value
    return json.dumps(value)


def render_qwen_xml(name: str, args: dict[str, Any]) -> str:
    params = "".join(
        f"<parameter={key}>\n{xml_value(value)}\n</parameter>\n" for key, value in args.items()
    )
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


RENDERERS = {
    "hermes": render_hermes,
    "lmstudio": render_lmstudio,
    "mistral": render_mistral,
    "qwen_xml": render_qwen_xml,
}
XML_BREAKERS = ("</parameter>", "<parameter=", "</function>")


@FAST
@given(
    st.sampled_from(sorted(RENDERERS)),
    st.lists(st.tuples(identifiers, argument_dicts), min_size=1, max_size=3),
    plain_text,
    plain_text,
)
def test_tool_call_formats_round_trip(
    fmt: str, calls: list[tuple[str, dict[str, Any]]], before: str, after: str
) -> None:
    rendered = "".join(RENDERERS[fmt](name, args) for name, args in calls)
    if fmt == "qwen_xml":
        body_values = [xml_value(v) for _, args in calls for v in args.values()]
        assume(not any(b in value for value in body_values for b in XML_BREAKERS))
    if fmt == "mistral":
        after = ""  # Mistral models end their turn with the calls
    assert names_and_args(before + rendered + after) == (calls, (before + after).strip())


@FAST
@given(marked_text(MARKUP_FRAGMENTS))
def test_parse_text_tool_calls_never_raises(text: str) -> None:
    calls, content = parse_text_tool_calls(text)
    assert all(is_mistral_safe_id(call.id) and call.source == "text" for call in calls)
    assert len(content) <= len(text)


# --- ids ------------------------------------------------------------------------------------


def test_make_tool_call_id_is_mistral_safe_and_random() -> None:
    ids = [make_tool_call_id() for _ in range(200)]
    assert all(re.fullmatch(r"[a-zA-Z0-9]{9}", value) for value in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("value", "safe"),
    [("abcDEF123", True), ("abcDEF12", False), ("abcDEF1234", False), ("call_1234", False),
     ("abcdéf123", False), ("abcDEF12\n", False), ("", False)],
)  # fmt: skip
def test_is_mistral_safe_id(value: str, safe: bool) -> None:
    assert is_mistral_safe_id(value) is safe


@FAST
@given(st.text(max_size=60))
def test_mistral_safe_id_is_safe_and_deterministic(value: str) -> None:
    mapped = mistral_safe_id(value)
    assert is_mistral_safe_id(mapped)
    assert mistral_safe_id(value) == mapped
    assert mistral_safe_id(mapped) == mapped
    if is_mistral_safe_id(value):
        assert mapped == value


def test_mistral_safe_id_keeps_distinct_ids_distinct() -> None:
    originals = [f"call_{n}" for n in range(500)] + ["chatcmpl-tool-abc", "toolu_01XYZ"]
    assert len({mistral_safe_id(value) for value in originals}) == len(originals)


# --- extract_json ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("42", 42),
        ('<think>maybe {"draft": true}</think>{"final": true}', {"final": True}),
        ('Here you go:\n```json\n{"k": [1, 2]}\n```\nHope it helps.', {"k": [1, 2]}),
        ('```\n["x", "y"]\n```', ["x", "y"]),
        ('```python\nd = {"no": 1}\n```\nJSON: {"yes": 1}', {"yes": 1}),
        ('Sure! [citation needed] The result is {"route": "coding"}.', {"route": "coding"}),
        ('{"outer": {"inner": "}"}} trailing', {"outer": {"inner": "}"}}),
        ('{"code": "line1\nline2"}', {"code": "line1\nline2"}),
        ('<think>a</think>{"tags": ["<think>", "</think>"]}', {"tags": ["<think>", "</think>"]}),
        ('R1 thought {"draft": 1}</think>{"final": 2}', {"final": 2}),
        ('first [1, 2] then {"a": 1}', [1, 2]),
    ],
)
def test_extract_json_examples(text: str, expected: object) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no json here at all", "no JSON object or array found"),
        ("{broken: yes", "no JSON object or array found"),
        ("<think>I was about to write {", "reasoning trace"),
    ],
)
def test_extract_json_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_json(text)


prose = st.text(alphabet=string.ascii_letters + " .,:!\n", max_size=30)


@FAST
@given(st.dictionaries(identifiers, json_values, max_size=4) | st.lists(json_values, max_size=4),
       prose, prose, st.booleans())  # fmt: skip
def test_extract_json_finds_value_in_prose(
    value: Any, before: str, after: str, fence: bool
) -> None:
    body = json.dumps(value)
    if fence:
        body = f"```json\n{body}\n```"
    assert extract_json(f"<think>x {{}} y</think>{before}{body}{after}") == value


# --- has_leaked_markup ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("A clean answer with <b>html</b> and [brackets].", []),
        ("left </think> over", ["think"]),
        ('<tool_call>{"name": "f"', ["tool_call"]),
        ("[TOOL_REQUEST]", ["tool_request"]),
        ("<function=f><parameter=a>1", ["function"]),
        ("[TOOL_CALLS]f[ARGS]{", ["tool_calls"]),
        ("done<|im_end|>", ["special_token"]),
        ("<think>x</think><tool_call>[TOOL_CALLS]", ["think", "tool_call", "tool_calls"]),
    ],
)
def test_has_leaked_markup(text: str, kinds: list[str]) -> None:
    assert has_leaked_markup(text) == kinds


@FAST
@given(marked_text(MARKUP_FRAGMENTS))
def test_parsing_never_adds_markup(text: str) -> None:
    _, content = parse_text_tool_calls(text)
    before = set(has_leaked_markup(text))
    assert set(has_leaked_markup(content)) <= before
