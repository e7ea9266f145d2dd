"""Stage 1's CPU work (rules, features, classifier, argument filler) off the event loop.

The work is a few milliseconds on any input (the patterns are linear and read a bounded view,
docs/security.md "Routing on hostile input"), but it is pure CPU: run on the loop, a burst of
long pastes would hold every other request, `/health` and signal handling behind it. So it
runs in a small pool of its own threads, and the caller waits at most a deadline; past it, the
caller's cheap answer stands and the late result is dropped.

A thread does not make the work preemptible: a regular-expression search holds the GIL for its
whole length. What keeps the loop answering is that each search is short (linear on at most
16 KiB); the pool keeps the many short steps of one routing off the loop, and bounds how many
routings run at once (the rest wait in its queue, and a queued one whose deadline passes is
cancelled before it starts).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Two threads: routing is short, the machines this runs on often have few cores, and the model
# servers beside it need them more.
STAGE1_THREADS = 2

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(STAGE1_THREADS, thread_name_prefix="localroute-stage1")
        return _pool


class Stage1Timeout(Exception):
    """Stage 1's work did not finish within its deadline (the wait for a thread included)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"stage 1 did not finish within {seconds:g} s")
        self.seconds = seconds


async def run_stage1(work: Callable[[], T], deadline_s: float) -> T:
    """`work()` on the stage-1 pool; raises Stage1Timeout after `deadline_s` seconds."""
    future = asyncio.get_running_loop().run_in_executor(_executor(), work)
    try:
        return await asyncio.wait_for(future, deadline_s)
    except TimeoutError:
        raise Stage1Timeout(deadline_s) from None
