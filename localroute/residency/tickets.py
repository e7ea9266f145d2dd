"""What a request holds while it waits for and uses an instance, and what a load or an eviction
reports: the manager's small value types (residency/manager.py runs them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localroute.residency.manager import Residency

MEMORY_POLL_S = 0.25


@dataclass
class ResidencyEvent:
    """One load or eviction, with its cause (telemetry/events.py turns it into a row)."""

    kind: str  # load | eviction
    instance: str
    model: str
    cause: str  # load: request | restart | preload; eviction: memory | idle_ttl | manual | died
    ok: bool = True
    seconds: float | None = None
    error: str | None = None
    for_instance: str | None = None
    evicted: tuple[str, ...] = ()
    idle_s: float | None = None
    expected_cost_s: float | None = None
    footprint_bytes: int = 0
    adopted: bool = False  # a load that found the model already loaded on its server
    at: float = field(default_factory=time.time)


@dataclass
class Lease:
    """A granted instance; the call holds it until `release()` (eviction waits for it)."""

    manager: Residency
    instance: str
    waited_s: float
    notes: list[str]
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.manager._release(self.instance)


class Ticket:
    """A request's place for an instance: `pending` says whether it must wait (a load, or
    memory), `eta_s` for how long; `async with ticket as lease` waits, then holds the lease."""

    def __init__(self, manager: Residency, waiter: int, instance: str,
                 future: asyncio.Future[Lease], eta_s: float) -> None:
        self.manager, self.waiter, self.instance = manager, waiter, instance
        self.future, self.eta_s = future, eta_s
        self.lease: Lease | None = None

    @property
    def pending(self) -> bool:
        return not self.future.done()

    async def wait(self) -> Lease:
        try:
            self.lease = await asyncio.shield(self.future)
        except asyncio.CancelledError:
            self.manager._cancel(self.waiter, self.future)  # a caller who left loads nothing
            raise
        return self.lease

    async def __aenter__(self) -> Lease:
        return await self.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.lease is not None:
            self.lease.release()


async def wait_for_memory(need: int, timeout: float,
                          available: Callable[[], int]) -> tuple[bool, float]:
    """Until the machine's available memory can hold `need` bytes (an unload is only done when
    the memory is back: unified memory is returned lazily); (recovered, seconds waited)."""
    started = time.monotonic()
    while available() < need:
        if time.monotonic() - started >= timeout:
            return False, time.monotonic() - started
        await asyncio.sleep(MEMORY_POLL_S)
    return True, time.monotonic() - started
