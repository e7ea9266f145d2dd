"""Finding the final answer in a model's full output.

Order of preference: the last ``\\boxed{}`` / ``\\fbox{}`` (adjacent boxes such as
``\\boxed{-2}, \\boxed{1}`` are joined into one list), else a final-answer sentence
("The final answer is ...", "**Answer:** ..."), else the last math span or a bare short
answer. Reasoning is dropped first: only the text after the last ``</think>`` counts, and an
output that opens ``<think>`` without closing it has no answer at all.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from localroute.evaluation.graders.math_normalize import balanced_group

__all__ = ["Extraction", "ExtractionMethod", "extract_answer", "strip_reasoning"]

ExtractionMethod = Literal["boxed", "final_sentence", "bold", "last_math", "none"]


class Extraction(BaseModel):
    """The answer text found in a prediction and how it was found."""

    model_config = ConfigDict(frozen=True)

    answer: str | None
    method: ExtractionMethod
    note: str = ""


def strip_reasoning(prediction: str) -> str | None:
    """The text after the reasoning block; None when a ``<think>`` block never closes."""
    close = prediction.rfind("</think>")
    if close >= 0:
        return prediction[close + len("</think>") :]
    if "<think>" in prediction:
        return None
    return prediction


_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# What may sit between two boxes that together form one list answer.
_BOX_JOINER = re.compile(
    r"^[\s$,;]*(?:,|;|and|or|\\text\{\s*(?:and|or|,)\s*\}|\\quad|\\qquad|\\\)\s*(?:and|,)\s*\\\()?"
    r"[\s$,;]*$"
)


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete ``\\boxed`` / ``\\fbox`` in ``text``."""
    found: list[tuple[int, int, str]] = []
    for match in _BOX_START.finditer(text):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            end = balanced_group(text, i)
            if end is None:
                continue  # truncated box: not an answer
            found.append((match.start(), end, text[i + 1 : end - 1]))
        else:
            # "\boxed 5": the argument is the next token.
            token = re.match(r"[^\s$]+", text[i:])
            if token is not None and i > match.end():
                found.append((match.start(), i + token.end(), token.group(0)))
    return found


def _last_boxed(text: str) -> str | None:
    """Content of the last box (joined with adjacent boxes), "" when the last box never closes."""
    boxes = _boxes(text)
    starts = [m.start() for m in _BOX_START.finditer(text)]
    if starts and (not boxes or boxes[-1][0] != starts[-1]):
        return ""  # the output was cut off inside its final \boxed{...}
    if not boxes:
        return None
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if _BOX_JOINER.match(text[box[1] : group[0][0]]):
            group.insert(0, box)
        else:
            break
    return ", ".join(content.strip() for _, _, content in group)


_ANSWER_CUE = re.compile(
    r"(?:final\s+answer(?:\s+is)?|the\s+answer\s+is|answer\s+is|\banswer)(?![A-Za-z])"
    r"\s*(?:\*\*)?\s*[:=]?",
    re.IGNORECASE,
)
_MATH_SPAN = re.compile(
    r"\$\$(?P<a>.+?)\$\$|\$(?P<b>[^$]+?)\$|\\\((?P<c>.+?)\\\)|\\\[(?P<d>.+?)\\\]", re.S
)
# First words that show the "answer" cue is talking about the answer, not giving it.
# fmt: off
_NOT_AN_ANSWER: Final = frozenset({
    "correct", "incorrect", "right", "wrong", "not", "indeed", "that", "this", "likely",
    "probably", "unique", "different", "the", "same", "to", "in", "should", "must", "will",
    "would", "can", "could", "might", "as", "of", "for", "we", "it", "is", "be", "choices",
    "options", "format", "checks", "consistent", "reasonable",
})
# fmt: on
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")


def _math_spans(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(text)]


def _clean_sentence_answer(rest: str) -> str | None:
    rest = rest.replace("**", "").replace("__", "").strip()
    if not rest:
        return None
    # Cut at the first sentence end outside math spans.
    masked = _MATH_SPAN.sub(lambda m: "#" * len(m.group(0)), rest)
    end = _SENTENCE_END.search(masked)
    sentence = rest[: end.start()] if end else rest
    spans = _math_spans(sentence)
    if spans:
        return ", ".join(span.strip() for span in spans)
    sentence = sentence.strip().strip(" .;:")
    if not sentence:
        return None
    words = sentence.split()
    if words[0].lower().strip(",;:") in _NOT_AN_ANSWER or len(words) > 8:
        return None
    return sentence


def _final_sentence(text: str) -> str | None:
    for match in reversed(list(_ANSWER_CUE.finditer(text))):
        rest = text[match.end() :]
        line_end = rest.find("\n")
        line = rest if line_end < 0 else rest[:line_end]
        if not line.strip().strip("*:") and line_end >= 0:
            # "**Final answer:**\n\n$5$": the answer is on the next non-empty line.
            line = next((ln for ln in rest[line_end:].splitlines() if ln.strip()), "")
        answer = _clean_sentence_answer(line)
        if answer:
            return answer
    return None


_BARE_ANSWER_MAX: Final = 60
_LAST_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:\s*\\?%)?")


def _last_math(text: str) -> str | None:
    stripped = text.strip().replace("**", "").strip()
    prose_words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{2,}", stripped)
    if (
        stripped
        and "\n" not in stripped
        and len(stripped) <= _BARE_ANSWER_MAX
        and len(prose_words) <= 2
    ):
        return stripped.rstrip(".")
    spans = _math_spans(text)
    if spans:
        return spans[-1].strip()
    numbers = _LAST_NUMBER.findall(text)
    if numbers:
        return str(numbers[-1]).rstrip(",")
    return None


_BOLD = re.compile(r"\*\*([^*\n]{1,40})\*\*")


def _closing_bold(text: str) -> str | None:
    """A short bold value after the last math span ("so the 2003rd is **4005**.")."""
    last_span = max((m.end() for m in _MATH_SPAN.finditer(text)), default=-1)
    for match in reversed(list(_BOLD.finditer(text))):
        value = match.group(1).strip().strip(".:")
        if match.start() > last_span and re.search(r"\d|\$|\\", value):
            return value.strip("$ ")
        break  # only the last bold span can be the closing answer
    return None


def extract_answer(prediction: str) -> Extraction:
    """Find the final answer in a full model output (see the module doc for the order)."""
    text = strip_reasoning(prediction)
    if text is None:
        return Extraction(answer=None, method="none", note="unclosed <think> block")
    if not text.strip():
        return Extraction(answer=None, method="none", note="empty output after reasoning")
    boxed = _last_boxed(text)
    if boxed is not None:
        if not boxed.strip():
            note = "last \\boxed{} is empty or unclosed"
            return Extraction(answer=None, method="none", note=note)
        return Extraction(answer=boxed.strip(), method="boxed")
    sentence = _final_sentence(text)
    if sentence is not None:
        return Extraction(answer=sentence, method="final_sentence")
    bold = _closing_bold(text)
    if bold:
        return Extraction(answer=bold, method="bold")
    last = _last_math(text)
    if last is not None and last.strip():
        return Extraction(answer=last.strip(), method="last_math")
    return Extraction(answer=None, method="none", note="no boxed answer, answer sentence or math")
