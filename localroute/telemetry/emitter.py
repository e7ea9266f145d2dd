"""The emitting side of telemetry: events go into the writer's buffer; storing them and rendering
them as structlog JSON lines happen in the writer thread.

`Telemetry.shared(settings)` is the process-wide instance for a store URL, so every orchestrator
built in one process shares one writer thread and one connection pool.
"""

from __future__ import annotations

import threading
import time

from localroute.config.telemetry import StoreSettings
from localroute.telemetry import events as ev
from localroute.telemetry.events import EventRow
from localroute.telemetry.redact import redact
from localroute.telemetry.store import EventStore
from localroute.telemetry.writer import EventWriter

_shared: dict[str, Telemetry] = {}
_shared_lock = threading.Lock()


class Telemetry:
    def __init__(self, settings: StoreSettings, store: EventStore | None = None) -> None:
        self.settings = settings
        self.store = store or EventStore(settings.resolved_url())
        self.writer = EventWriter(
            self.store,
            batch_window_s=settings.batch_window_ms / 1000,
            batch_size=settings.batch_size,
            json_log=settings.json_log,
            maintenance=self.prune,
            maintenance_interval_s=settings.prune_interval_s,
        )

    @classmethod
    def shared(cls, settings: StoreSettings) -> Telemetry:
        url = settings.resolved_url()
        with _shared_lock:
            existing = _shared.get(url)
            if existing is None or existing.writer._closed:
                existing = _shared[url] = cls(settings)
            return existing

    def emit(self, row: EventRow) -> None:
        """Queue one event; the writer thread stores it and, with `json_log`, renders it as a
        structlog JSON line (both off the request path). With `record_queries: false` the
        event is redacted first, so neither the store nor the JSON log sees query text."""
        self.writer.put(row if self.settings.record_queries else redact(row))

    def mode_change(self, old: str, new: str, reason: str, *, manual: bool = False,
                    readings: ev.Readings | None = None) -> None:
        self.emit(ev.mode_change(old=old, new=new, reason=reason, manual=manual,
                                 readings=readings))

    def prune(self, now: float | None = None) -> int:
        return self.store.prune(self.settings.max_age_days, self.settings.max_rows,
                                now if now is not None else time.time())

    def flush(self, timeout: float = 30.0) -> bool:
        return self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close()
        with _shared_lock:
            for url, tel in list(_shared.items()):
                if tel is self:
                    del _shared[url]
        self.store.close()
