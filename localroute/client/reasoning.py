"""Separate a model's reasoning trace from its answer, whole or while streaming.

Models that think inline wrap the trace in ``<think>...</think>`` (DeepSeek-R1, Qwen3). The
alias ``<thinking>...</thinking>`` is accepted too because it costs one optional group in the
tag pattern; an opening tag of either spelling may be closed by a closing tag of either.
Tags are matched exactly (lower case, no attributes), so prose that merely mentions "think"
is never cut.

Normal form shared by the whole-text and the streaming splitter:

- each reasoning block is stripped; empty blocks (Qwen3's ``<think></think>`` under
  ``/no_think``) vanish; the remaining blocks are joined with one blank line;
- content is everything outside the blocks, concatenated and stripped;
- tags never appear in either output: an opening tag inside a block and a stray closing tag
  in content are dropped.
"""

from __future__ import annotations

import re
from typing import Literal

Channel = Literal["reasoning", "content"]
Piece = tuple[Channel, str]

_TAG_RE = re.compile(r"<(/?)think(?:ing)?>")
_CLOSE_RE = re.compile(r"</think(?:ing)?>")
_TAGS = ("<think>", "</think>", "<thinking>", "</thinking>")
_BLOCK_SEPARATOR = "\n\n"


def _partial_tag_len(text: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a tag.

    Only that suffix can still turn into a tag once more text arrives, so it is the only text
    a streaming splitter must hold back.
    """
    longest = max(len(tag) for tag in _TAGS) - 1
    for size in range(min(len(text), longest), 0, -1):
        suffix = text[-size:]
        if any(tag.startswith(suffix) and tag != suffix for tag in _TAGS):
            return size
    return 0


def _chained_partial_len(text: str) -> int:
    """Length of the longest suffix made only of proper tag prefixes, each starting at a `<`.

    What a scrubbed channel must hold back: a later removal can join such prefixes with what
    follows (``"<t<t"`` then ``"hink>hink>"``: removing the ``<think>`` that the second ``<t``
    completes brings the first ``<t`` next to ``hink>``). A tag has one `<`, so the pieces are
    found from the right, one `<` at a time.
    """
    held, end = 0, len(text)
    while (start := text.rfind("<", 0, end)) >= 0:
        piece = text[start:end]
        if not any(tag.startswith(piece) and tag != piece for tag in _TAGS):
            break
        held, end = len(text) - start, start
    return held


def _scrub(text: str) -> str:
    """Remove tags until none is left: removing one can join its neighbours into a new one."""
    while (match := _TAG_RE.search(text)) is not None:
        text = text[: match.start()] + text[match.end() :]
    return text


class _TagScrubber:
    """Keeps one output channel free of tags formed where two of its pieces meet.

    ``"<thi</think>nk>"`` holds no tag once the stray ``</think>`` is dropped only if the
    junction ``"<thi" + "nk>"`` is scrubbed too; the same happens across a removed block.
    """

    def __init__(self) -> None:
        self._carry = ""

    def push(self, text: str) -> str:
        text = _scrub(self._carry + text)
        held = _chained_partial_len(text)
        self._carry = text[len(text) - held :]
        return text[: len(text) - held]

    def drain(self) -> str:
        text, self._carry = self._carry, ""
        return text


class ReasoningStreamSplitter:
    """Split a stream of text deltas into reasoning and content pieces as they arrive.

    ``feed`` returns the pieces that are certain so far; ``flush`` returns the rest at the end
    of the stream. Text that could still be the start of a tag (``"<thi"``) is held back until
    later text decides it, and trailing whitespace is held so that the pieces follow the
    normal form of `split_reasoning` exactly.

    Streaming cannot take back what it has emitted, so two rules differ from `split_reasoning`:

    - With ``start_in_reasoning=False`` a closing tag seen in content mode is dropped and the
      stream stays content (the whole-text rule would turn everything before it into
      reasoning).
    - With ``start_in_reasoning=True`` (roles configured ``reasoning: true``, whose chat
      template already opened ``<think>``, as DeepSeek-R1's does) the stream starts in
      reasoning mode and the first closing tag ends it. A stream that never closes stays
      reasoning; `ended_in_reasoning` tells the caller so it can, for instance, treat the
      trace as the answer when a model skipped its thinking.

    For any chunking of a text that starts with an opening tag or has no tags, the pieces
    joined per channel equal ``split_reasoning`` of the whole text.
    """

    def __init__(self, start_in_reasoning: bool = False) -> None:
        self._in_reasoning = start_in_reasoning
        self._buffer = ""
        self._scrubbers: dict[Channel, _TagScrubber] = {
            "reasoning": _TagScrubber(),
            "content": _TagScrubber(),
        }
        # Whitespace held at the end of each channel: emitted only if non-space text follows.
        self._pending: dict[Channel, str] = {"reasoning": "", "content": ""}
        self._block_started = False
        self._any_reasoning = False
        self._any_content = False
        self._flushed = False

    @property
    def ended_in_reasoning(self) -> bool:
        """True when the text seen so far leaves the splitter inside a reasoning block."""
        return self._in_reasoning

    def feed(self, delta: str) -> list[Piece]:
        """Consume one delta; return the (channel, text) pieces that are now certain."""
        if self._flushed:
            raise RuntimeError(
                "ReasoningStreamSplitter.feed() called after flush(); create a new splitter "
                "for each stream"
            )
        self._buffer += delta
        out: list[Piece] = []
        while (match := _TAG_RE.search(self._buffer)) is not None:
            self._emit(self._buffer[: match.start()], out)
            self._on_tag(closing=bool(match.group(1)), out=out)
            self._buffer = self._buffer[match.end() :]
        held = _partial_tag_len(self._buffer)
        self._emit(self._buffer[: len(self._buffer) - held], out)
        self._buffer = self._buffer[len(self._buffer) - held :]
        return out

    def flush(self) -> list[Piece]:
        """End of stream: a held-back tag prefix is plain text after all; drop trailing spaces."""
        out: list[Piece] = []
        if not self._flushed:
            self._emit(self._buffer, out)
            self._buffer = ""
            for channel in ("reasoning", "content"):
                self._write(channel, self._scrubbers[channel].drain(), out)
            self._pending = {"reasoning": "", "content": ""}
            self._flushed = True
        return out

    def _on_tag(self, *, closing: bool, out: list[Piece]) -> None:
        if closing and self._in_reasoning:
            self._write("reasoning", self._scrubbers["reasoning"].drain(), out)
            self._in_reasoning = False
            self._block_started = False
            self._pending["reasoning"] = ""
        elif not closing and not self._in_reasoning:
            self._in_reasoning = True
        # Otherwise a nested opening tag or a stray closing tag: dropped, mode unchanged.

    def _emit(self, text: str, out: list[Piece]) -> None:
        channel: Channel = "reasoning" if self._in_reasoning else "content"
        self._write(channel, self._scrubbers[channel].push(text), out)

    def _write(self, channel: Channel, text: str, out: list[Piece]) -> None:
        if not text:
            return
        if channel == "reasoning" and not self._block_started:
            text = text.lstrip()
            if not text:
                return
            if self._any_reasoning:
                text = _BLOCK_SEPARATOR + text
            self._block_started = self._any_reasoning = True
        elif channel == "content" and not self._any_content:
            text = text.lstrip()
            if not text:
                return
            self._any_content = True
        body = text.rstrip()
        tail = text[len(body) :]
        if body:
            piece = self._pending[channel] + body
            if out and out[-1][0] == channel:
                out[-1] = (channel, out[-1][1] + piece)
            else:
                out.append((channel, piece))
            self._pending[channel] = tail
        else:
            self._pending[channel] += tail


def _collect(pieces: list[Piece]) -> tuple[str, str]:
    reasoning = "".join(text for channel, text in pieces if channel == "reasoning")
    content = "".join(text for channel, text in pieces if channel == "content")
    return reasoning, content


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Return ``(reasoning, content)``; reasoning is None when there is no non-empty trace.

    Rules: ``<think>a</think>b`` gives ``("a", "b")``; an unclosed ``<think>`` makes the rest
    reasoning; repeated blocks are joined with a blank line; empty blocks give None. When the
    first tag is a closing one (DeepSeek-R1's template opens ``<think>`` itself, so the output
    holds only ``</think>``), everything before the last closing tag that precedes any opening
    tag is reasoning.
    """
    tags = list(_TAG_RE.finditer(text))
    if not tags:
        return None, text.strip()
    parts: list[str] = []
    rest = text
    if tags[0].group(1):
        leading_closes = [tag for tag in tags if tag.group(1)]
        first_open = next((tag for tag in tags if not tag.group(1)), None)
        if first_open is not None:
            leading_closes = [tag for tag in leading_closes if tag.start() < first_open.start()]
        last_close = leading_closes[-1]
        head = _TAG_RE.split(text[: last_close.start()])[::2]
        parts.extend(_scrub(part).strip() for part in head)
        rest = text[last_close.end() :]
    splitter = ReasoningStreamSplitter()
    reasoning, content = _collect(splitter.feed(rest) + splitter.flush())
    parts.append(reasoning)
    joined = _BLOCK_SEPARATOR.join(part for part in parts if part)
    return (joined or None), content


def split_first_reasoning(text: str) -> tuple[str | None, str]:
    """Split off only the first reasoning block and leave any later markup in the content.

    For answers whose own text may mention the tags (JSON about model output, say), where
    `split_reasoning` would cut them out. A leading closing tag ends the trace at its first
    occurrence; an unclosed opening tag makes the rest reasoning. Content is not stripped.
    """
    first = _TAG_RE.search(text)
    if first is None:
        return None, text
    if first.group(1):
        reasoning, content = text[: first.start()], text[first.end() :]
    else:
        close = _CLOSE_RE.search(text, first.end())
        end = len(text) if close is None else close.start()
        reasoning = text[first.end() : end]
        content = text[: first.start()] + ("" if close is None else text[close.end() :])
    return (reasoning.strip() or None), content
