"""The residency decision tree: pure state, no I/O, no clock or event loop of its own.

The manager (and the benchmark's simulation) feed it what happened -- a request arrived or was
cancelled, a call ended, a load or unload finished, a server died -- and call `step(now)`, which
returns what to do next: grant waiting requests, start loads, start unloads, fail requests. All
state lives here and changes only inside these calls, so there is one writer and nothing is
decided on a stale view (llama-swap's run loop; its #946 hang came from a start skipped on a
stale `stopping`).

Per instance: stopped -> starting -> ready -> stopping -> stopped, and failed after a load that
did not work (a new request tries again). Per request, at every step:

1. Waited past `queue_timeout_s`: fail it (a timeout: every waiter ends in grant, error or
   timeout).
2. Its instance is ready and not draining: grant it (the fast path; the concurrency gates of
   the client then hold it to the instance's slots). All waiters of a model that became ready
   are granted together, so queued requests are served grouped by model (A A B B).
3. Its instance is starting or stopping: wait (one load serves every waiter: single flight; a
   request arriving while its model stops is served by a fresh start after the stop).
4. Its instance is stopped or failed: it needs a load. Pending loads are taken in order --
   a starved one first (its oldest request waited `max_overtake_s`), then by oldest request --
   and only the first that cannot start right now blocks the ones behind it:
   a. pinned: load (the pinned set's memory is always reserved);
   b. the footprint fits the budget minus the pinned set minus what is resident (starting,
      ready or stopping): load;
   c. instances already stopping will free enough: wait for them;
   d. else choose the victims among ready on-demand instances outside `min_residency`: the set
      with the lowest expected cost = expected load time x probability of being needed again
      within the usage horizon (from recent use). All idle (no call in flight): unload them
      and load once they are gone (the manager then waits for free memory to recover);
   e. the cheapest set has a call in flight: if the request is starved, drain that set (no
      new grants; unloaded once its calls end -- in-flight work is never cut); else wait, so
      requests to resident models keep flowing and overtake it for at most `max_overtake_s`.
5. An idle on-demand instance whose `idle_ttl` has passed since its last completed call, with
   nothing in flight and nobody waiting, is unloaded. Listings and health probes never reach
   the scheduler, so they neither load a model nor reset its timer.

`Policy.lru` and `Policy.single` replace 4d-4e with plain least-recently-used eviction and with
one model at a time (llama.cpp's router mode and LM Studio's auto-evict), both draining their
victim at once; the benchmark compares them on the same trace.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

LOAD_HISTORY = 20
USE_HISTORY = 512


class State(StrEnum):
    stopped = "stopped"
    starting = "starting"
    ready = "ready"
    stopping = "stopping"
    failed = "failed"


class Policy(StrEnum):
    cost = "cost"  # localroute: lowest expected cost, grouping with a starvation bound
    lru = "lru"  # evict the least recently used model at once
    single = "single"  # one on-demand model at a time


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    model: str
    footprint: int  # bytes when loaded
    pinned: bool
    idle_ttl: float | None = None
    load_estimate_s: float = 5.0  # expected load time until one is measured


@dataclass
class Instance:
    spec: InstanceSpec
    state: State = State.stopped
    in_flight: int = 0
    draining: bool = False
    resident_since: float | None = None
    last_used: float | None = None  # when the last call ended
    load_started: float | None = None
    loads: int = 0
    evictions: int = 0
    load_times: deque[float] = field(default_factory=lambda: deque(maxlen=LOAD_HISTORY))
    uses: deque[float] = field(default_factory=lambda: deque(maxlen=USE_HISTORY))
    error: str | None = None
    restart_reason: str | None = None  # set when it died behind our back
    victims: tuple[str, ...] = ()  # what was unloaded to make room for its next load
    drain_cause: str = "memory"
    drain_for: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def expected_load_s(self) -> float:
        times = self.load_times
        return sum(times) / len(times) if times else self.spec.load_estimate_s


@dataclass
class Waiter:
    id: int
    instance: str
    since: float


@dataclass(frozen=True)
class Grant:
    waiter: int
    instance: str
    waited_s: float


@dataclass(frozen=True)
class Load:
    instance: str
    cause: str  # request | restart | preload
    after_unloads: tuple[str, ...] = ()  # victims unloaded for it: wait for memory first


@dataclass(frozen=True)
class Unload:
    instance: str
    cause: str  # memory | idle_ttl | manual
    for_instance: str | None = None
    idle_s: float | None = None
    expected_cost_s: float | None = None


@dataclass(frozen=True)
class Fail:
    waiter: int
    instance: str
    reason: str
    timeout: bool = False


Action = Grant | Load | Unload | Fail
HELD = (State.starting, State.ready, State.stopping)


class Scheduler:
    def __init__(self, specs: list[InstanceSpec], *, budget: int, min_residency: float = 0.0,
                 max_overtake_s: float = 30.0, queue_timeout_s: float = 600.0,
                 horizon_s: float = 60.0, policy: Policy = Policy.cost) -> None:
        self.instances = {s.name: Instance(s) for s in specs}
        self.budget = budget
        self.min_residency = min_residency
        self.max_overtake_s = max_overtake_s
        self.queue_timeout_s = queue_timeout_s
        self.horizon_s = horizon_s
        self.policy = policy
        self.waiters: dict[int, Waiter] = {}
        self.pinned_bytes = sum(s.footprint for s in specs if s.pinned)

    # ---- what happened -------------------------------------------------------------------

    def arrive(self, waiter: int, instance: str, now: float) -> None:
        self.waiters[waiter] = Waiter(waiter, instance, now)

    def cancel(self, waiter: int) -> None:
        self.waiters.pop(waiter, None)  # a load nobody waits for any more is never started

    def release(self, instance: str, now: float) -> None:
        inst = self.instances[instance]
        inst.in_flight = max(0, inst.in_flight - 1)
        inst.last_used = now

    def adopt(self, instance: str, now: float) -> None:
        """Found already loaded (a server that loads its own model, or one loaded earlier)."""
        inst = self.instances[instance]
        if inst.state in (State.stopped, State.failed):
            inst.state, inst.resident_since, inst.error = State.ready, now, None

    def load_done(self, instance: str, now: float, seconds: float | None) -> None:
        """Loaded in `seconds` (None: found already loaded, which measures nothing)."""
        inst = self.instances[instance]
        inst.state, inst.resident_since, inst.error = State.ready, now, None
        if seconds is not None:
            inst.loads += 1
            inst.load_times.append(seconds)
        inst.restart_reason, inst.victims = None, ()

    def load_failed(self, instance: str, reason: str, timeout: bool = False) -> list[Action]:
        """The load did not work: every request waiting for it fails with the reason."""
        inst = self.instances[instance]
        inst.state, inst.error, inst.victims = State.failed, reason, ()
        failed = [w for w in self.waiters.values() if w.instance == instance]
        for w in failed:
            del self.waiters[w.id]
        return [Fail(w.id, instance, reason, timeout) for w in failed]

    def unload_done(self, instance: str, now: float) -> None:
        inst = self.instances[instance]
        inst.state, inst.resident_since, inst.draining = State.stopped, None, False
        inst.evictions += 1

    def lost(self, instance: str, reason: str) -> None:
        """A ready instance is gone behind our back (a managed server died). Its calls in
        flight fail on their own and still release; a new request restarts it."""
        inst = self.instances[instance]
        if inst.state == State.ready:
            inst.state, inst.resident_since, inst.draining = State.stopped, None, False
            inst.restart_reason = reason

    def unload(self, instance: str, cause: str = "manual") -> bool:
        """Unload an on-demand instance by hand once its calls end (step() does it)."""
        inst = self.instances[instance]
        if inst.spec.pinned or inst.state != State.ready:
            return False
        inst.draining, inst.drain_cause, inst.drain_for = True, cause, None
        return True

    def preload(self, instance: str, now: float) -> list[Action]:
        """Load a pinned instance without waiting for a request (server start)."""
        inst = self.instances[instance]
        if not inst.spec.pinned or inst.state not in (State.stopped, State.failed):
            return []
        inst.state, inst.load_started = State.starting, now
        return [Load(instance, "preload")]

    # ---- what to do ------------------------------------------------------------------------

    def step(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for w in list(self.waiters.values()):  # 1. timeouts
            if now - w.since >= self.queue_timeout_s:
                del self.waiters[w.id]
                actions.append(Fail(w.id, w.instance, self._timeout_reason(w, now), True))
        # 4. pending loads, before the grants: a starved load may drain a model, which then
        # takes no new requests.
        actions += self._loads(now)
        for w in list(self.waiters.values()):  # 2. grants
            inst = self.instances[w.instance]
            if inst.state == State.ready and not inst.draining:
                del self.waiters[w.id]
                inst.in_flight += 1
                inst.uses.append(now)
                actions.append(Grant(w.id, w.instance, now - w.since))
        for inst in self.instances.values():  # drained victims go; 5. idle TTL
            if inst.state != State.ready or inst.in_flight:
                continue
            if inst.draining:
                inst.state = State.stopping
                actions.append(Unload(inst.name, inst.drain_cause, inst.drain_for,
                                      self._idle(inst, now), round(self.expected_cost(inst, now),
                                                                   3)))
            elif self._ttl_expired(inst, now):
                inst.state = State.stopping
                actions.append(Unload(inst.name, "idle_ttl", idle_s=self._idle(inst, now)))
        for action in actions:
            if isinstance(action, Load):
                self.instances[action.instance].load_started = now
        return actions

    def _timeout_reason(self, w: Waiter, now: float) -> str:
        inst = self.instances[w.instance]
        return (f"waited {now - w.since:.0f} s (queue_timeout_s {self.queue_timeout_s:g}) for "
                f"'{inst.spec.model}' to be loaded; it is {inst.state.value}"
                + ("" if inst.state != State.stopped else "; the instances holding the memory "
                   "it needs were busy: " + ", ".join(
                       f"{i.name} ({i.in_flight} in flight)" for i in self.instances.values()
                       if i.state == State.ready and not i.spec.pinned)))

    @staticmethod
    def _last_touch(inst: Instance) -> float:
        for t in (inst.last_used, inst.resident_since):
            if t is not None:
                return t
        return 0.0

    def _idle(self, inst: Instance, now: float) -> float:
        return now - (inst.last_used if inst.last_used is not None else
                      inst.resident_since if inst.resident_since is not None else now)

    def _ttl_expired(self, inst: Instance, now: float) -> bool:
        ttl = inst.spec.idle_ttl
        if inst.spec.pinned or ttl is None:
            return False
        if any(w.instance == inst.name for w in self.waiters.values()):
            return False
        return self._idle(inst, now) >= ttl

    def held(self) -> int:
        """Bytes held by on-demand instances (starting, ready or stopping)."""
        return sum(i.spec.footprint for i in self.instances.values()
                   if not i.spec.pinned and i.state in HELD)

    def free(self) -> int:
        return self.budget - self.pinned_bytes - self.held()

    def _pending(self, now: float) -> list[tuple[Instance, float]]:
        oldest: dict[str, float] = {}
        for w in self.waiters.values():
            oldest[w.instance] = min(oldest.get(w.instance, now), w.since)
        pending = [(self.instances[n], since) for n, since in oldest.items()
                   if self.instances[n].state in (State.stopped, State.failed)]
        pending.sort(key=lambda p: (now - p[1] < self.max_overtake_s, p[1]))
        return pending

    def _loads(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for inst, since in self._pending(now):
            cause = "restart" if inst.restart_reason else "request"
            need = inst.spec.footprint
            alone = self.policy != Policy.single or self.held() == 0
            if inst.spec.pinned or (need <= self.free() and alone):
                inst.state = State.starting
                actions.append(Load(inst.name, cause, inst.victims))
                continue
            # Stopping and draining instances free their memory soon: no new victims for it.
            soon = sum(i.spec.footprint for i in self.instances.values() if not i.spec.pinned
                       and (i.state == State.stopping or i.draining))
            shortfall = need - self.free() - soon
            if shortfall > 0 or (not alone and soon == 0):
                starved = now - since >= self.max_overtake_s
                actions += self._evict(inst, shortfall, now, starved)
            break  # strict order: the loads behind this one wait for it
        return actions

    # ---- victims -------------------------------------------------------------------------

    def need_probability(self, inst: Instance, now: float) -> float:
        """P(the instance is asked for within the usage horizon): 1 - exp(-c), c = the recent
        requests for it, each weighted exp(-age / horizon) (a Poisson rate estimate)."""
        c = sum(math.exp(-(now - t) / self.horizon_s) for t in inst.uses if t <= now)
        return 1.0 - math.exp(-c)

    def expected_cost(self, inst: Instance, now: float) -> float:
        """Seconds of load time evicting it is expected to cost."""
        return inst.expected_load_s() * self.need_probability(inst, now)

    def _evict(self, target: Instance, shortfall: int, now: float,
               starved: bool) -> list[Action]:
        # A model just loaded for requests that have not run yet is never a victim (or two
        # starved loads would unload each other before either served anything).
        since = {n: now if i.resident_since is None else i.resident_since
                 for n, i in self.instances.items()}
        loaded_for = {w.instance for w in self.waiters.values() if w.since <= since[w.instance]}
        resident = [i for i in self.instances.values() if not i.spec.pinned
                    and i.state == State.ready and not i.draining and i is not target
                    and i.name not in loaded_for]
        if self.policy == Policy.single:
            victims = resident
        elif self.policy == Policy.lru:
            victims = []
            for i in sorted(resident, key=lambda i: self._last_touch(i)):
                if sum(v.spec.footprint for v in victims) >= shortfall:
                    break
                victims.append(i)
        else:
            settled = [i for i in resident if i.resident_since is not None
                       and now - i.resident_since >= self.min_residency]
            # The cheapest set over all settled models; when it holds a busy one, wait for it to
            # drain (requests to resident models keep flowing) rather than evict a model that
            # is dearer to lose, until this load is starved: then drain that set.
            best = self._cheapest(settled, shortfall, now)
            victims = best if starved or all(v.in_flight == 0 for v in best) else []
        actions: list[Action] = []
        for v in victims:
            target.victims = (*target.victims, v.name)
            if v.in_flight == 0:
                v.state = State.stopping
                actions.append(Unload(v.name, "memory", target.name, self._idle(v, now),
                                      round(self.expected_cost(v, now), 3)))
            else:  # unloaded by step() once its calls end
                v.draining, v.drain_cause, v.drain_for = True, "memory", target.name
        return actions

    def _cheapest(self, candidates: list[Instance], shortfall: int,
                  now: float) -> list[Instance]:
        """The set freeing >= shortfall with the lowest expected cost (then fewest instances,
        then least recently used). Exhaustive: a profile has at most seven instances."""
        best: tuple[float, int, float] | None = None
        chosen: list[Instance] = []
        for n in range(1, len(candidates) + 1):
            for combo in itertools.combinations(candidates, n):
                if sum(i.spec.footprint for i in combo) < shortfall:
                    continue
                key = (sum(self.expected_cost(i, now) for i in combo), n,
                       max(i.last_used or 0.0 for i in combo))
                if best is None or key < best:
                    best, chosen = key, list(combo)
        return chosen

    # ---- what the manager, routing and status read ----------------------------------------

    def expected_wait(self, instance: str, now: float) -> float:
        """Seconds a request for the instance can expect to wait for it to be loaded."""
        inst = self.instances[instance]
        load = inst.expected_load_s()
        if inst.state == State.ready and not inst.draining:
            return 0.0
        if inst.state == State.starting and inst.load_started is not None:
            return max(0.5, load - (now - inst.load_started))
        return load + (1.0 if inst.state == State.stopping or inst.draining else 0.0)

    def queued(self, instance: str) -> int:
        return sum(1 for w in self.waiters.values() if w.instance == instance)

    def next_wakeup(self, now: float) -> float | None:
        """The next moment a decision may change with no event: a timeout, a TTL, the end of
        a min_residency window or of a starvation bound."""
        times = [w.since + self.queue_timeout_s for w in self.waiters.values()]
        times += [w.since + self.max_overtake_s for w in self.waiters.values()]
        for inst in self.instances.values():
            if inst.state == State.ready and inst.resident_since is not None:
                times.append(inst.resident_since + self.min_residency)
                if inst.spec.idle_ttl is not None and not inst.spec.pinned:
                    times.append(now - self._idle(inst, now) + inst.spec.idle_ttl)
        later = [t for t in times if t > now]
        return min(later) if later else None
