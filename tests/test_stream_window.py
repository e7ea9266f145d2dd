"""The `window` stream policy's gate and the stream policy settings (pure: no model)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from localroute.config.modes import StreamValidationSettings
from localroute.server.stream_steps import _ToolCallHold
from localroute.validation.window import WindowFailed, WindowGate


def _run(gate: WindowGate, pieces: list[str]) -> str:
    out = "".join(gate.feed(p) for p in pieces)
    return out + gate.flush()


@given(st.lists(st.text(alphabet="abc de\n.,", max_size=30), max_size=40))
def test_a_clean_answer_comes_out_whole_and_in_order(pieces: list[str]) -> None:
    assert _run(WindowGate("q", size=50, overlap=16), pieces) == "".join(pieces)


@pytest.mark.parametrize("cut", range(1, 10))
def test_markup_split_by_a_window_boundary_is_caught(cut: int) -> None:
    # "<|im_end|>" is cut `cut` characters in, exactly where the first window ends.
    gate = WindowGate("q", size=50, overlap=16)
    head = "x" * (50 - cut) + "<|im_end|>"[:cut]
    released = gate.feed(head)
    assert "<|" not in released
    with pytest.raises(WindowFailed) as caught:
        gate.feed("<|im_end|>"[cut:] + " more text")
        gate.flush()
    assert caught.value.check == "leaked_markup"
    assert "special_token" in str(caught.value)


def test_a_json_request_answered_with_prose_fails_the_format_check() -> None:
    gate = WindowGate("give me the result as json", size=40, overlap=16)
    with pytest.raises(WindowFailed) as caught:
        gate.feed("I'm sorry, I would rather describe it in words for you here.")
    assert caught.value.check == "format"
    ok = WindowGate("give me the result as json", size=40, overlap=16)
    assert _run(ok, ['Here: {"a": 1, "b": [1, 2, 3], "c": "some text"}']).startswith("Here")


def test_stream_policy_is_per_route_with_a_default() -> None:
    settings = StreamValidationSettings(default="after", routes={"coding": "window"})
    assert settings.policy("coding") == "window"
    assert settings.policy("reasoning") == "after" and settings.policy(None) == "after"


@pytest.mark.parametrize(("fields", "named"), [
    ({"default": "later"}, "default"),
    ({"routes": {"cooking": "after"}}, "routes.cooking"),
    ({"window_chars": 40, "window_overlap_chars": 40}, "window_overlap_chars"),
])
def test_bad_stream_settings_are_named(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        StreamValidationSettings.model_validate(fields)
    assert named.split(".")[0] in str(caught.value)


def test_text_that_opens_a_tool_call_is_held_and_prose_is_not() -> None:
    hold = _ToolCallHold(active=True)
    assert hold.feed('<tool_call>{"name": "cpu", ') == ""
    assert hold.feed('"arguments": {}}</tool_call>') == ""
    prose = _ToolCallHold(active=True)
    assert prose.feed("Your machine is busy: ") == ""  # not yet enough to tell
    assert prose.feed("the CPU is at 97 percent.") == "Your machine is busy: the CPU is at 97 " \
        "percent."
    assert prose.feed(" More.") == " More."
    assert _ToolCallHold(active=False).feed("{") == "{"
