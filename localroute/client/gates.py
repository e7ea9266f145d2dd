"""Concurrency gates: one per loaded model instance, plus a tighter one for a sharing role.

The validation role runs on the router's instance: both draw from the instance's gate, and the
validation role additionally from its own smaller gate, so it can never take every slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from localroute.config.schema import ResolvedProfile, ResolvedRole


@dataclass
class Gate:
    name: str
    capacity: int
    semaphore: asyncio.Semaphore = field(init=False)
    in_flight: int = 0
    waiting: int = 0

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.capacity)


class Gates:
    """Gates for every instance and sharing role of a profile."""

    def __init__(self, profile: ResolvedProfile) -> None:
        self._instance: dict[str, Gate] = {}
        self._role: dict[str, Gate] = {}
        for role in profile.roles.values():
            if role.instance == role.name:
                self._instance[role.name] = Gate(role.name, role.max_concurrency)
        for role in profile.roles.values():
            owner = self._instance[role.instance]
            if role.instance != role.name and role.max_concurrency < owner.capacity:
                self._role[role.name] = Gate(f"{role.name}@{role.instance}", role.max_concurrency)

    def gates_for(self, role: ResolvedRole) -> list[Gate]:
        # Role gate first, instance gate second: a sharing role queues on its own gate before
        # it competes for the instance, so it never holds an instance slot while waiting.
        own = self._role.get(role.name)
        return ([own] if own else []) + [self._instance[role.instance]]

    def snapshot(self) -> dict[str, dict[str, int]]:
        gates = [*self._instance.values(), *self._role.values()]
        return {
            g.name: {"capacity": g.capacity, "in_flight": g.in_flight, "waiting": g.waiting}
            for g in gates
        }

    def busy(self, role: ResolvedRole) -> Gate | None:
        """The first gate at which a new call for this role would have to wait (every slot in
        use, or calls already queued, which the semaphore serves first); None if it would not."""
        return next((g for g in self.gates_for(role) if g.in_flight + g.waiting >= g.capacity),
                    None)

    @asynccontextmanager
    async def slot(self, role: ResolvedRole) -> AsyncIterator[float]:
        """Hold a slot for one call; yields the seconds spent waiting for it."""
        start = time.perf_counter()
        held: list[Gate] = []
        try:
            for gate in self.gates_for(role):
                gate.waiting += 1
                try:
                    await gate.semaphore.acquire()
                finally:
                    gate.waiting -= 1
                gate.in_flight += 1
                held.append(gate)
            yield time.perf_counter() - start
        finally:
            for gate in reversed(held):
                gate.in_flight -= 1
                gate.semaphore.release()
