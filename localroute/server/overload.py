"""Admission control: refuse a request (429) when the gates it needs are full and queued.

The client's gates queue without bound; a server in front of many clients must not. A request
is admitted for a role when, on every gate that role draws from, the calls already admitted (or
live at the gate) leave room within `capacity + max_queue`. The check and the count happen with
no await in between, so concurrent requests cannot all slip through one free place.

Tool-only answers need no model and no gate, but each runs a tool in a worker thread; they are
admitted too, at most `max_tool_requests` at once (429 past it), counted under the pseudo-gate
TOOLS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from localroute.client.gates import Gates
from localroute.config.schema import ResolvedRole

RETRY_AFTER_MAX_S = 60
TOOLS = "tools"  # the count of tool-only answers running, beside the gates' counts
EWMA_WEIGHT = 0.2  # how fast the per-role latency estimate follows recent calls


class Overloaded(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Ticket:
    """One admitted request's places; release it exactly once when the request ends."""

    admission: Admission
    role: str
    gates: list[str]
    released: bool = field(default=False)

    def release(self, seconds: float | None = None) -> None:
        if not self.released:
            self.released = True
            self.admission.release(self, seconds)


class Admission:
    def __init__(self, gates: Gates, max_queue: int, max_tool_requests: int = 16) -> None:
        self.gates = gates
        self.max_queue = max_queue
        self.max_tool_requests = max_tool_requests
        self._admitted: dict[str, int] = {}
        self._latency: dict[str, float] = {}

    def admit(self, role: ResolvedRole) -> Ticket:
        gates = self.gates.gates_for(role)
        for gate in gates:
            # Our own admissions cover requests not yet at the gate (still shaping the prompt);
            # the gate's live counts cover calls the pipeline makes itself (router, validation).
            load = max(self._admitted.get(gate.name, 0), gate.in_flight + gate.waiting)
            if load >= gate.capacity + self.max_queue:
                retry = self.retry_after(role.name, load - gate.capacity + 1, gate.capacity)
                raise Overloaded(
                    f"role '{role.name}' is busy: all {gate.capacity} slots of gate "
                    f"'{gate.name}' are in use and {self.max_queue} requests are queued; "
                    f"retry in {retry} s",
                    retry,
                )
        names = [g.name for g in gates]
        for name in names:
            self._admitted[name] = self._admitted.get(name, 0) + 1
        return Ticket(self, role.name, names)

    def admit_tools(self) -> Ticket:
        """A place for one tool-only answer; Overloaded when `max_tool_requests` are running."""
        running = self._admitted.get(TOOLS, 0)
        if running >= self.max_tool_requests:
            raise Overloaded(
                f"tool-only answers are busy: {running} are running, the limit is "
                f"{self.max_tool_requests} (serve --max-tool-requests); retry in 1 s", 1)
        self._admitted[TOOLS] = running + 1
        return Ticket(self, TOOLS, [TOOLS])

    def release(self, ticket: Ticket, seconds: float | None) -> None:
        for name in ticket.gates:
            self._admitted[name] -= 1
        if seconds is not None:
            old = self._latency.get(ticket.role)
            self._latency[ticket.role] = seconds if old is None else (
                (1 - EWMA_WEIGHT) * old + EWMA_WEIGHT * seconds)

    def retry_after(self, role: str, ahead: int, capacity: int) -> int:
        """Seconds until a place is likely free: the queue ahead times the typical call time."""
        typical = self._latency.get(role, 1.0)
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(typical * ahead / capacity)))

    def admitted(self) -> dict[str, int]:
        return dict(self._admitted)
