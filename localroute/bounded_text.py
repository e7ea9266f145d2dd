"""The bounded view of a query that stage 1 (rules, features, classifier, argument filler) and
the other pattern checks over query text work on.

A request body may hold up to 4 MiB of text. Routing must cost the same few milliseconds on
such a paste as on a one-line question, and it runs on the server's event loop's behalf, so
every pattern sees at most STAGE1_VIEW_CHARS characters: the head, where the instruction and the
start of the pasted text sit, and the tail, where an instruction after a paste sits. 16 KiB is
six times the longest query of the labelled routing data (2.5 K characters), so every query the
rules and the classifier were built and checked on is seen whole; past that size, the proportions
of a sample of 16 K characters (lines of log, code, numbers) describe the body as well as the
whole does. The patterns themselves are linear besides (docs/security.md, "Routing on hostile
input"); the view is what keeps the constant small.
"""

from __future__ import annotations

STAGE1_VIEW_CHARS = 16 * 1024
STAGE1_TAIL_CHARS = 4 * 1024
# Between head and tail: a line break, so that line-based checks never join the two halves.
GAP = "\n…\n"


def stage1_view(text: str) -> str:
    """`text` itself when it is at most STAGE1_VIEW_CHARS long, else its head and tail joined
    by GAP, exactly STAGE1_VIEW_CHARS long (so the view of a view is the same view)."""
    return head_and_tail(text, STAGE1_VIEW_CHARS, STAGE1_TAIL_CHARS)


def head_and_tail(text: str, limit: int, tail: int) -> str:
    """At most `limit` characters of `text`: all of it, or its head, GAP and its last `tail`."""
    if len(text) <= limit:
        return text
    head = limit - tail - len(GAP)
    return text[:head] + GAP + text[len(text) - tail:]
