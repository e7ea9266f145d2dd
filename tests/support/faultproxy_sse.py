"""Rewriting an SSE response event by event, for FaultProxy's ``trickle`` and ``inject`` faults.

``trickle`` only paces the events (a slow model: one token every ``event_delay`` seconds);
``inject`` also puts ``inject`` in front of the content of the first chat-completion chunk
after ``after_events`` content chunks: markup a model leaked mid-answer, as the client of the
proxy sees it.
"""

from __future__ import annotations

import json
import re

from tests.support.faultproxy_faults import Fault

# sse-starlette (llama-cpp-python's server) ends events with CRLF CRLF, others with LF LF.
_EVENT_END = re.compile(rb"\r?\n\r?\n")


class SseRewriter:
    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.buffer = b""
        self.content_events = 0
        self.injected = False

    def feed(self, data: bytes) -> list[bytes]:
        """The events completed by `data`, each with its separator, rewritten if due."""
        self.buffer += data
        out = []
        while (end := _EVENT_END.search(self.buffer)) is not None:
            event, self.buffer = self.buffer[: end.start()], self.buffer[end.end() :]
            out.append(self._rewrite(event) + end.group(0))
        return out

    def rest(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        return rest

    def _rewrite(self, event: bytes) -> bytes:
        if self.fault.inject is None or self.injected:
            return event
        lines = event.split(b"\n")
        for i, line in enumerate(lines):
            payload = line.rstrip(b"\r")
            if not payload.startswith(b"data: ") or payload == b"data: [DONE]":
                continue
            try:
                chunk = json.loads(payload[len(b"data: ") :])
                delta = chunk["choices"][0]["delta"]
            except (ValueError, KeyError, IndexError, TypeError):
                continue
            if not isinstance(delta.get("content"), str) or not delta["content"]:
                continue
            self.content_events += 1
            if self.content_events > self.fault.after_events:
                delta["content"] = self.fault.inject + delta["content"]
                self.injected = True
                ending = line[len(payload) :]
                lines[i] = b"data: " + json.dumps(chunk).encode() + ending
        return b"\n".join(lines)
