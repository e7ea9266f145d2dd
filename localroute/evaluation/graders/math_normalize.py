"""Normalisation of final math answers before they are compared.

The rules are string rewrites on the LaTeX of an already extracted answer. They follow the
conventions of the MATH data set and of the PRM800K / Hendrycks graders (``\\dfrac`` is
``\\frac``, units, degrees and a leading ``x =`` are dropped), with two deliberate departures:
a percent sign is dropped without rescaling (``50\\%`` means the number 50, never 0.5), and
interval brackets are left untouched so that ``(1,2]`` and ``[1,2]`` stay different.
"and" / "or" make a list (``2, 3``) except between inequalities, where they are logic and
become ``\\land`` / ``\\lor`` for the grader's inequality rule; a word answer loses a leading
article (``an ellipse`` is ``ellipse``).

Everything here is plain ``re``: no sympy, so normalising is cheap and runs in the caller's
process; only the symbolic comparison goes to the worker process.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "LOGIC_AND",
    "LOGIC_OR",
    "as_choice",
    "as_text_answer",
    "balanced_group",
    "drop_article",
    "normalize",
    "split_top_level",
    "unwrap_command",
]

# Text-like wrappers whose argument is words, not maths.
_TEXT_CMDS: Final = ("text", "textbf", "textrm", "textit", "textnormal", "mbox", "mathrm", "mathbf")


def balanced_group(text: str, open_index: int) -> int | None:
    """Index just past the brace group opening at ``text[open_index] == "{"``, or None.

    Hand-written because LaTeX braces nest and ``\\{`` / ``\\}`` are escaped literals, which a
    regular expression cannot count. None means the group is never closed (a truncated output).
    """
    depth = 0
    i = open_index
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def unwrap_command(text: str, names: tuple[str, ...]) -> str:
    """Replace every ``\\name{arg}`` (for the given names) by ``arg``, nested groups included."""
    pattern = re.compile(r"\\(?:" + "|".join(names) + r")(?![A-Za-z])\s*\{")
    out: list[str] = []
    pos = 0
    while True:
        match = pattern.search(text, pos)
        if match is None:
            out.append(text[pos:])
            break
        end = balanced_group(text, match.end() - 1)
        if end is None:
            out.append(text[pos:])
            break
        out.append(text[pos : match.start()])
        out.append(unwrap_command(text[match.end() : end - 1], names))
        pos = end
    return "".join(out)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside any (), [], {} nesting."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


_DELIMITERS: Final = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _strip_delimiters(s: str) -> str:
    changed = True
    while changed:
        changed = False
        s = s.strip()
        for left, right in _DELIMITERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
                changed = True
                break
    return s


def _unwrap_whole_boxed(s: str) -> str:
    match = re.match(r"\s*\\(?:boxed|fbox)\s*\{", s)
    if match:
        end = balanced_group(s, match.end() - 1)
        if end is not None and not s[end:].strip():
            return s[match.end() : end - 1]
    return s


_UNIT_SCAN_MAX: Final = 400
_NUMBER: Final = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
# A matrix row break (two backslashes) is matched first so that its second backslash is never
# read as the start of the spacing command backslash-space.
_SPACING = re.compile(r"\\\\|\\[,;:!>]|\\ |\\q?quad(?![A-Za-z])|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])\s*\.?")
_DEGREES = re.compile(
    r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\circ(?![A-Za-z])|°|\\degree(?![A-Za-z])"
    r"|\\text\{\s*degrees?\s*\}|(?<=\d)\s*degrees?\b"
)
_PERCENT = re.compile(r"\\%|%|\\text\{\s*percent\s*\}|(?<=\d)\s*percent\b")
_THOUSANDS = re.compile(r"^([-+]?)(\d{1,3}(?:,\d{3})+)(\.\d+)?$")
# A trailing word group after a number is a unit ("5 \text{ cm}^2", "42 apples").
_TRAILING_TEXT_UNIT = re.compile(
    r"^(?P<head>.*?(?:\d|\}|\)))\s*\\(?:text|mbox|textrm|textnormal|mathrm)\s*\{\s*"
    r"[A-Za-z][A-Za-z\s.]*\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$"
)
_TRAILING_WORD_UNIT = re.compile(
    r"^(?P<num>" + _NUMBER + r")\s*(?:[A-Za-z]{2,}\.?)(?:\s+[A-Za-z]{2,}\.?)*"
    r"(?:\s*\^\s*\{?\s*[23]\s*\}?)?$"
)
# "x =", "x_1 =", "\theta =", "f(x) =" are labels, not part of the value (PRM800K convention).
_ASSIGN_LHS = re.compile(
    r"^\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?(?:\s*\(\s*[A-Za-z]\s*\))?\s*=\s*(?P<rhs>.+)$",
    re.S,
)
_IN_PREFIX = re.compile(r"^\s*[A-Za-z]\s*\\in(?![A-Za-z])\s*")
_CONNECTOR = re.compile(r"\\text\{\s*(and|or)\s*\}|\s+(and|or)\s+")
# An inequality sign: "<", ">", "\\le", "\\geq", "\\neq", ... ("\\left" is gone by now).
_INEQUALITY = re.compile(r"[<>]|\\(?:le|ge|leq|geq|lt|gt|ne|neq|leqslant|geqslant)(?![A-Za-z])")
# Written between inequalities, "and" / "or" are logic, not a list; these markers keep which
# one was meant (math-verify does not parse them; the grader's relation rule reads them).
LOGIC_AND: Final = " \\land "
LOGIC_OR: Final = " \\lor "


def _strip_assignments(s: str) -> str:
    parts = split_top_level(s)
    stripped: list[str] = []
    for part in parts:
        match = _ASSIGN_LHS.match(part)
        if match is None or "=" in match.group("rhs"):
            return s
        stripped.append(match.group("rhs").strip())
    return ", ".join(stripped) if len(stripped) > 1 else stripped[0]


def _join_connectors(s: str) -> str:
    """Replace "and" / "or" by a list comma, or by a logic marker between inequalities."""
    pieces = _CONNECTOR.split(s)
    # re.split with two groups yields: text, and-or group 1, group 2, text, ...
    texts = pieces[::3]
    words = [a or b for a, b in zip(pieces[1::3], pieces[2::3], strict=True)]
    if not words:
        return s
    logic = all(_INEQUALITY.search(text) for text in texts)
    out = [texts[0]]
    for word, text in zip(words, texts[1:], strict=True):
        out.append((LOGIC_AND if word == "and" else LOGIC_OR) if logic else ", ")
        out.append(text)
    return "".join(out)


def normalize(answer: str, *, keep_labels: bool = False) -> str:
    """Canonical LaTeX for an extracted answer (see the module doc for the rules).

    ``keep_labels`` keeps a leading ``y =`` / ``x =``: the label convention reads ``y = 2x+3``
    as the value ``2x+3``, but an equation compared as a solution set needs both of its sides.
    """
    s = answer.strip()
    s = s.replace("**", "").replace("__", "")
    s = _strip_delimiters(s)
    s = _unwrap_whole_boxed(s)
    s = _strip_delimiters(s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\displaystyle(?![A-Za-z])", "", s)
    s = _LEFT_RIGHT.sub("", s)
    # Thousands groups first, while the "\!" / "{,}" that mark them are still visible.
    s = re.sub(r"(?<=\d)\s*(?:,\\!|\{,\}|,\\,)\s*(?=\d{3}(?!\d))", "", s)
    s = _SPACING.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", s)
    s = re.sub(r"\\varnothing(?![A-Za-z])", r"\\emptyset", s)
    s = _DEGREES.sub("", s)
    s = _PERCENT.sub("", s)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:textbf|textrm|textnormal|mbox|textit)(?![A-Za-z])", r"\\text", s)
    s = _join_connectors(s)
    s = " ".join(s.split())
    s = s.rstrip(" .;,")
    s = _IN_PREFIX.sub("", s)
    if not keep_labels:
        s = _strip_assignments(s)
    # The unit patterns backtrack; a real answer is short, so long strings skip them.
    unit = _TRAILING_TEXT_UNIT.match(s) if len(s) <= _UNIT_SCAN_MAX else None
    if unit is not None:
        s = unit.group("head").strip()
    unit = _TRAILING_WORD_UNIT.match(s) if len(s) <= _UNIT_SCAN_MAX else None
    if unit is not None:
        s = unit.group("num")
    thousands = _THOUSANDS.match(s)
    if thousands is not None:
        s = thousands.group(1) + thousands.group(2).replace(",", "") + (thousands.group(3) or "")
    return s.strip()


_CHOICE = re.compile(r"^\(?\s*([A-Ea-e])\s*\)?$")
_CHOICE_WITH_VALUE = re.compile(r"^\(\s*([A-E])\s*\)\s+\S.*$|^([A-E])\)\s+\S.*$")


def as_choice(normalized: str, *, strict: bool) -> str | None:
    """The multiple-choice letter of an answer (``\\text{(C)}``, ``(C)``, ``C``), upper case.

    ``strict`` (used for gold answers) accepts only an upper-case letter, bare or in
    parentheses; predictions may also be ``(c)`` or ``(C) 12`` (letter followed by its value).
    """
    inner = unwrap_command(normalized, _TEXT_CMDS).strip()
    match = _CHOICE.match(inner)
    if match is not None:
        letter = match.group(1)
        if strict and not letter.isupper():
            return None
        if strict and letter == "E" and inner == normalized:
            # A bare "E" gold is as likely Euler's number as a choice; leave it to sympy.
            return None
        return letter.upper()
    if not strict:
        match = _CHOICE_WITH_VALUE.match(inner)
        if match is not None:
            return (match.group(1) or match.group(2)).upper()
    return None


_WORDS = re.compile(r"^[A-Za-z][A-Za-z0-9'\- ]*$")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+(?=\S)", re.IGNORECASE)


def drop_article(words: str) -> str:
    """``an ellipse`` -> ``ellipse``: a leading article does not change a word answer."""
    return _ARTICLE.sub("", words, count=1)


def as_text_answer(normalized: str) -> str | None:
    """Lower-cased words if the answer is prose (``\\text{Navin}``, ``even``), else None.

    sympy would read ``Navin`` as the product N*a*v*i*n, so ``Nivan`` would match it; words are
    therefore compared as words. A bare letter string counts as prose only from three letters
    on, so that products like ``xy`` still go to sympy.
    """
    wrapped = re.fullmatch(r"\\text\s*\{(.*)\}", normalized.strip(), re.S) is not None
    inner = drop_article(" ".join(unwrap_command(normalized, _TEXT_CMDS).split()).strip(" ."))
    if not inner or not _WORDS.match(inner):
        return None
    letters = sum(ch.isalpha() for ch in inner)
    has_word = re.search(r"[A-Za-z]{3,}", inner) is not None
    if wrapped and has_word:
        return inner.lower()
    if re.fullmatch(r"[A-Za-z]{3,}(?: [A-Za-z]+)*", inner) and letters >= 3:
        return inner.lower()
    return None
