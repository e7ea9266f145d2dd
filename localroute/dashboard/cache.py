"""The window figures the page polls, computed off the request path.

A week of a busy stack is about 100,000 events, and `localroute stats` reads them all: seconds,
not the tenth of a second a page poll should take. So each window's figures are kept and
answered at once; a poll that finds them older than the refresh interval starts one recompute
in a worker thread (never two for a window) and still answers with what is there. Only the
first poll of a window waits for it. The interval grows with what a recompute costs, so a large
store is re-read at most a fifth of the time, and not at all while nothing new was written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from localroute.dashboard.series import overview
from localroute.telemetry.store import EventStore, events

MIN_REFRESH_S = 5.0
COST_FACTOR = 5.0  # refresh no more often than every COST_FACTOR x the last compute time


@dataclass
class _Entry:
    value: dict[str, Any]
    computed_at: float
    compute_s: float
    marker: int


def store_marker(store: EventStore) -> int:
    """The newest event id: it changes whenever anything is written."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0)


class WindowCache:
    def __init__(self, store: EventStore,
                 compute: Callable[[EventStore, str], dict[str, Any]] = overview) -> None:
        self.store = store
        self.compute = compute
        self.entries: dict[str, _Entry] = {}
        self.running: dict[str, asyncio.Task[_Entry]] = {}

    def _build(self, window: str) -> _Entry:
        marker = store_marker(self.store)
        started = time.perf_counter()
        value = self.compute(self.store, window)
        return _Entry(value, time.time(), time.perf_counter() - started, marker)

    def _start(self, window: str) -> asyncio.Task[_Entry]:
        """The window's recompute, started now unless one runs. Registered in `running` before
        this returns, so the answer that started it already says `refreshing` (a task that
        registered itself once it ran answered the first poll after start-up "not refreshing"
        with the start-up figures, and the page never asked again soon)."""
        task = self.running.get(window)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._build, window))
            self.running[window] = task
            task.add_done_callback(lambda t: self._done(window, t))
        return task

    def _done(self, window: str, task: asyncio.Task[_Entry]) -> None:
        self.running.pop(window, None)
        # Reading the exception here also keeps asyncio from reporting a failed background
        # refresh as never retrieved; the next poll retries it, and the first, awaited compute
        # raises it to its caller.
        if not task.cancelled() and task.exception() is None:
            self.entries[window] = task.result()

    async def _stale(self, entry: _Entry) -> bool:
        age = time.time() - entry.computed_at
        if age < max(MIN_REFRESH_S, COST_FACTOR * entry.compute_s):
            return False
        # A query: off the event loop, which a busy store must not hold up.
        return await asyncio.to_thread(store_marker, self.store) != entry.marker

    async def get(self, window: str) -> dict[str, Any]:
        """The window's figures with `computed_at` and `compute_s`; waits only the first time."""
        entry = self.entries.get(window)
        if entry is None:
            entry = await asyncio.shield(self._start(window))
        elif window not in self.running and await self._stale(entry):
            self._start(window)
        # `refreshing` tells the page that newer figures are being computed: it polls again
        # soon rather than at its next interval.
        return {**entry.value, "computed_at": entry.computed_at,
                "compute_s": round(entry.compute_s, 3), "refreshing": window in self.running}
