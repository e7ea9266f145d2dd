"""Feedback on answers, kept until the telemetry store takes it over.

For now: the most recent entries in memory and, when a path is configured, one JSON line per
entry appended to that file (mode 0600; the telemetry store can import it later). Feedback is
accepted only for traces this server answered, and bounded in bytes: the note in characters
(schemas.FEEDBACK_NOTE_CHARS), the request body (FEEDBACK_MAX_BODY), the entries held in
memory, and the file, which is rotated to `<name>.1` once it passes its size limit.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from localroute.private_files import open_private
from localroute.server.schemas import FeedbackRequest

MEMORY_ENTRIES = 1000
RECENT_TRACES = 10_000
FEEDBACK_MAX_BODY = 16 * 1024  # a rating and a note of FEEDBACK_NOTE_CHARS fit with room


class UnknownTrace(Exception):
    """Feedback for a trace this server did not answer (or answered too long ago)."""


class FeedbackLog:
    def __init__(self, path: Path | None, *, max_file_bytes: int = 10 * 1024 * 1024) -> None:
        self.path = path
        self.max_file_bytes = max_file_bytes
        self.entries: deque[dict[str, Any]] = deque(maxlen=MEMORY_ENTRIES)
        self._recent: deque[str] = deque(maxlen=RECENT_TRACES)
        self._recent_set: set[str] = set()

    def served(self, trace_id: str) -> None:
        """Remember a trace id this server answered (a bounded window of recent ones)."""
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(trace_id)
        self._recent_set.add(trace_id)

    def add(self, feedback: FeedbackRequest) -> dict[str, Any]:
        if feedback.trace_id not in self._recent_set:
            raise UnknownTrace(
                f"trace '{feedback.trace_id}' was not answered by this server (or is older than "
                f"its last {RECENT_TRACES} answers); send the X-Localroute-Trace-Id of one of "
                "its answers")
        entry = {"trace_id": feedback.trace_id, "rating": feedback.rating,
                 "note": feedback.note, "ts": time.time()}
        self.entries.append(entry)
        if self.path is not None:
            line = json.dumps(entry) + "\n"
            self._rotate_for(len(line.encode()))
            with os.fdopen(open_private(self.path, "a"), "a", encoding="utf-8") as fh:
                fh.write(line)
        return entry

    def _rotate_for(self, incoming: int) -> None:
        """Move the file to `<name>.1` (replacing an older one) when `incoming` more bytes
        would take it past its limit: at most twice the limit stays on disk."""
        assert self.path is not None
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size and size + incoming > self.max_file_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
