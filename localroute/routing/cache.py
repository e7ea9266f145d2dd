"""The stage-1 routing cache: a routing decision per normalised query, with a TTL and a size
bound, dropped whole when the config or the classifier artifact changes.

It holds decisions only, never a tool's result or an answer: a hit still runs the tool (with
arguments read from the live query) or the model. Only decisions that cost something are kept
(the classifier's and the router model's); channels and rules are cheaper than a lookup.

Entries are keyed by a digest of the normalised query's bounded view (the text stage 1 decides
on), so 4096 entries of 4 MiB pastes cost 4096 digests, not 16 GiB.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from localroute.bounded_text import stage1_view
from localroute.config.telemetry import CacheSettings
from localroute.routing.decision import RoutingDecision

CACHED_DECIDERS = frozenset({"classifier", "router_model"})
_SPACE = re.compile(r"\s+")

Key = tuple[str, str | None, bool]


def normalise_query(query: str) -> str:
    """Case, runs of whitespace and trailing punctuation do not change a route. Reads the
    query's bounded view, as stage 1 does."""
    # rstrip, not a `[\s?!.]+$` pattern: that would be retried from every character of a long
    # run of punctuation inside the text. After the substitution a space is the only blank.
    return _SPACE.sub(" ", stage1_view(query).strip().lower()).rstrip(" ?!.")


def _key(query: str, channel: str | None, allow_model: bool) -> Key:
    digest = hashlib.sha256(normalise_query(query).encode("utf-8", "surrogatepass")).hexdigest()
    return digest, channel, allow_model


def routing_fingerprint(*parts: Any) -> str:
    """A digest of everything a cached decision depends on (profile, modes, artifact id)."""
    blob = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(part: Any) -> Any:
    dump = getattr(part, "model_dump", None)
    return dump(mode="json") if callable(dump) else part


class RoutingCache:
    def __init__(self, settings: CacheSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        settings = settings or CacheSettings()
        self.ttl_s = settings.ttl_s
        self.max_entries = settings.max_entries
        self.clock = clock
        self.fingerprint: str | None = None
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self._entries: OrderedDict[Key, tuple[float, RoutingDecision]] = OrderedDict()
        self._lock = threading.Lock()  # a server's threads may share one cache

    def __len__(self) -> int:
        return len(self._entries)

    def bind(self, fingerprint: str) -> bool:
        """Use the cache for this config; drops every entry (returns True) when it changed."""
        with self._lock:
            if fingerprint == self.fingerprint:
                return False
            changed = self.fingerprint is not None
            self.fingerprint = fingerprint
            self._entries.clear()
            self.invalidations += int(changed)
            return changed

    def get(self, query: str, channel: str | None, allow_model: bool) -> RoutingDecision | None:
        key = _key(query, channel, allow_model)
        with self._lock:
            found = self._entries.get(key)
            if found is None or found[0] <= self.clock():
                if found is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        original = found[1]
        return original.model_copy(update={
            "decided_by": "cache",
            "reason": f"cache hit (first decided by {original.decided_by}): {original.reason}",
            "escalated": False,
        })

    def put(self, query: str, channel: str | None, allow_model: bool,
            decision: RoutingDecision) -> bool:
        if decision.decided_by not in CACHED_DECIDERS or decision.escalation_error:
            return False  # cheap to redo, or a transient failure that must not stick
        key = _key(query, channel, allow_model)
        with self._lock:
            self._entries[key] = (self.clock() + self.ttl_s, decision.model_copy(deep=True))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return True

    def stats(self) -> dict[str, float | int]:
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries),
                "invalidations": self.invalidations,
                "hit_rate": self.hits / total if total else 0.0}


_shared: RoutingCache | None = None
_shared_lock = threading.Lock()


def shared_cache(settings: CacheSettings) -> RoutingCache:
    """The process-wide cache, so orchestrators built one after another share hits."""
    global _shared
    with _shared_lock:
        if _shared is None or (_shared.ttl_s, _shared.max_entries) != (settings.ttl_s,
                                                                        settings.max_entries):
            _shared = RoutingCache(settings)
        return _shared
