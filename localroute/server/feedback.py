"""Feedback on answers, kept until the telemetry store takes it over.

For now: the most recent entries in memory and, when a path is configured, one JSON line per
entry appended to that file (the telemetry store can import it later).
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from localroute.server.schemas import FeedbackRequest

MEMORY_ENTRIES = 10_000
RECENT_TRACES = 10_000


class FeedbackLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
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
        entry = {"trace_id": feedback.trace_id, "rating": feedback.rating,
                 "note": feedback.note, "ts": time.time(),
                 "known_trace": feedback.trace_id in self._recent_set}
        self.entries.append(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        return entry
