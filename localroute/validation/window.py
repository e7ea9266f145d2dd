"""Releasing a streamed answer in windows that passed the deterministic checks.

The `window` stream policy (docs/server.md): text is held until a window of it is complete, the
checks that can judge a part of an answer run on it, and only then is it sent. The last
`overlap` characters of each window are held back and checked again with the next one, so markup
cut in two by a window boundary is seen whole before any of it leaves. Markup longer than the
overlap could still be split; the overlap is configured at least as long as the longest pattern.

Hand-written: the guardrail libraries that window streams (NeMo Guardrails, Guardrails AI) run
whole frameworks of their own around the model call; this is a buffer and two checks.
"""

from __future__ import annotations

from localroute.client.parsing import has_leaked_markup
from localroute.validation.checks import wants_json


class WindowFailed(Exception):
    """A window failed a check; nothing of it was released."""

    def __init__(self, check: str, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.check = check
        self.failures = failures


def window_failures(question: str, text: str, *, first: bool) -> list[tuple[str, str]]:
    """(check, failure) pairs for one window of an answer; [] when it may be released.

    Only checks a part can fail on its own: leaked model markup anywhere, and an answer that
    was asked for JSON but opens its first window with no JSON at all (a refusal of the
    format). Whole-answer checks (empty, cut at the token limit, figures against the tool
    output) and the validation model run once the answer is complete.
    """
    out = [("leaked_markup", f"the answer contains leaked markup: {kind}")
           for kind in has_leaked_markup(text)]
    if first and wants_json(question) and not any(c in text for c in "{["):
        out.append(("format", "JSON was requested but the answer does not start any JSON"))
    return out


class WindowGate:
    """Content in, checked content out, window by window."""

    def __init__(self, question: str, size: int, overlap: int) -> None:
        self.question = question
        self.size = size
        self.overlap = overlap
        self.pending = ""
        self.released_windows = 0

    def _check(self, text: str) -> None:
        found = window_failures(self.question, text, first=self.released_windows == 0)
        if found:
            raise WindowFailed(found[0][0], [failure for _, failure in found])

    def feed(self, text: str) -> str:
        """The text now safe to send ('' while a window fills up); raises WindowFailed."""
        self.pending += text
        if len(self.pending) < self.size:
            return ""
        self._check(self.pending)
        cut = len(self.pending) - self.overlap
        released, self.pending = self.pending[:cut], self.pending[cut:]
        self.released_windows += 1
        return released

    def flush(self) -> str:
        """The rest, once the answer is complete; raises WindowFailed."""
        if not self.pending:
            return ""
        self._check(self.pending)
        released, self.pending = self.pending, ""
        self.released_windows += 1
        return released
