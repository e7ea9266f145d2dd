"""What a backend's own traffic says about its health, so that a probe is sent only when that
traffic says nothing.

A request in flight means the server is taken (and on llama-cpp-python's server, started with
its defaults, any other request would end a running stream); a request that finished within the
probe interval is a fresher answer than a probe: success is proof of health, a failure of the
kind a dead or broken server gives (no connection, no answer in time, a 5xx, a cut stream)
counts against it. A failure that shows the server answering (context overflow, a 4xx) counts as
alive, and a call the caller abandoned (a client that left) says nothing either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from localroute.types import LLMConnectionError, LLMError, LLMServerError, LLMTimeout


def counts_against(exc: LLMError) -> bool:
    """Whether a failed call says the server is unhealthy (rather than the request bad)."""
    if isinstance(exc, LLMConnectionError | LLMTimeout):
        return True
    return isinstance(exc, LLMServerError) and (exc.status is None or exc.status >= 500)


@dataclass(frozen=True)
class Verdict:
    alive: bool
    reason: str


@dataclass
class Activity:
    """Calls in flight and the last call's outcome, for one backend (endpoint or instance)."""

    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    ended_at: float | None = None
    failure: str | None = None  # the last finished call's failure, when it counts against
    calls: int = field(default=0)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Around one call (or one stream, across its yields)."""
        self.in_flight += 1
        self.calls += 1
        try:
            yield
        except LLMError as exc:
            self._end(str(exc) if counts_against(exc) else None)
            raise
        except BaseException:
            # Cancelled or abandoned (the reader went away): no outcome to learn from.
            self.in_flight -= 1
            raise
        else:
            self._end(None)

    def _end(self, failure: str | None) -> None:
        self.in_flight -= 1
        self.ended_at = self.clock()
        self.failure = failure

    def verdict(self, within_s: float) -> Verdict | None:
        """What the traffic says, or None when it says nothing and a probe must ask."""
        if self.in_flight:
            return Verdict(True, f"busy with {self.in_flight} request(s): not probed")
        if self.ended_at is not None and self.clock() - self.ended_at < within_s:
            if self.failure is not None:
                return Verdict(False, f"the last request failed: {self.failure[:300]}")
            return Verdict(True, "a request succeeded within the probe interval: not probed")
        return None
